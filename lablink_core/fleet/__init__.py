"""Launching, scaling and destroying client VMs: the :class:`Fleet` and its providers."""
