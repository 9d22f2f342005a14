"""Whole callsync stacks for end-to-end tests: made on demand, stopped after the test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.samples import SampleTenant
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
