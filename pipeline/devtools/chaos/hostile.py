"""Hostile call records from hypothesis strategies, interleaved with valid ones, from a seed.

Each record breaks the call-event contract one way: wrong JSON types, strings past their
bounds, ~1 MB bodies, non-UTF-8 bodies or keys, no key, a key that is not its tenant_id,
years 0001 or 9999, no value, no object, a tenant nobody configured, or a second record of a
call id with other content (a conflict: the first record of a call is the one that counts).
Hypothesis draws small recipes (`recipes.py`); they are materialised here, so a 1 MB body
costs no shrinker.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from typing import Any

from pipeline.devtools.chaos.recipes import Recipe, hostile_recipes
from pipeline.devtools.chaos.workload import Item, Workload, valid_item
from pipeline.streams.producing import record_for_call

__all__ = ["with_hostile"]

AHEAD_MS = 30 * 60 * 1000  # Kafka 4 refuses a record stamped more than an hour ahead


def _spread(drawn: int, size: int) -> int:
    """An index from a drawn number: hypothesis favours small ones, the input is long."""
    return random.Random(drawn).randrange(size)  # noqa: S311 - placement, not secrecy


def _set(event: dict[str, Any], path: str, value: Any) -> None:
    head, _, tail = path.partition(".")
    if tail:
        inner = dict(event.get(head) or ({"id": "emp-x"} if head == "employee" else {}))
        inner[tail] = value
        event[head] = inner
    else:
        event[head] = value


def _item(event: dict[str, Any], kind: str, *, key: bytes | str | None = "tenant",
          value: bytes | None = None) -> Item:
    raw = json.dumps(event).encode() if value is None else value
    record_key, _, timestamp = record_for_call(raw)
    if timestamp is not None and not 0 <= timestamp <= time.time() * 1000 + AHEAD_MS:
        timestamp = None  # the broker refuses a stamp before 1970 or far ahead: producer time
    if key != "tenant":
        record_key = key if not isinstance(key, str) else key.encode()
    return Item(record_key, raw, timestamp, None, kind)


def _hostile(recipe: Recipe, events: Sequence[dict[str, Any]], tenant_ids: Sequence[str],
             n: int) -> Item:
    base = dict(events[_spread(recipe["at"], len(events))])
    base["call_id"] = f"hostile-{n}"  # accepted by mistake, it would show as a call of its own
    kind = recipe["kind"]
    if kind == "wrong_type":
        base[recipe["field"]] = recipe["value"]
    elif kind == "huge_string":
        filler = "7" if recipe["field"] == "client_phone" else "a"
        text = filler * recipe["length"]
        if recipe["field"] == "recording_url":
            text = "https://records.example.com/" + text
        _set(base, recipe["field"], text)
    elif kind == "big_body":
        base["unknown_field"] = ""
        pad = recipe["length"] - len(json.dumps(base))
        base["unknown_field"] = "b" * max(0, pad)
    elif kind == "non_utf8_body":
        body = b"\xff" + recipe["junk"] if recipe["whole"] else json.dumps(base).encode() \
            .replace(b"hostile-", b"hostile-\xff\xfe" + recipe["junk"].replace(b'"', b"'"), 1)
        return _item(base, kind, key=base["tenant_id"], value=body)
    elif kind == "non_utf8_key":
        return _item(base, kind, key=b"\xff\xfe" + recipe["junk"])
    elif kind == "null_key":
        return _item(base, kind, key=None)
    elif kind == "wrong_key":
        others = [t for t in tenant_ids if t != base["tenant_id"]] or ["nobody"]
        other = others[recipe["other"] % len(others)]
        return _item(base, kind, key=other if not recipe["text"] else f"{other}-not-it")
    elif kind == "bad_year":
        base["started_at"] = f"{recipe['year']:04d}" + str(base["started_at"])[4:]
    elif kind == "no_value":
        return Item(base["tenant_id"].encode(), b"" if recipe["empty"] else None, None, None,
                    kind)
    elif kind == "not_object":
        return _item(base, kind, key=base["tenant_id"], value=json.dumps(recipe["value"])
                     .encode())
    elif kind == "unknown_tenant":
        base["tenant_id"] = f"ghost-{recipe['ghost']}"
    return _item(base, kind)


def _conflict(recipe: Recipe, original: dict[str, Any]) -> Item:
    """The same call id with other content, after the original (same tenant, same partition)."""
    event = dict(original)
    mutation = recipe["mutation"]
    if mutation == "talk":
        event["talk_seconds"] = int(event.get("talk_seconds", 0)) + 7
    elif mutation == "wait":
        event["wait_seconds"] = int(event.get("wait_seconds", 0)) + 3
    elif mutation == "status":
        event["status"] = "no_answer" if event["status"] == "answered" else "answered"
    elif mutation == "recording":
        event["recording_url"] = f"https://records.example.com/other/{event['call_id']}.mp3"
    elif mutation == "employee":
        event["employee"] = {"id": "emp-conflict", "extension": "999"}
    elif mutation == "direction":
        event["direction"] = "out" if event["direction"] == "in" else "in"
    else:
        event["utm"] = {"source": "conflict", "medium": "chaos"}
    return _item(event, "conflict")


def with_hostile(valid: Workload, count: int, *, seed_value: int, tenant_ids: Sequence[str],
                 max_string: int = 300_000) -> Workload:
    """The valid items with `count` hostile ones in between, each where its recipe says; a
    conflict right after its original or up to 200 records later."""
    events = valid.events
    slots: list[list[Item]] = [[] for _ in range(len(events) + 1)]
    for n, recipe in enumerate(hostile_recipes(count, seed_value=seed_value,
                                               max_string=max_string)):
        at = _spread(recipe["at"], len(events))
        if recipe["kind"] == "conflict":
            place = at + 1 if recipe["adjacent"] else min(len(events), at + 1 + recipe["later"])
            slots[place].append(_conflict(recipe, events[at]))
        else:
            slots[_spread(recipe["at"] + 1, len(events) + 1)].append(
                _hostile(recipe, events, tenant_ids, n))
    items: list[Item] = []
    for n, slot in enumerate(slots):
        items += slot
        if n < len(events):
            items.append(valid_item(events[n]))
    return Workload(items)
