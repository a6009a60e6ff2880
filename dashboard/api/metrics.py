"""GET /metrics: the Prometheus text format, for admins (Basic, the admin token, or a
session cookie), so a scraper needs the admin API token as its bearer credential."""

from __future__ import annotations

from dashboard.api.admin import AdminApiHandler


class MetricsHandler(AdminApiHandler):
    """Counters and histograms of every server process, and the database's view now."""

    uses_admin_pool = True

    async def get(self) -> None:
        services = self.runtime.services
        body, content_type = await self.run_sync(
            lambda: services.metrics.exposition(services.pool_reading())
        )
        self.set_header("Content-Type", content_type)
        self.finish(body)
