// The system-incident banner: the volume-anomaly guard's state (GET /api/0/system-incidents/,
// docs/clock.md §6). While check-in volume is down, missed check-ins are held (abnormal,
// recovering) or marked unknown (incident) instead of alerting; the banner says so.

import { getSystemIncidents } from "./api.js";
import { show } from "./dom.js";

const REFRESH_MS = 30000;
const state = { timer: null, token: null };

const pad = (n) => String(n).padStart(2, "0");

/** "10:03 UTC" (and the date when it is not today's, UTC like the rest of the page). */
function minuteOf(value, now) {
  const d = new Date(value);
  const hm = `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())} UTC`;
  const today = new Date(now).toISOString().slice(0, 10);
  const day = d.toISOString().slice(0, 10);
  return day === today ? hm : `${day} ${hm}`;
}

function drop(pct) {
  return pct === null || pct === undefined ? "" : ` ${Math.round(-pct)} %`;
}

/**
 * The banner's text for an API answer, or null (normal: no banner). A tick decides on the
 * minute before it, so an incident whose first tick is 10:04 shows the drop "at 10:03".
 */
export function bannerText(body, now = Date.now()) {
  if (!body || body.decision === "normal") return null;
  if (body.decision === "abnormal") {
    return `Check-in volume is${drop(body.pct_deviation)} below normal (${minuteOf(body.tick, now)}); `
      + "missed check-ins are held until it settles.";
  }
  const open = (body.incidents || []).find((i) => i.end === null) || (body.incidents || [])[0];
  const since = open ? minuteOf(new Date(new Date(open.start).getTime() - 60000), now) : minuteOf(body.tick, now);
  const what = `Check-in volume dropped${drop(open ? open.lowest_pct_deviation : body.pct_deviation)} at ${since}`;
  if (body.decision === "recovering") {
    return `${what} and is recovering; missed check-ins are held until it stays normal.`;
  }
  return `${what} (system incident); missed check-ins are marked unknown and not alerted.`;
}

async function refresh(auth, node) {
  let body;
  try {
    body = await getSystemIncidents(auth);
  } catch (_) {
    return; // the banner is advisory: the page's own requests report API problems
  }
  const text = bannerText(body);
  node.textContent = text || "";
  node.dataset.decision = body.decision;
  show(node, Boolean(text));
}

/** Show the banner for this session and keep it current; again for the same token: refresh now. */
export function startSystemBanner(auth, node) {
  if (state.token !== auth.token) stopSystemBanner(node);
  state.token = auth.token;
  refresh(auth, node);
  if (!state.timer) state.timer = setInterval(() => refresh(auth, node), REFRESH_MS);
}

export function stopSystemBanner(node) {
  if (state.timer) clearInterval(state.timer);
  state.timer = null;
  state.token = null;
  node.textContent = "";
  show(node, false);
}
