"""The ``monitors-incidents`` event: model, JSON schema, golden examples, reason texts."""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any

import jsonschema
import pytest

from schemas.enums import CheckInStatus
from schemas.examples import load_example
from schemas.incident_events import (
    IncidentEvent,
    IncidentEventError,
    complete_event,
    decode_incident_event,
    failure_reason,
)

EXAMPLES = ("incident_opened", "incident_failure", "incident_resolved")
E, M, T, OK = CheckInStatus.ERROR, CheckInStatus.MISSED, CheckInStatus.TIMEOUT, CheckInStatus.OK


def _schema() -> dict[str, Any]:
    return dict(json.loads((files("schemas") / "monitors-incidents.v1.schema.json").read_text()))


@pytest.mark.parametrize("name", EXAMPLES)
def test_each_golden_example_round_trips_through_the_model(name: str) -> None:
    example = load_example(name)
    event = decode_incident_event(json.dumps(example))
    assert json.loads(event.to_json()) == example


@pytest.mark.parametrize("name", EXAMPLES)
def test_each_golden_example_validates_against_the_json_schema(name: str) -> None:
    jsonschema.validate(load_example(name), _schema())


def test_the_shipped_json_schema_is_the_models_schema() -> None:
    shipped = {k: v for k, v in _schema().items() if k not in ("$schema", "$id", "title")}
    assert shipped == {k: v for k, v in IncidentEvent.model_json_schema().items() if k != "title"}


@pytest.mark.parametrize(("mutate", "where"), [
    (lambda e: e.update(type="reopened"), "type"),
    (lambda e: e.update(surprise=1), "surprise"),
    (lambda e: e.pop("event_id"), "event_id"),
    (lambda e: e["monitor"].update(id="not-a-uuid"), "monitor.id"),
])
def test_an_invalid_event_is_refused_naming_the_field(mutate: Any, where: str) -> None:
    event = load_example("incident_opened")
    mutate(event)
    with pytest.raises(IncidentEventError, match=where):
        decode_incident_event(event)


@pytest.mark.parametrize(("statuses", "reason"), [
    ([M], "A missed check-in was detected"),
    ([E], "An error check-in was detected"),
    ([T], "A timeout check-in was detected"),
    ([M, M], "2 missed check-ins detected"),
    ([M, M, M], "3 missed check-ins detected"),
    ([E, M, M], "1 error and 2 missed check-ins detected"),
    ([T, E, M, E], "1 timeout, 2 error and 1 missed check-ins detected"),
    ([OK, M, M], "2 missed check-ins detected"),
])
def test_the_failure_reason_counts_statuses_as_sentry_words_them(statuses: list[CheckInStatus], reason: str) -> None:
    assert failure_reason(statuses) == reason


def test_completing_an_outbox_payload_adds_reason_and_previous_checkins() -> None:
    draft = load_example("incident_opened")
    draft.pop("reason")
    draft.pop("previous_checkin_ids")
    draft["recovery_threshold"] = 2
    event = complete_event(draft)
    assert event.reason == "2 missed check-ins detected"
    assert [str(i) for i in event.previous_checkin_ids] == [draft["failing_checkins"][0]["id"]]


def test_a_resolved_event_names_the_recovery_run() -> None:
    draft = load_example("incident_resolved")
    draft.pop("reason")
    draft["recovery_threshold"] = 3
    assert complete_event(draft).reason == "Resolved by 3 consecutive OK check-ins"
