"""The admin pages: overview, live instance table, fleet launch and AWS credentials."""
