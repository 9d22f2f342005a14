"""The per-tenant state gauges, held as plain values and made samples when Prometheus scrapes.

A worker may own ten thousand tenants, and a labelled child of a `Gauge` costs some 700 bytes:
four per tenant (three states and the backlog) came to about 3 KB a tenant. Here a tenant is
one dict entry; the samples are the same (`callsync_integration_state{tenant, state}` 1 for
its state and 0 for the others, `callsync_dead_letter_backlog_events{tenant}`)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

__all__ = ["EXPORTED", "TenantGauges"]

# The states the gauge names (the alert rules and the dashboard use these three).
EXPORTED = ("active", "broken", "deactivated")


class TenantGauges(Collector):
    def __init__(self) -> None:
        self._shown: dict[str, tuple[str, int]] = {}

    def show(self, tenant_id: str, state: str, backlog: int) -> None:
        self._shown[tenant_id] = (state, backlog)

    def forget(self, tenant_id: str) -> None:
        self._shown.pop(tenant_id, None)

    def describe(self) -> Iterator[Metric]:
        yield from self._families([])

    def collect(self) -> Iterator[Metric]:
        # One step under the GIL: the event loop may show or forget while a scrape reads.
        yield from self._families(list(self._shown.items()))

    @staticmethod
    def _families(shown: list[tuple[str, tuple[str, int]]]) -> Iterator[Metric]:
        state = GaugeMetricFamily(
            "callsync_integration_state",
            "1 for the tenant's current state (active, broken, deactivated)",
            labels=["tenant", "state"])
        backlog = GaugeMetricFamily("callsync_dead_letter_backlog_events",
                                    "Dead-lettered events not yet settled by a replay",
                                    labels=["tenant"])
        for tenant_id, (current, parked) in shown:
            for name in EXPORTED:
                state.add_metric([tenant_id, name], 1.0 if current == name else 0.0)
            backlog.add_metric([tenant_id], float(parked))
        yield state
        yield backlog
