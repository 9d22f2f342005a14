"""Recipes of hostile call records, drawn by hypothesis strategies from a seed.

Hypothesis mixes literals of every local module it finds imported into what it draws, so the
same seed would draw other recipes in a process that imported more of the project. The
recipes are therefore drawn in a child process that imports this module alone
(`python -m pipeline.devtools.chaos.recipes COUNT SEED MAX_STRING`, JSON lines out).
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from typing import Any

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

__all__ = ["HOSTILE_KINDS", "Recipe", "hostile_recipes"]

Recipe = dict[str, Any]
_ANY_WRONG = st.one_of(st.integers(-10**12, 10**12), st.floats(allow_nan=False,
                       allow_infinity=False), st.booleans(), st.lists(st.integers(), max_size=3),
                       st.dictionaries(st.text("abc", max_size=3), st.integers(), max_size=2))
_NOT_TEXT = st.one_of(_ANY_WRONG, st.none())
_NOT_INT = st.one_of(st.text(max_size=8), st.floats(allow_nan=False, allow_infinity=False),
                     st.booleans(), st.none(), st.lists(st.integers(), max_size=2),
                     st.integers(86_401, 10**15), st.integers(-10**15, -1))
WRONG: dict[str, st.SearchStrategy[Any]] = {
    "call_id": _NOT_TEXT, "tenant_id": _NOT_TEXT, "started_at": _NOT_TEXT,
    "direction": st.one_of(_NOT_TEXT, st.sampled_from(["inbound", "IN", ""])),
    "client_phone": st.one_of(_NOT_TEXT, st.sampled_from(["12", "phone", ""])),
    "status": st.one_of(_NOT_TEXT, st.sampled_from(["ok", "missed", ""])),
    "stage": st.one_of(_NOT_TEXT, st.just("over")),
    "talk_seconds": _NOT_INT, "wait_seconds": _NOT_INT,
    "employee": st.one_of(st.text(max_size=5), st.integers(), st.lists(st.integers(), max_size=2),
                          st.fixed_dictionaries({"id": st.integers()})),
    "utm": st.one_of(st.text(max_size=5), st.integers(), st.lists(st.text(max_size=3))),
    "recording_url": st.one_of(st.integers(), st.lists(st.integers()), st.just("not a url")),
    "schema_version": st.one_of(st.integers(2, 99), st.just("1"), st.just(1.0), st.just(True)),
    "tracking_number": st.one_of(st.integers(), st.just("+1"), st.lists(st.integers())),
}
HUGE_FIELDS = ("call_id", "tenant_id", "client_phone", "ga_client_id", "utm.source",
               "employee.id", "employee.extension", "recording_url", "unknown_field")
MUTATIONS = ("talk", "wait", "status", "recording", "employee", "direction", "utm")
HOSTILE_KINDS = ("wrong_type", "huge_string", "big_body", "non_utf8_body", "non_utf8_key",
                 "null_key", "wrong_key", "bad_year", "no_value", "not_object",
                 "unknown_tenant", "conflict")
_INDEX = st.integers(0, 10**9)


# How often each kind is drawn (a ~1 MB body is rare: ten thousand of them would be 10 GB).
WEIGHTS = {"wrong_type": 20, "huge_string": 10, "big_body": 1, "non_utf8_body": 8,
           "non_utf8_key": 6, "null_key": 8, "wrong_key": 8, "bad_year": 8, "no_value": 5,
           "not_object": 8, "unknown_tenant": 8, "conflict": 10}


def _recipe(max_string: int) -> st.SearchStrategy[Recipe]:
    shapes: dict[str, dict[str, st.SearchStrategy[Any]]] = {
        "wrong_type": {"field": st.sampled_from(sorted(WRONG))},
        "huge_string": {"field": st.sampled_from(HUGE_FIELDS),
                        "length": st.integers(3_000, max_string)},
        "big_body": {"length": st.integers(900_000, 990_000)},
        "non_utf8_body": {"junk": st.binary(min_size=1, max_size=64), "whole": st.booleans()},
        "non_utf8_key": {"junk": st.binary(min_size=1, max_size=16)},
        "null_key": {},
        "wrong_key": {"other": _INDEX, "text": st.booleans()},
        "bad_year": {"year": st.sampled_from([1, 9999, 1, 9999, 1999, 2101])},
        "no_value": {"empty": st.booleans()},
        "not_object": {"value": st.one_of(st.lists(st.integers(), max_size=3), st.integers(),
                                          st.text(max_size=8), st.none(), st.booleans())},
        "unknown_tenant": {"ghost": st.integers(0, 999)},
        "conflict": {"mutation": st.sampled_from(MUTATIONS), "adjacent": st.booleans(),
                     "later": st.integers(1, 200)},
    }

    def shaped(kind: str) -> st.SearchStrategy[Recipe]:
        fields = shapes[kind]
        if kind == "wrong_type":  # the wrong value depends on the field it goes into
            return st.sampled_from(sorted(WRONG)).flatmap(lambda name: st.fixed_dictionaries(
                {"kind": st.just(kind), "at": _INDEX, "field": st.just(name),
                 "value": WRONG[name]}))
        return st.fixed_dictionaries({"kind": st.just(kind), "at": _INDEX, **fields})

    weighted = [kind for kind, weight in WEIGHTS.items() for _ in range(weight)]
    return st.sampled_from(weighted).flatmap(shaped)


def draw(count: int, seed_value: int, max_string: int) -> list[Recipe]:
    """`count` recipes, drawn here (hypothesis' generate phase only)."""
    found: list[Recipe] = []
    round_ = 0
    while len(found) < count and round_ < 20:
        @seed(seed_value * 1000 + round_)
        @settings(max_examples=count - len(found), database=None, phases=[Phase.generate],
                  deadline=None, suppress_health_check=list(HealthCheck))
        @given(_recipe(max_string))
        def collect(recipe: Recipe) -> None:
            found.append(recipe)

        collect()
        round_ += 1
    return found[:count]


def _encode(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"__bytes__": base64.b64encode(value).decode()}
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__bytes__"}:
            return base64.b64decode(value["__bytes__"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def hostile_recipes(count: int, *, seed_value: int, max_string: int = 300_000) -> list[Recipe]:
    """The same `count` recipes for the same seed, whoever asks (see the module docstring)."""
    done = subprocess.run(  # noqa: S603 - our own module, fixed arguments
        [sys.executable, "-m", "pipeline.devtools.chaos.recipes", str(count), str(seed_value),
         str(max_string)], capture_output=True, text=True, check=False, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"drawing hostile recipes failed:\n{done.stderr[-2000:]}")
    return [_decode(json.loads(line)) for line in done.stdout.splitlines() if line]


if __name__ == "__main__":
    for one in draw(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])):
        print(json.dumps(_encode(one)))
