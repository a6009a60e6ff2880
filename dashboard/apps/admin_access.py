"""`panel serve` page file: the page of ``/admin/access``, served at /admin_access."""

from dashboard.pages import serve_page

serve_page("/admin/access")
