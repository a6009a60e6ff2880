"""`panel serve` page file: the page of ``/admin``, served at /admin."""

from dashboard.pages import serve_page

serve_page("/admin")
