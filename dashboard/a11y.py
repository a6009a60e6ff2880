"""Repairs of third-party markup that screen readers trip over, applied in the browser.

Two widgets the pages use render markup that fails WCAG checks (axe-core rates both
"critical"): Tabulator puts its pagination buttons and a focusable scroll container inside
the element with the ``grid`` role (a grid may only own rows and row groups; its cells are
focusable already), and Bokeh's number input draws its up and down buttons without a name.
The pagination footer is moved out, just after the grid (its buttons keep working: they are
the same elements), and styled by :data:`TABLE_FOOTER_CSS`. Their markup is rebuilt as the
widgets redraw, so :class:`AccessibilityRepairs` looks again twice a second, in every open
shadow root of the page. It only adds names and removes that one ``tabindex``.
"""

from __future__ import annotations

from panel.custom import JSComponent

TABLE_FOOTER_CSS = """
.pnx-tabulator { height: auto !important; }
.pnx-tabulator .tabulator-tableholder { height: auto !important; max-height: none !important; }
.tabulator-footer { display: flex; justify-content: flex-end; padding: 6px 8px;
  background: #f1f3f5; border: 1px solid #dee2e6; border-top: 0; }
.tabulator-footer .tabulator-page { margin: 0 2px; padding: 2px 10px; font: inherit;
  border: 1px solid #adb5bd; border-radius: 4px; background: #fff; color: #212529; }
.tabulator-footer .tabulator-page.active { background: #0b5cad; color: #fff;
  border-color: #0b5cad; }
.tabulator-footer .tabulator-page:disabled { color: #6c757d; }
.tabulator-placeholder .tabulator-placeholder-contents { color: #495057 !important;
  font-size: 1rem !important; font-weight: 500 !important; }
"""
"""Styles of a Tabulator's pagination once it sits outside the table, and a legible empty-table
text (Tabulator's is light grey on white, 1.6:1); add to its stylesheets."""


class AccessibilityRepairs(JSComponent):
    """An invisible element; one per page (the layout adds it)."""

    _esm = """
    const LABELS = {"bk-spin-btn-up": "Increase", "bk-spin-btn-down": "Decrease"};
    function repair(root) {
      for (const footer of root.querySelectorAll(".tabulator[role=grid] > .tabulator-footer")) {
        const grid = footer.parentElement;
        footer.setAttribute("role", "group");
        footer.setAttribute("aria-label", "Table pages");
        grid.after(footer);
      }
      for (const holder of root.querySelectorAll(".tabulator-tableholder[tabindex]")) {
        holder.removeAttribute("tabindex");
      }
      for (const [cls, label] of Object.entries(LABELS)) {
        for (const button of root.querySelectorAll("." + cls + ":not([aria-label])")) {
          button.setAttribute("aria-label", label);
        }
      }
      for (const element of root.querySelectorAll("*")) {
        if (element.shadowRoot) { repair(element.shadowRoot); }
      }
    }
    export function render({ model }) {
      repair(document);
      const timer = setInterval(() => repair(document), 500);
      model.on("remove", () => clearInterval(timer));
      return document.createElement("span");
    }
    """
