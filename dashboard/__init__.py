"""LabLink's Panel server: the researcher page, the admin pages and the HTTP API.

Importing it has no side effects; :mod:`dashboard.runtime` assembles a process at start-up.
"""
