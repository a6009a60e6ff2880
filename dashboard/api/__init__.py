"""Tornado handlers for machines and scripts, served next to the Panel pages."""
