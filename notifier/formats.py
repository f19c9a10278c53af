"""Request bodies per channel kind, and the webhook signature.

- ``webhook``: the event JSON itself; ``X-Cronpipe-Event-Id`` lets receivers drop
  duplicates (delivery is at least once), ``X-Cronpipe-Signature: sha256=<hex>`` is the
  HMAC-SHA256 of the exact body with the channel's secret.
- ``slack``: an incoming-webhook message (``text`` plus one section block).
- ``pagerduty``: Events API v2, ``trigger`` for opened/failure and ``resolve`` for
  resolved, with the incident id as ``dedup_key`` so PagerDuty keeps one alert per
  incident (a cronpipe incident maps 1:1 onto a PagerDuty alert; Alertmanager would
  auto-resolve an alert that is not re-sent every few minutes).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import quote, urlencode

import orjson

from schemas.channels import KINDS
from schemas.incident_events import IncidentEvent

__all__ = ["KINDS", "Request", "render", "sign"]


@dataclass(frozen=True)
class Request:
    body: bytes
    headers: dict[str, str]


def sign(secret: str, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256 of body>`` with ``secret``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def render(kind: str, event: IncidentEvent, *, secret: str, routing_key: str | None, link_base: str,
           test: bool = False) -> Request:
    """The request for one event on one channel; raises ValueError for an unknown kind."""
    if kind == "webhook":
        body = event.to_json()
        headers = {"X-Cronpipe-Event-Id": str(event.event_id), "X-Cronpipe-Signature": sign(secret, body)}
        if test:
            headers["X-Cronpipe-Test"] = "1"
    elif kind == "slack":
        body = orjson.dumps(slack_message(event, link_base))
        headers = {}
    elif kind == "pagerduty":
        body = orjson.dumps(pagerduty_event(event, routing_key or "", link_base))
        headers = {}
    else:
        raise ValueError(f"unknown channel kind {kind!r}")
    return Request(body, {"Content-Type": "application/json", "User-Agent": "cronpipe-notifier/1", **headers})


def checkins_link(event: IncidentEvent, link_base: str) -> str:
    """The read API's check-in list of the monitor environment."""
    query = urlencode({"environment": event.environment})
    return (f"{link_base.rstrip('/')}/api/0/organizations/{quote(event.organization.slug)}/monitors/"
            f"{quote(event.monitor.slug)}/checkins/?{query}")


def _headline(event: IncidentEvent) -> str:
    what = {"opened": "Incident opened", "failure": "Still failing", "resolved": "Resolved"}[event.type]
    return f"{what}: {event.monitor.name} ({event.environment})"


def slack_message(event: IncidentEvent, link_base: str) -> dict[str, object]:
    icon = ":large_green_circle:" if event.type == "resolved" else ":red_circle:"
    link = checkins_link(event, link_base)
    text = (f"{icon} *{_headline(event)}* — {event.reason}\n"
            f"Monitor `{event.monitor.slug}` in project `{event.project.slug}`, environment "
            f"`{event.environment}`. <{link}|Check-ins>")
    return {"text": f"{_headline(event)}: {event.reason}",
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}


def pagerduty_event(event: IncidentEvent, routing_key: str, link_base: str) -> dict[str, object]:
    dedup = f"cronpipe-incident-{event.incident_id}"
    if event.type == "resolved":
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": dedup}
    return {
        "routing_key": routing_key, "event_action": "trigger", "dedup_key": dedup,
        "payload": {
            "summary": f"{_headline(event)}: {event.reason}"[:1024],
            "source": f"{event.organization.slug}/{event.project.slug}/{event.monitor.slug}",
            "severity": "error",
            "timestamp": event.starting_timestamp.isoformat(),
            "component": event.monitor.slug,
            "group": event.project.slug,
            "class": "cron-job",
            "custom_details": {"environment": event.environment, "reason": event.reason,
                               "event_id": str(event.event_id), "type": event.type},
        },
        "links": [{"href": checkins_link(event, link_base), "text": "Check-ins"}],
    }
