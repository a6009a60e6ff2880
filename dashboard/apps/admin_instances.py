"""`panel serve` page file: the page of ``/admin/instances``, served at /admin_instances."""

from dashboard.pages import serve_page

serve_page("/admin/instances")
