// Overview: every monitor of the organization, one row per environment with its tick
// timeline, filtered and sorted in the browser, refreshed in place.

import { getJson } from "./api.js";
import { el, replaceChildren } from "./dom.js";
import { STATUS_LABELS, formatTime, relative, scheduleWords } from "./format.js";
import { attachTooltips, timeline, timelineAxis } from "./timeline.js";

export const PERIODS = { "24h": [86400, 3600], "7d": [7 * 86400, 6 * 3600], "30d": [30 * 86400, 86400] };
const REFRESH_MS = 30000;
/** Height of one environment row (style.css) for the placeholders of rows not drawn yet. */
const ROW_PX = 33;
/** Sort order by status: failing first, disabled and muted last. */
const RANK = { error: 0, active: 1, ok: 2, muted: 3, disabled: 4 };

const state = { data: null, period: "24h", project: "", environment: "", status: "", sort: "status",
                timer: null, generation: 0, observer: null, tooltips: false };

/** The status an environment row shows: the monitor's disabled state and muting win. */
export function rowStatus(monitor, environment) {
  if (monitor.status === "disabled") return "disabled";
  if (!environment) return "active";
  return environment.isMuted ? "muted" : environment.status;
}

function monitorRank(monitor, environments) {
  if (!environments.length) return RANK[rowStatus(monitor, null)] ?? 1;
  return Math.min(...environments.map((e) => RANK[rowStatus(monitor, e)] ?? 1));
}

/** Every page of the timeline route (1,000 monitors a page): one request for most organizations. */
async function fetchTimeline(auth, period) {
  const [range, resolution] = PERIODS[period];
  const until = Math.floor(Date.now() / 1000);
  const params = { since: until - range + resolution, until, resolution, per_page: 1000 };
  let cursor = null;
  let merged = null;
  let requests = 0;
  do {
    const { body, link } = await getJson(auth, "monitors-timeline/", { ...params, cursor });
    requests += 1;
    if (merged) merged.monitors.push(...body.monitors);
    else merged = body;
    cursor = link.next;
  } while (cursor);
  merged.requests = requests;
  return merged;
}

function visibleRows(data) {
  const rows = [];
  for (const monitor of data.monitors) {
    if (state.project && monitor.project.slug !== state.project) continue;
    let environments = monitor.environments;
    if (state.environment) environments = environments.filter((e) => e.name === state.environment);
    if (state.environment && !environments.length) continue;
    if (state.status) {
      environments = environments.filter((e) => rowStatus(monitor, e) === state.status);
      if (!environments.length && !(monitor.environments.length === 0 && rowStatus(monitor, null) === state.status)) {
        continue;
      }
    }
    rows.push({ monitor, environments, rank: monitorRank(monitor, environments) });
  }
  const byName = (a, b) => a.monitor.name.localeCompare(b.monitor.name) || a.monitor.id.localeCompare(b.monitor.id);
  rows.sort(state.sort === "name" ? byName : (a, b) => a.rank - b.rank || byName(a, b));
  return rows;
}

function badge(status) {
  return el("span", { class: `badge b-${status}` }, STATUS_LABELS[status] || status);
}

function monitorCell(monitor, span) {
  const config = monitor.config || {};
  return el("th", { scope: "rowgroup", rowspan: span, class: "mon-head" },
    el("a", { href: `#/monitor/${encodeURIComponent(monitor.id)}`, class: "mon-name" }, monitor.name),
    el("div", { class: "mon-meta" }, monitor.project.slug, " · ", scheduleWords(config),
       " · ", config.timezone || "UTC"));
}

function monitorBody(row, plan) {
  const { monitor, environments } = row;
  const body = el("tbody", { class: "mon", dataset: { monitor: monitor.slug, rank: String(row.rank) } });
  if (!environments.length) {
    body.append(el("tr", null, monitorCell(monitor, 1), el("td", { class: "muted-text" }, "no environment yet"),
                   el("td", null, badge(rowStatus(monitor, null))), el("td"), el("td"), el("td")));
    return body;
  }
  environments.forEach((environment, i) => {
    const status = rowStatus(monitor, environment);
    body.append(el("tr", { class: "env", dataset: { environment: environment.name, status } },
      i === 0 ? monitorCell(monitor, environments.length) : null,
      el("td", { class: "env-name" }, environment.name),
      el("td", null, badge(status)),
      el("td", { title: formatTime(environment.lastCheckIn) }, relative(environment.lastCheckIn)),
      el("td", { title: formatTime(environment.nextCheckIn) }, relative(environment.nextCheckIn)),
      el("td", { class: "timeline-cell" }, timeline(environment.timeline, plan))));
  });
  return body;
}

function fillSelect(select, values, current, allLabel) {
  replaceChildren(select, el("option", { value: "" }, allLabel),
    ...values.map((v) => el("option", { value: v, selected: v === current }, v)));
}

/** A row not drawn yet: an empty group of the right height, drawn when it nears the viewport. */
function placeholder(row, pending) {
  const cell = el("td", { colspan: 6 });
  cell.style.height = `${Math.max(row.environments.length, 1) * ROW_PX}px`;  // CSSOM: allowed by the CSP
  const body = el("tbody", { class: "mon pending", dataset: { monitor: row.monitor.slug, rank: String(row.rank) } },
    el("tr", null, cell));
  pending.set(body, row);
  return body;
}

/**
 * Draw the rows for the current filters. The first screens are drawn at once; the others
 * are placeholders drawn as they scroll near (IntersectionObserver), so 1,000 monitors
 * cost about what 50 do until someone scrolls.
 */
function render(root) {
  const data = state.data;
  const started = performance.now();
  const rows = visibleRows(data);
  const table = root.querySelector("#overview-table");
  const head = table.querySelector("thead .timeline-head");
  replaceChildren(head, timelineAxis(data));
  table.dataset.since = String(data.since);
  table.dataset.resolution = String(data.resolution);
  if (!state.tooltips) { attachTooltips(table); state.tooltips = true; }
  if (state.observer) state.observer.disconnect();
  const pending = new Map();
  state.observer = new IntersectionObserver((entries) => {
    for (const entry of entries) {
      const row = entry.isIntersecting ? pending.get(entry.target) : null;
      if (!row) continue;
      state.observer.unobserve(entry.target);
      pending.delete(entry.target);
      entry.target.replaceWith(monitorBody(row, data));
    }
  }, { rootMargin: "800px 0px" });
  for (const old of table.querySelectorAll("tbody")) old.remove();
  const fragment = document.createDocumentFragment();
  let eager = 2 * window.innerHeight;
  for (const row of rows) {
    if (eager > 0) {
      fragment.append(monitorBody(row, data));
      eager -= Math.max(row.environments.length, 1) * ROW_PX;
    } else {
      fragment.append(placeholder(row, pending));
    }
  }
  table.append(fragment);
  for (const body of pending.keys()) state.observer.observe(body);
  root.querySelector("#overview-count").textContent =
    `${rows.length} of ${data.monitors.length} monitors · updated ${formatTime(Date.now())}`;
  root.querySelector("#overview-empty").hidden = rows.length > 0;
  document.documentElement.dataset.overviewBuildMs = (performance.now() - started).toFixed(1);
  return started;
}

function populateFilters(root) {
  const projects = [...new Set(state.data.monitors.map((m) => m.project.slug))].sort();
  const environments = [...new Set(state.data.monitors.flatMap((m) => m.environments.map((e) => e.name)))].sort();
  fillSelect(root.querySelector("#filter-project"), projects, state.project, "All projects");
  fillSelect(root.querySelector("#filter-environment"), environments, state.environment, "All environments");
}

/** Fetch and draw; records how long the drawing took once the data had arrived. */
async function load(auth, root, onError) {
  const generation = ++state.generation;
  const fetchStarted = performance.now();
  let data;
  try {
    data = await fetchTimeline(auth, state.period);
  } catch (error) {
    onError(error);
    return;
  }
  if (generation !== state.generation) return;
  const arrived = performance.now();
  state.data = data;
  populateFilters(root);
  render(root);
  // Measured to the frame after layout and paint: what a person waits for.
  requestAnimationFrame(() => setTimeout(() => {
    const marks = document.documentElement.dataset;
    marks.overviewFetchMs = (arrived - fetchStarted).toFixed(1);
    marks.overviewRenderMs = (performance.now() - arrived).toFixed(1);
    marks.overviewMonitors = String(data.monitors.length);
    marks.overviewRequests = String(data.requests);
    marks.overviewLoads = String(Number(marks.overviewLoads || 0) + 1);
  }, 0));
}

export function stopOverview() {
  clearInterval(state.timer);
  if (state.observer) state.observer.disconnect();
  state.timer = null;
  state.generation += 1;
}

export function startOverview(auth, root, onError) {
  stopOverview();
  const controls = {
    "#filter-project": "project", "#filter-environment": "environment", "#filter-status": "status",
    "#sort": "sort",
  };
  for (const [selector, key] of Object.entries(controls)) {
    const select = root.querySelector(selector);
    select.value = state[key];
    select.onchange = () => { state[key] = select.value; if (state.data) render(root); };
  }
  const period = root.querySelector("#period");
  period.value = state.period;
  period.onchange = () => { state.period = period.value; load(auth, root, onError); };
  const live = root.querySelector("#live");
  const schedule = () => {
    clearInterval(state.timer);
    state.timer = live.checked ? setInterval(() => load(auth, root, onError), REFRESH_MS) : null;
  };
  live.onchange = schedule;
  root.querySelector("#refresh").onclick = () => load(auth, root, onError);
  schedule();
  return load(auth, root, onError);
}
