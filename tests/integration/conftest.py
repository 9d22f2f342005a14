"""Whole callsync stacks for end-to-end tests: made on demand, stopped after the test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.devtools.chaos.runner import own_broker
from pipeline.devtools.localkafka import LocalKafka
from pipeline.devtools.samples import SampleTenant
from tests.integration.stack import Stack, StackFactory


@pytest.fixture
async def make_stack(kafka_bootstrap: str, tmp_path: Path) -> AsyncIterator[StackFactory]:
    stacks: list[Stack] = []

    def make(samples: list[SampleTenant], **kw: Any) -> Stack:
        stack = Stack(kafka_bootstrap, tmp_path / f"s{len(stacks)}", samples, **kw)
        stack.workdir.mkdir()
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        await asyncio.to_thread(stack.stop)


@pytest.fixture(scope="module")
def chaos_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    """A broker of the broker scenarios' own: they stop and restart it on its kept data."""
    with own_broker(tmp_path_factory.mktemp("chaos-broker")) as broker:
        yield broker
