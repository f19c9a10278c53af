"""`cronpipe bench clock`'s waiting: no fixed deadline, only a stall limit, with progress."""

from __future__ import annotations

import time

import pytest

from cronpipe.bench import clock
from cronpipe.cli import build_parser


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fake_time(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(time, "monotonic", fake)
    return fake


def test_a_slow_wait_goes_on_as_long_as_something_moves(fake_time: FakeClock) -> None:
    reports: list[tuple[int, int, float]] = []
    progress = clock._Progress(stall_s=60.0, report=lambda *r: reports.append(r))
    for step in range(10):  # 10 minutes, a little progress every 50 s: never a stall
        fake_time.now += 50.0
        progress.check(step * 100, 10_000, "tasks")
    assert len(reports) == 10 and reports[-1] == (900, 10_000, 500.0)


def test_a_wait_without_progress_for_the_stall_limit_fails_and_says_how_far_it_got(fake_time: FakeClock) -> None:
    progress = clock._Progress(stall_s=60.0, report=None)
    progress.check(500, 10_000, "tasks")
    fake_time.now += 59.0
    progress.check(500, 10_000, "tasks")
    fake_time.now += 2.0
    with pytest.raises(TimeoutError, match="tasks: 500 of 10000 consumed, no progress for 60 s"):
        progress.check(500, 10_000, "tasks")


def test_the_guard_ab_options_parse_and_default_to_one_round() -> None:
    args = build_parser().parse_args(["bench", "clock", "--monitors", "10000", "--guard-ab"])
    assert (args.guard_ab, args.rounds, args.stall_timeout, args.monitors) == (True, 1, 120.0, 10_000)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "clock", "--guard-ab", "--rounds", "0"])
