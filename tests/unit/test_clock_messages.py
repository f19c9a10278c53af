"""The monitors-clock-tick and monitors-clock-tasks wire contract."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from pydantic import TypeAdapter, ValidationError

from schemas.clock import (
    ClockTask,
    ClockTick,
    MarkMissing,
    MarkTimeout,
    decode_clock_task,
    decode_clock_tick,
    encode_clock_task,
    encode_clock_tick,
    encode_mark_missing,
    encode_mark_timeout,
    task_key,
)
from schemas.examples import load_example
from schemas.messages import MessageDecodeError


def test_golden_clock_tick_round_trips() -> None:
    example = load_example("clock_tick")

    tick = decode_clock_tick(orjson.dumps(example))

    assert tick == ClockTick(ts=1714072920)
    assert orjson.loads(encode_clock_tick(tick.ts)) == example


@pytest.mark.parametrize(("name", "model"), [("mark_missing", MarkMissing), ("mark_timeout", MarkTimeout)])
def test_golden_clock_task_round_trips(name: str, model: type[MarkMissing | MarkTimeout]) -> None:
    example = load_example(name)

    task = decode_clock_task(orjson.dumps(example))

    assert isinstance(task, model)
    assert orjson.loads(encode_clock_task(task)) == example
    assert decode_clock_task(encode_clock_task(task)) == task


def test_encode_helpers_write_the_documented_shapes() -> None:
    assert orjson.loads(encode_mark_missing(120, 7)) == {"type": "mark_missing", "ts": 120, "monitor_environment_id": 7}
    assert orjson.loads(encode_mark_timeout(120, 7, 99)) == {
        "type": "mark_timeout",
        "ts": 120,
        "monitor_environment_id": 7,
        "checkin_id": 99,
    }


def test_task_is_keyed_by_its_monitor_environment() -> None:
    assert task_key(MarkTimeout(ts=60, monitor_environment_id=42, checkin_id=1)) == b"42"


def test_clock_task_union_dispatches_on_type() -> None:
    adapter: TypeAdapter[ClockTask] = TypeAdapter(ClockTask)

    task = adapter.validate_python({"type": "mark_missing", "ts": 60, "monitor_environment_id": 1})

    assert isinstance(task, MarkMissing)


def test_integral_float_timestamps_are_read_as_integers() -> None:
    # Sentry's own tick producer writes ts as a float.
    assert decode_clock_tick(b'{"ts": 1714072920.0}') == ClockTick(ts=1714072920)


def test_encoding_an_unaligned_tick_is_refused() -> None:
    with pytest.raises(ValidationError):
        encode_clock_tick(61)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"ts": 61}', "ts: must be minute-aligned, got 61"),
        (b'{"ts": 1714072962}', "ts: must be minute-aligned, got 1714072962"),
        (b'{"ts": 120.5}', "ts: must be an integer"),
        (b'{"ts": "120"}', "ts: must be an integer"),
        (b'{"ts": true}', "ts: must be an integer"),
        (b"{}", "ts: field required"),
        (b'{"ts": 120, "partition": 1}', "partition: unexpected field"),
        (b"[120]", "not an object"),
        (b"", "not JSON: "),
        (b"ts=120", "not JSON: "),
    ],
)
def test_decode_clock_tick_rejects_with_a_specific_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(MessageDecodeError) as caught:
        decode_clock_tick(raw)

    assert caught.value.reason.startswith(reason)
    if not reason.endswith(": "):
        assert caught.value.reason == reason


TIMEOUT: dict[str, Any] = {"type": "mark_timeout", "ts": 60, "monitor_environment_id": 1, "checkin_id": 2}


@pytest.mark.parametrize(
    ("task", "reason"),
    [
        ({"ts": 60, "monitor_environment_id": 1}, "type: field required"),
        ({**TIMEOUT, "type": "mark_unknown"}, "unknown type 'mark_unknown'"),
        ({**TIMEOUT, "type": 1}, "unknown type 1"),
        ({k: v for k, v in TIMEOUT.items() if k != "checkin_id"}, "checkin_id: field required"),
        ({**TIMEOUT, "checkin_id": "2"}, "checkin_id: must be an integer"),
        ({**TIMEOUT, "monitor_environment_id": 0}, "monitor_environment_id: must be >= 1"),
        ({**TIMEOUT, "extra": True}, "extra: unexpected field"),
        ({"type": "mark_missing", "ts": 60, "monitor_environment_id": 1, "checkin_id": 2}, "checkin_id: unexpected field"),
    ],
)
def test_decode_clock_task_rejects_with_a_specific_reason(task: dict[str, Any], reason: str) -> None:
    with pytest.raises(MessageDecodeError) as caught:
        decode_clock_task(orjson.dumps(task))

    assert caught.value.reason == reason
