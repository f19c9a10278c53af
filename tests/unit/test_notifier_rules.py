"""The notifier's pure parts: retry decisions, request formats and signatures, and the
private-destination rule."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import pytest

from notifier.formats import render, sign
from notifier.policy import Attempt, RetryPolicy, decide
from schemas.destinations import DestinationRefused, is_public_address, resolve_destination
from schemas.examples import load_example
from schemas.incident_events import IncidentEvent, decode_incident_event

NOW = datetime(2026, 12, 2, 4, 0, tzinfo=UTC)
POLICY = RetryPolicy(base_s=10, cap_s=3600, retry_for_s=86400)


@pytest.mark.parametrize("code", [200, 201, 202, 204])
def test_any_2xx_is_delivered(code: int) -> None:
    assert decide(Attempt(code), 1, NOW, NOW, POLICY, 0.5).outcome == "delivered"


@pytest.mark.parametrize("attempt", [Attempt(429), Attempt(500), Attempt(503), Attempt(None, "timed out")])
def test_throttling_server_errors_and_timeouts_are_retried_later(attempt: Attempt) -> None:
    decision = decide(attempt, 1, NOW, NOW, POLICY, 0.0)
    assert decision.outcome == "retry" and not decision.permanent
    assert decision.next_attempt_at == NOW + timedelta(seconds=5)


@pytest.mark.parametrize("code", [400, 401, 403, 404, 410])
def test_other_4xx_are_permanent_failures(code: int) -> None:
    decision = decide(Attempt(code), 1, NOW, NOW, POLICY, 0.5)
    assert (decision.outcome, decision.permanent) == ("failed", True)


def test_a_refused_destination_is_permanent() -> None:
    assert decide(Attempt(None, "private", refused=True), 1, NOW, NOW, POLICY, 0.5).outcome == "failed"


def test_back_off_doubles_with_jitter_and_is_capped() -> None:
    assert [POLICY.delay(n, 0.999999) for n in (1, 2, 3)] == pytest.approx([10, 20, 40], rel=1e-5)
    assert POLICY.delay(1, 0.0) == 5
    assert POLICY.delay(30, 0.999999) == pytest.approx(3600, rel=1e-5)


def test_retrying_stops_once_the_retry_window_has_passed() -> None:
    created = NOW - timedelta(hours=23, minutes=59)
    assert decide(Attempt(500), 20, created, NOW, POLICY, 0.5).outcome == "expired"


def _event() -> IncidentEvent:
    return decode_incident_event(load_example("incident_opened"))


def test_a_webhook_carries_the_event_its_id_and_a_signature_that_verifies() -> None:
    request = render("webhook", _event(), secret="s3cret", routing_key=None, link_base="http://api")
    assert json.loads(request.body) == load_example("incident_opened")
    assert request.headers["X-Cronpipe-Event-Id"] == load_example("incident_opened")["event_id"]
    expected = hmac.new(b"s3cret", request.body, hashlib.sha256).hexdigest()
    assert request.headers["X-Cronpipe-Signature"] == f"sha256={expected}" == sign("s3cret", request.body)


def test_a_slack_message_names_monitor_environment_reason_and_links_the_check_ins() -> None:
    body = json.loads(render("slack", _event(), secret="x", routing_key=None, link_base="http://api:8001").body)
    text = body["blocks"][0]["text"]["text"]
    assert "Nightly backup (production)" in body["text"] and "2 missed check-ins detected" in body["text"]
    assert "http://api:8001/api/0/organizations/acme/monitors/nightly-backup/checkins/?environment=production" in text


def test_pagerduty_triggers_with_the_incident_as_dedup_key_and_resolves_it() -> None:
    opened = json.loads(render("pagerduty", _event(), secret="x", routing_key="RK", link_base="").body)
    resolved_event = decode_incident_event(load_example("incident_resolved"))
    resolved = json.loads(render("pagerduty", resolved_event, secret="x", routing_key="RK", link_base="").body)
    assert (opened["event_action"], opened["routing_key"], opened["payload"]["severity"]) == ("trigger", "RK", "error")
    assert resolved == {"routing_key": "RK", "event_action": "resolve", "dedup_key": opened["dedup_key"]}
    assert opened["dedup_key"].endswith(load_example("incident_opened")["incident_id"])


@pytest.mark.parametrize(("address", "public"), [
    ("127.0.0.1", False), ("10.1.2.3", False), ("192.168.0.1", False), ("172.16.0.1", False),
    ("169.254.169.254", False), ("100.64.0.1", False), ("0.0.0.0", False), ("::1", False),
    ("fe80::1", False), ("fc00::1", False), ("::ffff:127.0.0.1", False), ("224.0.0.1", False),
    ("8.8.8.8", True), ("2606:4700:4700::1111", True),
])
def test_only_global_addresses_are_public(address: str, public: bool) -> None:
    assert is_public_address(address) is public


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/hook", "http://localhost/hook", "http://[::1]/",
                                 "http://169.254.169.254/latest/meta-data", "http://10.0.0.8/"])
def test_private_destinations_are_refused_unless_allowed(url: str) -> None:
    with pytest.raises(DestinationRefused, match="CRONPIPE_NOTIFY_ALLOW_PRIVATE"):
        resolve_destination(url, allow_private=False)
    assert resolve_destination(url, allow_private=True).addresses


@pytest.mark.parametrize(("url", "why"), [("ftp://example.com/", "http"), ("http:///x", "no host"),
                                          ("http://u:p@example.com/", "credentials")])
def test_malformed_destinations_are_refused_with_a_reason(url: str, why: str) -> None:
    with pytest.raises(DestinationRefused, match=why):
        resolve_destination(url, allow_private=True)


def test_the_pinned_resolver_answers_only_with_checked_addresses() -> None:
    import asyncio

    from notifier.delivery import PinnedResolver

    resolver = PinnedResolver()
    with pytest.raises(OSError, match="not resolved and checked"):
        asyncio.run(resolver.resolve("hooks.example.com", 443))
    resolver.checked["hooks.example.com"] = ("93.184.216.34", "2606:2800:220:1::1")
    answers = asyncio.run(resolver.resolve("hooks.example.com", 443))
    assert [(a["host"], a["port"], a["hostname"]) for a in answers] == [
        ("93.184.216.34", 443, "hooks.example.com"), ("2606:2800:220:1::1", 443, "hooks.example.com")]
