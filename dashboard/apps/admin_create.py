"""`panel serve` page file: the page of ``/admin/create``, served at /admin_create."""

from dashboard.pages import serve_page

serve_page("/admin/create")
