"""The worker's HTTP port: /metrics, /healthz and /readyz, and nothing of Faust's own views."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request

import pytest

from pipeline.devtools.samples import sample_tenants
from tests.integration.stack import StackFactory
from tests.integration.support import FAUST_PATHS
from tests.waiting import wait_until

pytestmark = pytest.mark.kafka

def get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read()


async def test_the_port_serves_only_its_three_paths(make_stack: StackFactory) -> None:
    stack = make_stack(sample_tenants(1))
    await stack.start()
    port = stack.metrics_port
    status, body = await asyncio.to_thread(get, port, "/metrics")
    assert status == 200 and b"callsync_events_consumed_total" in body
    assert (await asyncio.to_thread(get, port, "/healthz"))[0] == 200
    assert (await asyncio.to_thread(get, port, "/readyz"))[0] in (200, 503)
    # The worker's loop is uvloop's (CALLSYNC_EVENT_LOOP's default), as it says once ready.
    await wait_until(lambda: "running on uvloop.Loop" in stack.worker.log_tail(400),
                     "the worker naming its event loop", within=30, every=0.2,
                     detail=stack.worker.log_tail)
    key = stack.tenants[0].config.api_key.get_secret_value().encode()
    for path in FAUST_PATHS:
        status, body = await asyncio.to_thread(get, port, path)
        assert status == 404, f"{path} answered {status}"
        assert key not in body
