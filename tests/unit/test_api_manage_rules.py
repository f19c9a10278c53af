"""Pure parts of monitor management: deadlines after a schedule change or re-enable, and
the monitor list's ``query``."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from api.errors import BadParameter
from api.manage import next_deadlines
from api.routes import parse_list_query
from schemas.enums import MonitorStatus
from schemas.monitor_config import parse_monitor_config

NOW = datetime(2026, 6, 1, 12, 0, 30, tzinfo=UTC)


def config(schedule: str, margin: int = 5) -> object:
    return parse_monitor_config({"schedule_type": "crontab", "schedule": schedule, "checkin_margin": margin})


def test_the_next_slot_follows_the_last_check_in_while_its_deadline_is_ahead() -> None:
    d = next_deadlines(config("*/15 * * * *"), datetime(2026, 6, 1, 11, 50, tzinfo=UTC), NOW, from_now=False)  # type: ignore[arg-type]
    assert (d.next_checkin, d.next_checkin_latest) == (datetime(2026, 6, 1, 12, 0, tzinfo=UTC),
                                                       datetime(2026, 6, 1, 12, 5, tzinfo=UTC))


def test_a_slot_whose_deadline_has_passed_is_skipped_for_the_next_after_now() -> None:
    d = next_deadlines(config("*/15 * * * *"), datetime(2026, 6, 1, 9, 0, tzinfo=UTC), NOW, from_now=False)  # type: ignore[arg-type]
    assert d.next_checkin == datetime(2026, 6, 1, 12, 15, tzinfo=UTC)


def test_re_enabling_always_starts_after_now() -> None:
    d = next_deadlines(config("0 * * * *", margin=90), datetime(2026, 6, 1, 11, 59, tzinfo=UTC), NOW, from_now=True)  # type: ignore[arg-type]
    assert (d.next_checkin, d.next_checkin_latest) == (datetime(2026, 6, 1, 13, 0, tzinfo=UTC),
                                                       datetime(2026, 6, 1, 14, 30, tzinfo=UTC))


@pytest.mark.parametrize("query, statuses, text", [
    (None, None, None),
    ("nightly", None, "%nightly%"),
    ("status:disabled", [MonitorStatus.DISABLED], None),
    ("db status:ok,error backup", [MonitorStatus.OK, MonitorStatus.ERROR], "%db backup%"),
    ("100%_done", None, "%100\\%\\_done%"),
])
def test_the_list_query_splits_status_tokens_from_free_text(query: str | None, statuses: list[int] | None,
                                                             text: str | None) -> None:
    assert parse_list_query(query) == (statuses, text)


def test_an_unknown_status_in_the_query_is_a_bad_query_parameter() -> None:
    with pytest.raises(BadParameter) as refused:
        parse_list_query("status:sleepy")
    assert refused.value.parameter == "query"
