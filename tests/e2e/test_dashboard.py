"""The dashboard in Debian's Chromium (driven by Playwright) against real `cronpipe api` and
`cronpipe worker` processes, with check-ins written by the real processor through Kafka.

One browser and one stack for the module; each test gets a fresh browser context (its own
session storage). Screenshots and the overview's render time go to test-artifacts/dashboard/.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from schemas.settings import BY_NAME
from tests.e2e.dashboard_stack import (
    BULK_ENVIRONMENTS,
    BULK_MONITORS,
    HOSTILE_ENVIRONMENT,
    HOSTILE_NAME,
    HOSTILE_OUTPUT,
    HOUR,
    DashboardStack,
    clock_rows,
    mute_and_disable,
    seed_bulk,
)

playwright_sync = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")
CHROMIUM = str(BY_NAME["CHROMIUM"].read())
if not shutil.which(CHROMIUM):
    pytest.skip(f"no browser at {CHROMIUM}: scripts/bootstrap.sh installs Debian's chromium when run as root",
                allow_module_level=True)

pytestmark = [pytest.mark.postgres, pytest.mark.kafka]

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"
#: Worst status first, as format.js TICK_PRECEDENCE draws a tick.
PRECEDENCE = ("error", "timeout", "missed", "ok", "in_progress", "unknown")
COLOURS = {"ok": "rgb(43, 166, 114)", "error": "rgb(229, 72, 77)", "missed": "rgb(245, 165, 36)",
           "timeout": "rgb(180, 83, 9)", "in_progress": "rgb(59, 130, 246)"}


@pytest.fixture(scope="module")
def stack(infra: Any, module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DashboardStack]:
    running = DashboardStack(infra.kafka_bootstrap, module_database_url, tmp_path_factory.mktemp("dashboard"))
    try:
        produce_world(running)
        running.wait_processed()
        yield running
    finally:
        codes = running.stop()
    assert codes == [0, 0], "\n".join(s.tail() for s in running.services)


def produce_world(stack: DashboardStack) -> None:
    """Hour 0 is 23 hours ago, hour 23 the current one (the overview's 24 buckets)."""
    first = (int(time.time()) // HOUR - 23) * HOUR

    def hour(h: int, minute: int = 5) -> int:
        return first + h * HOUR + minute * 60

    for h in range(23):
        guid = stack.check_in("etl", "production", "error" if h == 5 else "ok", hour(h), duration=1.5 + h % 4)
    # A second final status for a finished check-in: rejected with a processing error.
    stack.check_in("etl", "production", "error", hour(22, 40), check_in_id=guid, stored=False)
    stack.check_in("etl", "production", "error", hour(12, 30), duration=40.0)  # ok then error: an error tick
    stack.check_in("etl", "production", "in_progress", hour(23, 0))  # still running
    for h in range(0, 23, 3):
        stack.check_in("etl", "staging", "ok", hour(h), duration=0.4)
    for h in (20, 21, 22):
        stack.check_in("billing-sync", "production", "error", hour(h), project_id=2, duration=3.0)
    guid = stack.check_in("xss-probe", HOSTILE_ENVIRONMENT, "error", hour(22), duration=2.0)
    stack.attachment("xss-probe", guid, HOSTILE_OUTPUT, hour(22))
    stack.produced.attachment_checkin = guid
    clock_rows(stack.database_url, "legacy-report", "production", [(hour(3), "missed"), (hour(4), "timeout")])
    stack.produced.add("legacy-report", "production", hour(3), "missed")
    stack.produced.add("legacy-report", "production", hour(4), "timeout")
    mute_and_disable(stack.database_url, "legacy-report", "retired-job")
    seed_bulk(stack.database_url, int(time.time()))


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_sync.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield launched
        launched.close()


class Tab:
    """One browser context and page; records dialogs, page errors and CSP violations.

    Waits pass functions, not expression strings: the dashboard's policy (no 'unsafe-eval')
    applies to Playwright's polling too, and stays on in these tests."""

    def __init__(self, browser: Any, base: str) -> None:
        self.context = browser.new_context(viewport={"width": 1440, "height": 900})
        self.page = self.context.new_page()
        self.base = base
        self.dialogs: list[str] = []
        self.problems: list[str] = []
        self.page.on("dialog", self._record_dialog)
        self.page.on("pageerror", lambda e: self.problems.append(str(e)))
        self.page.on("console", lambda m: self.problems.append(m.text) if m.type == "error" else None)

    def _record_dialog(self, dialog: Any) -> None:
        # A dialog means page data ran as script: record it, then close it so the page goes on.
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def sign_in(self, organization: str, token: str) -> None:
        self.page.goto(f"{self.base}/ui/")
        self.page.fill("#signin-org", organization)
        self.page.fill("#signin-token", token)
        self.page.click("#signin-submit")

    def wait_overview(self, loads: int = 1) -> None:
        self.page.wait_for_function("n => Number(document.documentElement.dataset.overviewLoads || 0) >= n", arg=loads)

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def tab(browser: Any, stack: DashboardStack) -> Iterator[Tab]:
    opened = Tab(browser, stack.api_url)
    yield opened
    opened.close()


def expected_ticks(stack: DashboardStack, slug: str, environment: str, since: int) -> dict[str, list[int]]:
    ticks: dict[str, list[int]] = {}
    for bucket, statuses in stack.produced.statuses[(slug, environment)].items():
        worst = next(s for s in PRECEDENCE if s in statuses)
        ticks.setdefault(worst, []).append((bucket - since) // HOUR)
    return {status: sorted(i for i in indexes if 0 <= i < 24) for status, indexes in ticks.items()}


def shown_ticks(tab: Tab, slug: str, environment: str) -> dict[str, tuple[list[int], str]]:
    row = tab.page.locator(f'tbody[data-monitor="{slug}"] tr.env').filter(
        has=tab.page.locator("td.env-name", has_text=environment))
    out = {}
    for path in row.locator("path.tick").all():
        colour = path.evaluate("p => getComputedStyle(p).fill")
        out[path.get_attribute("data-status")] = ([int(i) for i in path.get_attribute("data-buckets").split()], colour)
    return out


def test_a_wrong_token_shows_a_clear_message_and_nothing_else(tab: Tab) -> None:
    tab.sign_in("acme", "cpt_not-a-real-token")
    notice = tab.page.locator("#signin-error")
    notice.wait_for(state="visible")
    assert "This token was not accepted (Invalid token)" in notice.inner_text()
    assert tab.page.locator("#overview").is_hidden()
    assert tab.page.evaluate("sessionStorage.length") == 0
    assert "cpt_" not in tab.page.url


def test_the_overview_shows_every_monitor_with_each_bucket_in_its_status_colour(
        tab: Tab, stack: DashboardStack) -> None:
    tab.sign_in("acme", stack.token)
    tab.wait_overview()
    page = tab.page
    slugs = page.eval_on_selector_all("#overview-table tbody.mon", "bodies => bodies.map(b => b.dataset.monitor)")
    assert sorted(slugs) == ["billing-sync", "etl", "legacy-report", "retired-job", "xss-probe"]
    since = int(page.get_attribute("#overview-table", "data-since") or 0)
    for slug, environment in stack.produced.statuses:
        shown = shown_ticks(tab, slug, environment)
        expected = expected_ticks(stack, slug, environment, since)
        assert {status: indexes for status, (indexes, _) in shown.items()} == expected, (slug, environment)
        assert all(colour == COLOURS[status] for status, (_, colour) in shown.items())
    etl = page.locator('tbody[data-monitor="etl"]')
    assert "Every hour at minute 0 · UTC" in etl.locator(".mon-meta").inner_text()
    assert "Every day at 02:30 · Europe/Vienna" in page.locator('tbody[data-monitor="legacy-report"] .mon-meta').inner_text()
    # The token is in this tab's session storage only: not in the URL, not in local storage.
    assert page.evaluate("sessionStorage.getItem('cronpipe.token')") == stack.token
    assert page.evaluate("localStorage.length") == 0 and stack.token not in page.url
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "overview.png"), full_page=True)
    assert tab.problems == []


def test_filters_and_sorting_change_the_rows_in_place(tab: Tab, stack: DashboardStack) -> None:
    tab.sign_in("acme", stack.token)
    tab.wait_overview()
    page = tab.page

    def order() -> list[str]:
        monitors: list[str] = page.eval_on_selector_all(
            "#overview-table tbody.mon", "bodies => bodies.map(b => b.dataset.monitor)"
        )
        return monitors

    # Which environments have an open incident is the processor's decision; the API says which.
    monitors = httpx.get(f"{stack.api_url}/api/0/organizations/acme/monitors/",
                         headers={"Authorization": f"Bearer {stack.token}"}).json()
    failing = sorted(m["slug"] for m in monitors if any(e["status"] == "error" for e in m["environments"]))
    assert "billing-sync" in failing and "legacy-report" not in failing
    # Failing first, then by name; muted and disabled last.
    assert order() == failing + sorted(set(order()) - set(failing) - {"legacy-report", "retired-job"}) \
        + ["legacy-report", "retired-job"]
    page.select_option("#sort", "name")
    assert order() == ["billing-sync", "etl", "legacy-report", "retired-job", "xss-probe"]
    page.select_option("#filter-project", "ops")
    assert order() == ["billing-sync", "retired-job"]
    page.select_option("#filter-project", "")
    page.select_option("#filter-environment", "staging")
    assert order() == ["etl"]
    assert page.eval_on_selector_all('tbody[data-monitor="etl"] tr.env', "rows => rows.map(r => r.dataset.environment)") \
        == ["staging"]
    page.select_option("#filter-environment", "")
    page.select_option("#filter-status", "error")
    assert order() == failing
    page.select_option("#filter-status", "muted")
    assert order() == ["legacy-report"]
    page.select_option("#filter-status", "disabled")
    assert order() == ["retired-job"]
    assert "Every 5 minutes" in page.locator('tbody[data-monitor="retired-job"] .mon-meta').inner_text()
    assert page.locator('tbody[data-monitor="retired-job"] a.mon-name').inner_text() == HOSTILE_NAME
    page.select_option("#filter-status", "")
    page.click("#refresh")  # live refresh redraws without a reload
    tab.wait_overview(2)
    page.select_option("#period", "7d")
    tab.wait_overview(3)
    assert page.get_attribute("#overview-table", "data-resolution") == str(6 * HOUR)
    assert page.get_attribute('tbody[data-monitor="etl"] svg.timeline', "viewBox") == "0 0 280 20"  # 28 ticks
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1
    page.select_option("#period", "24h")
    tab.wait_overview(4)
    assert len(order()) == 5
    page.click('tbody[data-monitor="retired-job"] a.mon-name')
    page.locator(".banner-disabled").wait_for()
    assert "This monitor is disabled" in page.locator(".banner-disabled").inner_text()
    assert page.locator(".monitor-header h1").inner_text().startswith(HOSTILE_NAME)
    assert page.locator("img").count() == 0 and tab.dialogs == []
    page.go_back()
    page.locator('tbody[data-monitor="legacy-report"] a.mon-name').click()
    assert page.locator(".banner-muted").inner_text() == "Muted in production."


def test_the_monitor_page_shows_what_the_stats_endpoint_returns(tab: Tab, stack: DashboardStack) -> None:
    tab.sign_in("acme", stack.token)
    tab.wait_overview()
    page = tab.page
    page.click('tbody[data-monitor="etl"] a.mon-name')
    page.wait_for_function("() => document.documentElement.dataset.monitorLoaded")
    stats = page.locator("section.stats")
    params = {"since": stats.get_attribute("data-since"), "until": stats.get_attribute("data-until"),
              "resolution": 86400}
    expected = httpx.get(f"{stack.api_url}/api/0/organizations/acme/monitors/etl/stats/", params=params,
                         headers={"Authorization": f"Bearer {stack.token}"}).json()
    bars = page.eval_on_selector_all("svg.bars g.bar", "gs => gs.map(g => ({...g.dataset}))")
    assert [{k: int(v) for k, v in b.items() if k != "total"} for b in bars] == \
        [{k: b[k] for k in ("ts", "ok", "error", "missed", "timeout", "unknown")} for b in expected]
    # production: 23 hourly + 1 extra error, staging: 8; the one still in progress is not counted.
    assert sum(int(b["total"]) for b in bars) == 32
    points = page.eval_on_selector_all("svg.durations g.point", "gs => gs.map(g => [+g.dataset.ts, +g.dataset.duration])")
    assert points == [[b["ts"], b["duration"]] for b in expected if b["duration"]]
    rows = page.locator("table.checkins tbody tr.checkin")
    assert rows.count() == 20 and rows.first.get_attribute("data-status") == "in_progress"
    page.click("#checkins-older")
    page.wait_for_function("() => document.querySelectorAll('table.checkins tbody tr.checkin').length === 13")
    assert "margin 5 min" in page.locator(".env-table").inner_text()
    page.click("#checkins-newer")
    page.wait_for_function("() => document.querySelectorAll('table.checkins tbody tr.checkin').length === 20")
    assert "checkin_finished" in page.locator("li.processing-error").inner_text()
    page.screenshot(path=str(ARTIFACTS / "monitor.png"), full_page=True)
    assert tab.problems == []


def test_job_output_and_environment_names_with_markup_are_text_and_run_nothing(
        tab: Tab, stack: DashboardStack) -> None:
    tab.sign_in("acme", stack.token)
    tab.wait_overview()
    page = tab.page
    assert page.locator('tbody[data-monitor="xss-probe"] td.env-name').inner_text() == HOSTILE_ENVIRONMENT
    page.click('tbody[data-monitor="xss-probe"] a.mon-name')
    page.wait_for_function("() => document.documentElement.dataset.monitorLoaded")
    assert page.locator(".banner-incident").inner_text().startswith(f"Open incident in {HOSTILE_ENVIRONMENT} since")
    page.click("table.checkins button.link-button")
    output = page.locator("pre.job-output")
    output.wait_for()
    assert output.inner_text() == HOSTILE_OUTPUT.decode()
    assert page.locator("pre.job-output script, pre.job-output img, td img").count() == 0
    page.wait_for_timeout(300)  # a script or onerror handler would have run by now
    assert page.evaluate("window.__pwned") is None
    assert tab.dialogs == []
    assert page.get_attribute("a.download", "download") == f"checkin-{uuid.UUID(stack.produced.attachment_checkin)}.txt"



def _decisions(database_url: str, rows: Sequence[tuple[int, str, float | None]]) -> None:
    """Replace the volume guard's decisions (tick epoch, decision, pct deviation), as the clock writes them."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM clock_volume_decisions")
        for tick, decision, pct in rows:
            conn.execute("INSERT INTO clock_volume_decisions (tick, metric, pct_deviation, decision)"
                         " VALUES (to_timestamp(%s), %s, %s, %s)",
                         (tick, "normal" if decision in ("normal", "recovering") else decision, pct, decision))


def _banner_minute(epoch: int) -> str:
    """The minute as the banner shows it: UTC, with the date when it is not today's."""
    day, now_day = time.strftime("%Y-%m-%d", time.gmtime(epoch)), time.strftime("%Y-%m-%d", time.gmtime())
    return time.strftime("%H:%M UTC", time.gmtime(epoch)) if day == now_day else time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(epoch))


def test_a_system_incident_draws_the_banner_on_every_page_until_the_volume_is_normal(
        tab: Tab, stack: DashboardStack) -> None:
    tab.sign_in("acme", stack.token)
    tab.wait_overview()
    page = tab.page
    banner = page.locator("#system-banner")
    assert banner.is_hidden()  # no decision yet: a fresh install has no banner
    t0 = (int(time.time()) // 60 - 20) * 60  # ticks are whole minutes
    normal = [(t0 + 60 * i, "normal", 0.0) for i in range(4)]
    incident = [(t0 + 240, "incident", -52.4), (t0 + 300, "incident", -61.0), (t0 + 360, "incident", -48.0)]

    def shown() -> str:
        page.reload()
        page.wait_for_function("() => document.querySelector('#system-banner').dataset.decision")
        return banner.inner_text() if banner.is_visible() else ""

    try:
        _decisions(stack.database_url, normal + incident)
        # The incident's first tick (t0+4 min) decides on the minute before it: the drop is at t0+3 min.
        assert shown() == (f"Check-in volume dropped 61 % at {_banner_minute(t0 + 180)} (system incident); "
                           "missed check-ins are marked unknown and not alerted.")
        assert page.get_attribute("#system-banner", "role") == "alert"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "system-incident.png"))
        page.click('tbody[data-monitor="etl"] a.mon-name')  # on a monitor's page too
        page.wait_for_function("() => document.documentElement.dataset.monitorLoaded")
        assert banner.is_visible() and "dropped 61 %" in banner.inner_text()
        _decisions(stack.database_url, normal + incident + [(t0 + 420, "recovering", -3.0)])
        assert shown() == (f"Check-in volume dropped 61 % at {_banner_minute(t0 + 180)} and is recovering; "
                           "missed check-ins are held until it stays normal.")
        _decisions(stack.database_url, [*normal, (t0 + 240, "abnormal", -15.2)])
        assert shown() == (f"Check-in volume is 15 % below normal ({_banner_minute(t0 + 240)}); "
                           "missed check-ins are held until it settles.")
        _decisions(stack.database_url, normal + incident + [(t0 + 420 + 60 * i, "normal", 0.0) for i in range(5)])
        assert shown() == ""
    finally:
        _decisions(stack.database_url, [])
    assert tab.problems == [] and tab.dialogs == []


SCHEDULES = [
    ({"schedule": "0 * * * *"}, "Every hour at minute 0"),
    ({"schedule": "*/15 * * * *"}, "Every 15 minutes"),
    ({"schedule": "30 2 * * *"}, "Every day at 02:30"),
    ({"schedule": "0 9 * * 1-5"}, "Every weekday at 09:00"),
    ({"schedule": "0 6 * * 0"}, "Every Sunday at 06:00"),
    ({"schedule": "15 4 1 * *"}, "Monthly on day 1 at 04:15"),
    ({"schedule": "0 0 29 2 *"}, "Cron 0 0 29 2 *"),
    ({"schedule": [10, "minute"]}, "Every 10 minutes"),
    ({"schedule": [1, "day"]}, "Every day"),
]


def test_schedules_read_in_words_and_a_tick_shows_its_worst_status(tab: Tab) -> None:
    tab.page.goto(f"{tab.base}/ui/")
    words, ticks = tab.page.evaluate("""async (configs) => {
        const f = await import("/ui/format.js");
        return [configs.map((c) => f.scheduleWords(c)),
                [[0, 3, 1, 0, 0, 1, 0], [0, 3, 0, 1, 1, 0, 0], [0, 2, 0, 0, 0, 1, 1], [0, 0, 0, 0, 0, 1, 1],
                 [0, 0, 0, 0, 0, 0, 0]].map(f.tickStatus)];
    }""", [config for config, _ in SCHEDULES])
    assert words == [expected for _, expected in SCHEDULES]
    assert ticks == ["error", "timeout", "ok", "in_progress", None]


def test_the_ui_is_served_with_a_strict_policy_and_linked_from_the_root(stack: DashboardStack) -> None:
    root = httpx.get(f"{stack.api_url}/")
    assert 'href="/ui/"' in root.text
    for path in ("/ui/", "/ui/app.js", "/ui/style.css"):
        response = httpx.get(f"{stack.api_url}{path}")
        assert response.status_code == 200
        assert "script-src 'self'" in response.headers["content-security-policy"]
        assert "unsafe-inline" not in response.headers["content-security-policy"]
        assert response.headers["x-content-type-options"] == "nosniff"
    assert httpx.get(f"{stack.api_url}/ui/../api.py").status_code == 404
    attachment = httpx.get(
        f"{stack.api_url}/api/0/organizations/acme/monitors/xss-probe/checkins/{stack.produced.attachment_checkin}/attachment/",
        headers={"Authorization": f"Bearer {stack.token}"})
    assert attachment.content == HOSTILE_OUTPUT
    assert attachment.headers["content-disposition"].startswith("attachment")
    assert attachment.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in attachment.headers["content-security-policy"]


def test_the_overview_of_a_thousand_monitors_in_three_environments_is_timed(
        tab: Tab, stack: DashboardStack) -> None:
    tab.sign_in("bulk", stack.bulk_token)
    tab.wait_overview()
    page = tab.page
    marks = page.evaluate("({...document.documentElement.dataset})")
    assert (int(marks["overviewMonitors"]), int(marks["overviewRequests"])) == (BULK_MONITORS, 1)
    assert page.locator("#overview-table tbody.mon").count() == BULK_MONITORS
    # The first screens are drawn; the rest are drawn as they scroll near.
    assert 0 < page.locator("#overview-table tbody.mon:not(.pending)").count() < BULK_MONITORS
    page.evaluate("() => document.querySelector('#overview-table tbody.mon:last-of-type').scrollIntoView()")
    page.wait_for_function("n => document.querySelectorAll('#overview-table tbody.mon:last-of-type tr.env').length === n",
                           arg=len(BULK_ENVIRONMENTS))
    result = {"monitors": BULK_MONITORS, "environments": len(BULK_ENVIRONMENTS), "requests": 1,
              "fetch_ms": float(marks["overviewFetchMs"]), "build_ms": float(marks["overviewBuildMs"]),
              "render_ms": float(marks["overviewRenderMs"]),
              "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "load_average": os.getloadavg()[0]}
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "overview-render.json").write_text(json.dumps(result, indent=2))
    print(f"\noverview of {BULK_MONITORS} monitors x {len(BULK_ENVIRONMENTS)} environments: "
          f"fetch {result['fetch_ms']} ms, DOM built {result['build_ms']} ms, rendered (painted) {result['render_ms']} ms"
          " after the data arrived (not asserted)")
