"""A confirmation panel that says exactly what an action will do, with Confirm and Cancel."""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from typing import Any

import panel as pn
from panel.viewable import Viewer

MAX_NAMES_SHOWN = 200


def name_list(names: Sequence[str]) -> str:
    """Escaped, comma-separated names (at most MAX_NAMES_SHOWN, then 'and N more')."""
    shown = ", ".join(html.escape(n) for n in names[:MAX_NAMES_SHOWN])
    rest = len(names) - MAX_NAMES_SHOWN
    return shown + (f" and {rest} more" if rest > 0 else "")


class ConfirmPanel(Viewer):
    """Hidden until :meth:`ask`; runs the given action on Confirm, nothing on Cancel.

    The question is HTML built by the caller from escaped parts (see :func:`name_list`).
    """

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._action: Callable[[], Any] | None = None
        self.question = pn.pane.HTML("", sizing_mode="stretch_width")
        self.confirm = pn.widgets.Button(label="Confirm", color="danger")
        self.cancel = pn.widgets.Button(label="Cancel", color="light")
        self.confirm.on_click(self._on_confirm)
        self.cancel.on_click(self._on_cancel)
        self._layout = pn.Column(
            self.question,
            pn.Row(self.confirm, self.cancel),
            visible=False,
            styles={"border": "2px solid #dc3545", "border-radius": "6px", "padding": "8px"},
            sizing_mode="stretch_width",
        )

    def __panel__(self) -> pn.Column:
        return self._layout

    @property
    def open(self) -> bool:
        return bool(self._layout.visible)

    def ask(self, question_html: str, action: Callable[[], Any], *, confirm_label: str) -> None:
        """Show ``question_html`` and arm Confirm to run ``action`` once."""
        self._action = action
        self.question.object = question_html
        self.confirm.label = confirm_label
        self._layout.visible = True

    def close(self) -> None:
        self._action = None
        self._layout.visible = False

    def _on_confirm(self, _event: object) -> None:
        action, self._action = self._action, None
        self._layout.visible = False
        if action is not None:
            action()

    def _on_cancel(self, _event: object) -> None:
        self.close()
