"""The one way a test waits for something: poll until it holds, fail loudly when it never does."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

__all__ = ["wait_until"]

T = TypeVar("T")


@overload
async def wait_until(condition: Callable[[], Awaitable[T | None]], what: str, *,
                     within: float = ..., every: float = ...,
                     detail: Callable[[], str] | None = ...) -> T: ...


@overload
async def wait_until(condition: Callable[[], T | None], what: str, *,
                     within: float = ..., every: float = ...,
                     detail: Callable[[], str] | None = ...) -> T: ...


async def wait_until(condition: Callable[[], Any], what: str, *,
                     within: float = 30.0, every: float = 0.05,
                     detail: Callable[[], str] | None = None) -> Any:
    """Poll `condition` (plain or async) until it returns something truthy, and return that.

    On timeout raise AssertionError naming `what` and the last value seen, plus `detail()`
    (a worker's log tail, say): a wait that runs out is a failure, never a silent return."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            extra = f"\n{detail()}" if detail is not None else ""
            raise AssertionError(f"waited {within} s for {what}; last seen: {value!r}{extra}")
        await asyncio.sleep(every)
