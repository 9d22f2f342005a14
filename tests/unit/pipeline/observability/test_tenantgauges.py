"""The per-tenant state gauges: one sample per state for each tenant shown, gone once forgotten."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from pipeline.observability.tenantgauges import TenantGauges


def _registry() -> tuple[TenantGauges, CollectorRegistry]:
    gauges, registry = TenantGauges(), CollectorRegistry()
    registry.register(gauges)
    return gauges, registry


def test_each_tenant_shown_has_one_state_set_and_its_backlog() -> None:
    gauges, registry = _registry()
    gauges.show("acme", "broken", 7)
    gauges.show("globex", "active", 0)
    gauges.show("acme", "active", 2)  # shown again: the newest values stand

    def state(tenant: str, name: str) -> float | None:
        return registry.get_sample_value("callsync_integration_state",
                                         {"tenant": tenant, "state": name})

    assert [state("acme", n) for n in ("active", "broken", "deactivated")] == [1.0, 0.0, 0.0]
    assert state("globex", "active") == 1.0
    assert registry.get_sample_value("callsync_dead_letter_backlog_events",
                                     {"tenant": "acme"}) == 2.0
    gauges.forget("acme")
    gauges.forget("initech")  # never shown: nothing to forget
    assert state("acme", "active") is None
    text = generate_latest(registry).decode()
    assert "# TYPE callsync_integration_state gauge" in text
    assert 'callsync_dead_letter_backlog_events{tenant="globex"} 0.0' in text
    assert "acme" not in text


def test_with_no_tenant_the_families_are_still_described() -> None:
    _, registry = _registry()
    text = generate_latest(registry).decode()
    assert "# HELP callsync_integration_state" in text
    assert "# HELP callsync_dead_letter_backlog_events" in text
