"""GET /client/lablink-client.pyz: the VM agent as a zipapp, for bring-your-own machines.

No authentication: the file holds code only, the same for every VM; the credential it needs
is handed out separately (``lablink vm credential HOSTNAME``). The ETag is the archive's
SHA-256, so ``curl -z``-style revalidation and caches see a new file only when it changed.
"""

from __future__ import annotations

from dashboard.api.base import ApiHandler
from lablink_core.client_bundle import client_bundle


class ClientBundleHandler(ApiHandler):
    """Serves the zipapp built from this server's own sources."""

    def set_default_headers(self) -> None:
        super().set_default_headers()
        # Revalidate each time (cheap, thanks to the ETag) rather than never store it.
        self.set_header("Cache-Control", "no-cache")

    def compute_etag(self) -> str | None:
        return f'"{client_bundle().sha256}"'

    async def get(self) -> None:
        bundle = await self.run_sync(client_bundle)
        self.set_header("Content-Type", "application/zip")
        self.set_header("Content-Disposition", 'attachment; filename="lablink-client.pyz"')
        self.write(bundle.data)
