from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from consumers.maintenance.plan import RetentionConfig, expired, plan

UTC = timezone.utc
NOW = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
TODAY = NOW.date()
CONFIG = RetentionConfig(default_days=90, hourly_rollup_days=90, daily_rollup_days=400, ahead_days=7)


def day(n: int) -> date:
    return TODAY - timedelta(days=n)


@pytest.mark.parametrize(("age_days", "retention", "gone"), [
    (30, 30, False),  # ran 30 days ago: kept until the end of its 30th day
    (31, 30, True),
    (90, 90, False),
    (91, 90, True),
    (0, 1, False),
])
def test_a_day_expires_the_midnight_after_its_retention_has_run(age_days: int, retention: int, gone: bool) -> None:
    assert expired(day(age_days), retention, TODAY) is gone


def test_a_partition_is_dropped_when_its_longest_retention_has_run_out() -> None:
    decided = plan(NOW, [day(91), day(95)], {day(91): {30, 90}, day(95): {90}}, CONFIG)
    assert decided.drop == [day(95), day(91)] and decided.trim == []


def test_a_partition_kept_for_its_longer_rows_is_trimmed_of_the_expired_shorter_ones() -> None:
    decided = plan(NOW, [day(40), day(10)], {day(40): {7, 30, 90}, day(10): {30, 90}}, CONFIG)
    assert decided.drop == [] and decided.trim == [(day(40), 30)]


def test_an_empty_partition_lives_as_long_as_a_default_one() -> None:
    decided = plan(NOW, [day(90), day(91)], {}, CONFIG)
    assert decided.drop == [day(91)]


def test_yesterday_today_and_the_days_ahead_are_created_when_missing() -> None:
    decided = plan(NOW, [TODAY, TODAY + timedelta(days=3)], {}, CONFIG)
    expected = [TODAY + timedelta(days=n) for n in range(-1, 8) if n not in (0, 3)]
    assert decided.create == expected


def test_rollups_and_orphan_attachments_have_their_own_cutoffs() -> None:
    decided = plan(NOW, [], {}, CONFIG)
    midnight = datetime(2026, 12, 2, tzinfo=UTC)
    assert decided.hourly_rollups_before == midnight - timedelta(days=90)
    assert decided.daily_rollups_before == midnight - timedelta(days=400)
    assert decided.orphan_attachments_before == midnight - timedelta(days=90)


def test_sent_outbox_rows_and_finished_deliveries_are_kept_their_own_number_of_days() -> None:
    decided = plan(NOW, [], {}, RetentionConfig(outbox_days=7, delivery_days=30))
    assert decided.outbox_sent_before == NOW - timedelta(days=7)
    assert decided.deliveries_before == NOW - timedelta(days=30)
