// Monitor page: header and banners, a timeline per environment, the stats charts, the
// check-in table with cursor paging and job output as text, processing errors, incidents.

import { getBytes, getJson, monitorPath } from "./api.js";
import { el, replaceChildren } from "./dom.js";
import { STATUS_LABELS, formatDuration, formatTime, minutes, relative, scheduleWords } from "./format.js";
import { durationChart, statusBars } from "./charts.js";
import { rowStatus } from "./overview.js";
import { attachTooltips, timeline, timelineAxis } from "./timeline.js";

const STATS_DAYS = 30;
const CHECKINS_PER_PAGE = 20;

function badge(status) {
  return el("span", { class: `badge b-${status}` }, STATUS_LABELS[status] || status);
}

function banners(monitor) {
  const out = [];
  if (monitor.status === "disabled") {
    out.push(el("div", { class: "banner banner-disabled" }, "This monitor is disabled: check-ins are rejected."));
  }
  for (const env of monitor.environments) {
    if (env.isMuted) out.push(el("div", { class: "banner banner-muted" }, `Muted in ${env.name}.`));
    if (env.activeIncident) {
      out.push(el("div", { class: "banner banner-incident", dataset: { environment: env.name } },
        `Open incident in ${env.name} since ${formatTime(env.activeIncident.startingTimestamp)}.`));
    }
  }
  return out;
}

function header(monitor) {
  const config = monitor.config || {};
  const status = monitor.status === "disabled" ? "disabled"
    : monitor.environments.some((e) => e.status === "error" && !e.isMuted) ? "error"
      : monitor.environments.some((e) => e.status === "ok") ? "ok" : "active";
  return el("div", { class: "monitor-header" },
    el("h1", null, monitor.name, " ", badge(status)),
    el("div", { class: "mon-meta" }, `${monitor.project.slug} / ${monitor.slug}`, " · ", scheduleWords(config),
       " · ", config.timezone || "UTC", " · margin ", minutes(config.checkin_margin),
       " · max runtime ", minutes(config.max_runtime)));
}

function environmentTimelines(monitor, data) {
  const found = data.monitors.find((m) => m.id === monitor.id);
  const config = monitor.config || {};
  const rows = (found ? found.environments : []).map((env) => el("tr", { class: "env", dataset: { environment: env.name } },
    el("td", { class: "env-name" }, env.name),
    el("td", null, badge(rowStatus(monitor, env))),
    el("td", null, `last ${relative(env.lastCheckIn)}`, el("br"), `next ${relative(env.nextCheckIn)}`),
    el("td", { class: "env-limits" }, `margin ${minutes(config.checkin_margin)}`, el("br"),
       `max runtime ${minutes(config.max_runtime)}`),
    el("td", { class: "timeline-cell" }, timeline(env.timeline, data, "timeline-large"))));
  const table = el("table", { class: "grid env-table" },
      el("thead", null, el("tr", null, el("th", null, "Environment"), el("th", null, "Status"), el("th", null, "Check-ins"),
        el("th", null, "Limits"), el("th", { class: "timeline-head" }, timelineAxis(data)))),
      el("tbody", null, ...rows));
  attachTooltips(table);
  return el("section", { class: "panel" }, el("h2", null, "Last 24 hours"), table);
}

function outputViewer(auth, monitor, checkin) {
  const box = el("div", { class: "output", hidden: true });
  const button = el("button", { type: "button", class: "link-button" }, "Show output");
  button.addEventListener("click", async () => {
    if (!box.hidden) { box.hidden = true; button.textContent = "Show output"; return; }
    try {
      const bytes = await getBytes(auth, monitorPath(monitor.id, `checkins/${encodeURIComponent(checkin.id)}/attachment/`));
      // Shown as text, never parsed: textContent of a <pre>. Saved as opaque bytes.
      const text = new TextDecoder("utf-8", { fatal: false }).decode(bytes);
      const download = el("a", { class: "download", download: `checkin-${checkin.id}.txt`,
                                 href: URL.createObjectURL(new Blob([bytes], { type: "application/octet-stream" })) },
        `Download (${bytes.length} bytes)`);
      replaceChildren(box, el("pre", { class: "job-output" }, text), download);
    } catch (error) {
      replaceChildren(box, el("p", { class: "error-text" }, `Output could not be loaded: ${error.detail || error.message}`));
    }
    box.hidden = false;
    button.textContent = "Hide output";
  });
  return [button, box];
}

/** When the run ended: start + duration when known; a timeout when the clock gave up; else the instant. */
function finishedAt(checkin) {
  if (checkin.status === "in_progress") return null;
  if (checkin.duration !== null && checkin.duration !== undefined) {
    return new Date(new Date(checkin.dateAdded).getTime() + checkin.duration);
  }
  return checkin.status === "timeout" ? checkin.dateUpdated : checkin.dateAdded;
}

function checkinRow(auth, monitor, checkin) {
  const finished = finishedAt(checkin);
  const [button, box] = checkin.hasAttachment ? outputViewer(auth, monitor, checkin) : [null, null];
  const row = el("tr", { class: "checkin", dataset: { id: checkin.id, status: checkin.status } },
    el("td", null, badge(checkin.status)),
    el("td", null, formatTime(checkin.dateAdded)),
    el("td", null, formatTime(finished)),
    el("td", null, formatDuration(checkin.duration)),
    el("td", null, formatTime(checkin.expectedTime)),
    el("td", null, checkin.environment),
    el("td", { class: "mono" }, checkin.id.slice(0, 8)),
    el("td", null, button));
  const rows = [row];
  if (box) rows.push(el("tr", { class: "output-row" }, el("td", { colspan: 8 }, box)));
  return rows;
}

async function checkinTable(auth, monitor, section, cursor) {
  const { body, link } = await getJson(auth, monitorPath(monitor.id, "checkins/"),
                                       { per_page: CHECKINS_PER_PAGE, cursor });
  const pager = el("div", { class: "pager" });
  if (link.previous) {
    pager.append(el("button", { type: "button", id: "checkins-newer",
                                onclick: () => checkinTable(auth, monitor, section, link.previous) }, "← Newer"));
  }
  if (link.next) {
    pager.append(el("button", { type: "button", id: "checkins-older",
                                onclick: () => checkinTable(auth, monitor, section, link.next) }, "Older →"));
  }
  const heads = ["Status", "Started", "Finished", "Duration", "Expected", "Environment", "Id", "Output"];
  replaceChildren(section, el("h2", null, "Check-ins"),
    el("table", { class: "grid checkins" }, el("thead", null, el("tr", null, ...heads.map((h) => el("th", null, h)))),
      el("tbody", null, ...body.flatMap((c) => checkinRow(auth, monitor, c)))),
    body.length ? null : el("p", { class: "muted-text" }, "No check-ins yet."), pager);
}

function statsPanel(buckets, since, until) {
  return el("section", { class: "panel stats", dataset: { since: String(since), until: String(until) } },
    el("h2", null, `Last ${STATS_DAYS} days`), el("div", { class: "charts" }, statusBars(buckets), durationChart(buckets)));
}

function errorsPanel(errors) {
  const items = errors.map((e) => el("li", { class: "processing-error" }, formatTime(e.dateAdded), " — ",
    e.errors.map((d) => `${d.name}: ${d.reason}`).join("; ")));
  return el("section", { class: "panel" }, el("h2", null, "Processing errors"),
    items.length ? el("ul", { class: "errors" }, ...items) : el("p", { class: "muted-text" }, "None."));
}

function incidentsPanel(monitor) {
  // No incidents route exists yet: the open incident of each environment comes with the monitor.
  const open = monitor.environments.filter((e) => e.activeIncident);
  return el("section", { class: "panel" }, el("h2", null, "Incidents"),
    open.length ? el("ul", null, ...open.map((e) => el("li", { class: "incident" },
      `${e.name}: open since ${formatTime(e.activeIncident.startingTimestamp)}`)))
      : el("p", { class: "muted-text" }, "No open incident."),
    el("p", { class: "muted-text" }, "Resolved incidents are not served by the API yet."));
}

export async function showMonitor(auth, root, monitorId) {
  replaceChildren(root, el("p", { class: "muted-text" }, "Loading…"));
  const until = Math.floor(Date.now() / 1000);
  const statsSince = (Math.floor(until / 86400) - (STATS_DAYS - 1)) * 86400;
  const [details, timelineData, stats, errors] = await Promise.all([
    getJson(auth, monitorPath(monitorId, "")),
    getJson(auth, "monitors-timeline/", { monitor: monitorId, since: until - 86400 + 3600, until, resolution: 3600 }),
    getJson(auth, monitorPath(monitorId, "stats/"), { since: statsSince, until, resolution: 86400 }),
    getJson(auth, monitorPath(monitorId, "processing-errors/"), { per_page: 20 }),
  ]);
  const monitor = details.body;
  const checkins = el("section", { class: "panel", id: "checkins" });
  replaceChildren(root, el("a", { href: "#/", class: "back" }, "← All monitors"), header(monitor), ...banners(monitor),
    environmentTimelines(monitor, timelineData.body), statsPanel(stats.body, statsSince, until), checkins,
    incidentsPanel(monitor), errorsPanel(errors.body));
  await checkinTable(auth, monitor, checkins, null);
  document.documentElement.dataset.monitorLoaded = monitor.id;
}
