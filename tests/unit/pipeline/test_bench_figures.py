"""The benchmark's arithmetic: call kinds, floors, ratios. No timing: speed is the bench's."""

from __future__ import annotations

import math
from typing import Any

import pytest

from pipeline.devtools.bench_figures import (
    FLOORS,
    classify,
    fewest_uploads,
    figure_row,
    is_call_method,
    mix_floor,
    percentile,
    ratio,
    render_table,
    split_floor,
)


def call(tenant: str, phone: str, status: str = "answered", direction: str = "in"
         ) -> dict[str, Any]:
    return {"tenant_id": tenant, "client_phone": phone, "status": status,
            "direction": direction}


def test_a_caller_is_new_until_an_inbound_call_of_theirs_made_the_customer() -> None:
    events = [call("a", "+1"), call("a", "+1", "no_answer"), call("a", "+1"),
              call("a", "+2", "busy"), call("a", "+2", "no_answer")]
    assert classify(events) == {"new_answered": 1, "known_missed": 2, "known_answered": 1,
                                "new_missed": 1}


def test_an_outgoing_call_makes_no_customer_and_callers_are_known_per_tenant() -> None:
    events = [call("a", "+1", direction="out"), call("a", "+1"), call("b", "+1")]
    assert classify(events) == {"outgoing": 1, "new_answered": 2}


def test_the_floors_are_the_issues() -> None:
    assert FLOORS["new_answered"].total == pytest.approx(1.06)
    assert FLOORS["new_missed"].total == pytest.approx(2.06)
    assert FLOORS["known_answered"].total == pytest.approx(0.02)
    assert FLOORS["outgoing"].total == pytest.approx(0.02)


def test_a_mix_floor_weighs_each_kind_by_its_share() -> None:
    counts = {"new_answered": 2, "new_missed": 1, "known_answered": 1}
    assert mix_floor(counts) == pytest.approx((2 * 1.06 + 2.06 + 0.02) / 4)
    assert math.isnan(mix_floor({}))


def test_the_floor_splits_into_the_two_budgets() -> None:
    floor = split_floor({"new_missed": 50, "known_answered": 50})
    # lookups and uploads on the telephony budget; customers, orders and tasks on the general
    assert floor.telephony == pytest.approx(50 + 1 + 1)
    assert floor.general == pytest.approx(50 + 2)


def test_ratios_and_whether_a_figure_meets_its_goal() -> None:
    assert ratio(2.82, 1.3) == pytest.approx(2.1692, abs=1e-4)
    assert ratio(0, 0) == 0.0 and ratio(3, 0) == math.inf
    assert math.isnan(ratio(math.nan, 1))
    at_most = figure_row("rss", 180.0, 190.0)
    assert at_most["meets"] == "yes" and at_most["ratio"] == pytest.approx(180 / 190)
    at_least = figure_row("events/s", 50.0, 500.0, "min")
    assert at_least["meets"] == "no" and at_least["ratio"] == pytest.approx(0.1)
    unmeasured = figure_row("p99", math.nan, 100.0)
    assert unmeasured["meets"] is None
    assert figure_row("cpu", 1.0)["ratio"] is None


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([7.0], 0.99) == 7.0
    assert math.isnan(percentile([], 0.5))


def test_only_call_methods_count_as_a_calls_requests() -> None:
    assert is_call_method("/api/telephony/calls/upload")
    assert is_call_method("/api/customers/create")
    assert not is_call_method("/api/users")
    assert not is_call_method("/api/integration-modules/{code}/edit")


def test_the_table_shows_every_row_with_its_ratio() -> None:
    text = render_table([figure_row("requests/call, mix", 2.82, 1.3, note="floor 1.20"),
                         figure_row("cpu", math.nan)])
    lines = text.splitlines()
    assert lines[0].split() == ["figure", "measured", "goal", "ratio", "meets", "note"]
    assert "2.820" in lines[1] and "2.169" in lines[1] and "no" in lines[1]
    assert lines[2].split()[1] == "-"


def test_the_fewest_uploads_fill_each_tenants_to_50() -> None:
    events = [call("a", f"+{n}") for n in range(150)] + [call("b", f"+{n}") for n in range(51)]
    assert fewest_uploads(events) == 3 + 2
    assert fewest_uploads([call("c", "+1")]) == 1
    assert fewest_uploads([]) == 0
