"""`panel serve` page file: the researcher page, at /home and at / with --index home."""

from dashboard.pages import serve_page

serve_page("/")
