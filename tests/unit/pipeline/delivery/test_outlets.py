"""The invalid-events and dead-letter copies: what they carry, cut to what the producer takes."""

from __future__ import annotations

from datetime import UTC, datetime

from pipeline.delivery.errorpolicy import DeadLetter
from pipeline.delivery.outlets import MAX_COPY_BYTES, MAX_KEY_BYTES, Headers, TopicOutlets
from pipeline.delivery.planning import plan_call
from pipeline.delivery.work import SourceRef, Work
from schemas.call_event import CallEvent
from schemas.integration import IntegrationConfig
from schemas.mapping import EmployeeMapping
from tests.unit.pipeline.operations.fakekafka import call_json

NOW = datetime(2024, 3, 13, 10, 0, tzinfo=UTC)
SOURCE = SourceRef("calls", 3, 1207)
Sent = tuple[bytes | None, bytes, Headers]


class Topics:
    def __init__(self) -> None:
        self.invalid: list[Sent] = []
        self.dead: list[Sent] = []
        self.outlets = TopicOutlets(send_invalid=self._invalid, send_dead_letter=self._dead,
                                    clock=lambda: NOW)

    async def _invalid(self, key: bytes | None, value: bytes, headers: Headers) -> None:
        self.invalid.append((key, value, headers))

    async def _dead(self, key: bytes | None, value: bytes, headers: Headers) -> None:
        self.dead.append((key, value, headers))


def work() -> Work:
    raw = call_json("c9", NOW)
    event = CallEvent.model_validate_json(raw)
    config = IntegrationConfig.model_validate({
        "tenant_id": "acme", "portal_url": "https://acme.retailcrm.ru",
        "admin_email": "admin@acme.example.com", "site_code": "main", "api_key": "k"})
    plan = plan_call(event, config, EmployeeMapping(tenant_id="acme", senior_manager_id=28))
    return Work(event=event, plan=plan, raw=raw, key=b"acme", source=SOURCE, ack=lambda: None)


COMMON = [("callsync-source-topic", b"calls"), ("callsync-source-partition", b"3"),
          ("callsync-source-offset", b"1207"), ("callsync-time", NOW.isoformat().encode())]


async def test_an_invalid_copy_keeps_the_record_and_says_why_and_where_from() -> None:
    topics = Topics()
    await topics.outlets.invalid(raw=b"{bad", key=b"acme", source=SOURCE,
                                 reason="undecodable: x", tenant_id=None)
    await topics.outlets.invalid(raw=None, key=None, source=SOURCE, reason="r" * 3000,
                                 tenant_id="acme")
    assert topics.invalid[0] == (b"acme", b"{bad", [("callsync-reason", b"undecodable: x"),
                                                     *COMMON])
    key, value, headers = topics.invalid[1]
    assert (key, value) == (None, b"")
    assert headers == [("callsync-reason", b"r" * 2000), *COMMON,
                       ("callsync-tenant", b"acme")]
    assert topics.dead == []


async def test_an_oversized_record_lands_cut_with_its_length() -> None:
    topics = Topics()
    big, long_key = b"v" * (MAX_COPY_BYTES + 10), b"k" * (MAX_KEY_BYTES + 1)
    await topics.outlets.invalid(raw=big, key=long_key, source=SOURCE, reason="schema: x",
                                 tenant_id=None)
    key, value, headers = topics.invalid[0]
    assert len(value) == MAX_COPY_BYTES and key is not None and len(key) == MAX_KEY_BYTES
    assert headers[-2:] == [("callsync-truncated-value", str(len(big)).encode()),
                            ("callsync-truncated-key", str(len(long_key)).encode())]


async def test_a_dead_letter_names_tenant_call_reasons_methods_and_whether_it_is_broken(
        ) -> None:
    topics = Topics()
    parked = work()
    await topics.outlets.dead_letter(parked, [
        DeadLetter("order:RetriesExhausted:CRMServerError", broken=False,
                   method="/api/v5/orders/create"),
        DeadLetter("task:NoPerformer", broken=False),
        DeadLetter("AccessDenied", broken=True, method="/api/v5/customers/create")])
    [(key, value, headers)] = topics.dead
    assert (key, value) == (b"acme", parked.raw)
    assert headers == [
        ("callsync-tenant", b"acme"), ("callsync-call-id", b"c9"),
        ("callsync-reason",
         b"order:RetriesExhausted:CRMServerError;task:NoPerformer;AccessDenied"),
        ("callsync-methods", b"/api/v5/customers/create;/api/v5/orders/create"),
        ("callsync-broken", b"1"), *COMMON]
    await topics.outlets.dead_letter(parked, [DeadLetter("task:NoPerformer", broken=False)])
    assert dict(topics.dead[1][2])["callsync-broken"] == b"0"
    assert dict(topics.dead[1][2])["callsync-methods"] == b""
