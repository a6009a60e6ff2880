"""`panel serve` page file: ``/admin/set-aws-credentials``, at /admin_set_aws_credentials."""

from dashboard.pages import serve_page

serve_page("/admin/set-aws-credentials")
