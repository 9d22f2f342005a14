"""The operator's CLI reading the results topic: what is not a worker's answer is skipped."""

from __future__ import annotations

import pytest

from pipeline.operations.operator import read_answer


@pytest.mark.parametrize("value", [None, b"", b"\xff\xfe", b"[]", b'{"command_id": "x"}',
                                   b'{"command_id": "x", "status": "won", "at": "2026-12-03"}',
                                   b'{"command_id": "x", "status": "done", "at": "now"}'])
def test_a_record_that_is_no_answer_is_skipped_not_raised(value: bytes | None) -> None:
    assert read_answer(value) is None


def test_a_workers_answer_is_read() -> None:
    answer = read_answer(b'{"command_id": "activate-1", "status": "done", "message": "ok", '
                         b'"at": "2026-12-03T07:00:00+00:00", "data": {"n": 1}}')
    assert answer is not None and answer.status == "done" and answer.data == {"n": 1}
