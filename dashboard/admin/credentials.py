"""/admin/set-aws-credentials: store the AWS keys Terraform uses; show only whether they are
set and the key id's last four characters."""

from __future__ import annotations

from typing import Any

import panel as pn
import param
from panel.viewable import Viewer

from dashboard.admin.widgets import notice_html
from lablink_core.aws_credentials import AwsCredentials, AwsCredentialStore
from lablink_core.errors import InvalidInput


class CredentialsState(param.Parameterized):
    """Saves credentials through the store; holds no secret after a save attempt."""

    status = param.String(default="not set", doc="'set, key id ending ABCD' or 'not set'.")
    message = param.String(default="", doc="Outcome of the last save, without any secret.")
    ok = param.Boolean(default=True, doc="Whether the last save worked.")

    def __init__(self, store: AwsCredentialStore, **params: Any) -> None:
        super().__init__(**params)
        self._store = store
        self.status = store.describe()

    def save(self, access_key_id: object, secret_access_key: object, session_token: object) -> bool:
        try:
            credentials = AwsCredentials.parse(access_key_id, secret_access_key, session_token)
            self._store.save(credentials)
        except InvalidInput as error:
            self.ok, self.message = False, error.message
            return False
        except OSError as error:
            self.ok, self.message = False, f"Could not save the credentials ({error.strerror})."
            return False
        self.status = self._store.describe()
        self.ok, self.message = True, f"Saved. AWS credentials are {self.status}."
        return True

    def clear(self) -> None:
        self._store.clear()
        self.status = self._store.describe()
        self.ok, self.message = True, "Removed the stored AWS credentials."


class CredentialsView(Viewer):
    """The form. The inputs are emptied after every save attempt, successful or not."""

    def __init__(self, state: CredentialsState, **params: Any) -> None:
        super().__init__(**params)
        self.state = state
        self.key_id = pn.widgets.TextInput(label="Access key id", placeholder="AKIA...")
        self.secret = pn.widgets.PasswordInput(label="Secret access key")
        self.token = pn.widgets.PasswordInput(label="Session token (optional)")
        self.save = pn.widgets.Button(label="Save credentials", color="primary")
        self.remove = pn.widgets.Button(label="Remove stored credentials", color="light")
        self.status = pn.pane.HTML("", sizing_mode="stretch_width")
        self.notice = pn.pane.HTML("", sizing_mode="stretch_width")
        self.save.on_click(self._on_save)
        self.remove.on_click(lambda _event: self.state.clear())
        state.param.watch(self._render, ["status", "message", "ok"])
        self._render()

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(
            self.status,
            pn.Column(self.key_id, self.secret, self.token, pn.Row(self.save, self.remove)),
            self.notice,
            width=520,
        )

    def _on_save(self, _event: object) -> None:
        fields = (self.key_id, self.secret, self.token)
        key_id, secret, token = (field.value_input or field.value for field in fields)
        for field in fields:
            field.param.update(value="", value_input="")
        self.state.save(key_id, secret, token)

    def _render(self, *_events: object) -> None:
        self.status.object = notice_html(
            f"AWS credentials: {self.state.status}",
            "success" if self.state.status != "not set" else "warning",
        )
        kind = "success" if self.state.ok else "danger"
        self.notice.object = notice_html(self.state.message, kind)
