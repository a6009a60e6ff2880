"""The agent that runs on each GPU VM: it long-polls the allocator and runs the CRD host.

Only the standard library is used here, so the VM image needs nothing beyond
this package (and none of the dashboard's web stack).
"""

from __future__ import annotations

from lablink_core.client.transport import Response, Transport, TransportError, UrllibTransport

__all__ = ["Response", "Transport", "TransportError", "UrllibTransport"]
