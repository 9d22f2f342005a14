"""A form goes as the body httpx would have made of the same fields, encoded once by callsync."""

from __future__ import annotations

import asyncio
import json

import httpx
from hypothesis import given
from hypothesis import strategies as st

from pipeline.crm.session import CRMSession
from pipeline.crm.wire import encode_form, form_body
from schemas.crm import CallEventPayload

names = st.text(min_size=1, max_size=12)
scalars = st.one_of(st.none(), st.text(max_size=30), st.integers(), st.booleans(),
                    st.floats(allow_nan=False, allow_infinity=False))
values = st.one_of(scalars, st.lists(scalars, max_size=4),
                   st.dictionaries(names, scalars, max_size=4))


@given(st.dictionaries(names, values, max_size=6))
def test_the_body_is_what_httpx_makes_of_the_fields(fields: dict[str, object]) -> None:
    by_httpx = httpx.Request("POST", "https://crm.example", data=encode_form(fields)).read()
    assert form_body(fields) == by_httpx


def by_dump(model: CallEventPayload) -> str:
    return json.dumps(model.model_dump(mode="json", by_alias=True, exclude_none=True),
                      ensure_ascii=False, separators=(",", ":"))


@given(st.builds(CallEventPayload, phone=st.text(min_size=1, max_size=20),
                 type=st.sampled_from(["in", "out", "hangup"]),
                 codes=st.one_of(st.none(), st.lists(st.text(max_size=8), max_size=3)),
                 userIds=st.one_of(st.none(), st.lists(st.integers(), max_size=3)),
                 callExternalId=st.one_of(st.none(), st.text(max_size=40))))
def test_a_model_is_written_as_its_dump_through_json_dumps_was(event: CallEventPayload
                                                               ) -> None:
    form = encode_form({"event": event, "calls": [event, event]})
    assert form["event"] == by_dump(event)
    assert form["calls"] == f"[{by_dump(event)},{by_dump(event)}]"


def test_a_post_with_and_without_a_form() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"success": True})

    async def run() -> None:
        session = CRMSession(base_url="https://crm.example", api_key="k" * 32,
                             transport=httpx.MockTransport(answer))
        event = {"phone": "+380501112233", "type": "in", "codes": ["101"]}
        await session.request("POST", "telephony/call/event", method="/api/telephony/call/event",
                              form={"event": event, "site": None})
        await session.request("POST", "telephony/call/event", method="/api/telephony/call/event",
                              form={"site": None})
        await session.request("GET", "telephony/call/event", method="/api/telephony/call/event")

    asyncio.run(run())
    with_form, only_none, without = seen
    assert with_form.headers["content-type"] == "application/x-www-form-urlencoded"
    assert with_form.read() == httpx.Request(
        "POST", "https://crm.example", data={"event": encode_form({"event": {
            "phone": "+380501112233", "type": "in", "codes": ["101"]}})["event"]}).read()
    assert with_form.url == "https://crm.example/api/v5/telephony/call/event"
    for request in (only_none, without):
        assert "content-type" not in request.headers
        assert request.read() == b""
    assert [r.headers["x-api-key"] for r in seen] == ["k" * 32] * 3
