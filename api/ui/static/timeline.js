// A tick timeline as one SVG with one <path> per status (not one element per tick), so an
// overview of thousands of environments stays a few elements each. A tooltip shows the
// counts of the bucket under the pointer.

import { svg, el, replaceChildren } from "./dom.js";
import { CELL_STATUSES, STATUS_LABELS, cellCounts, formatTime, tickStatus } from "./format.js";

const TICK = 10;  // viewBox units per bucket; the SVG is stretched to its box by CSS
const HEIGHT = 20;
const GAP = 1.5;

let tooltip = null;
/** Each timeline's cells by bucket index, for the tooltip (one listener per page, not per timeline). */
const drawn = new WeakMap();

function tooltipNode() {
  if (!tooltip) {
    tooltip = el("div", { class: "tooltip", role: "tooltip", hidden: true });
    document.body.append(tooltip);
  }
  return tooltip;
}

function describe(cell, plan, index) {
  const start = (plan.since + index * plan.resolution) * 1000;
  const lines = [`${formatTime(start)} – ${formatTime(start + plan.resolution * 1000)}`];
  if (!cell) lines.push("no check-ins");
  else {
    const counts = cellCounts(cell);
    for (const status of CELL_STATUSES) if (counts[status]) lines.push(`${counts[status]} ${STATUS_LABELS[status]}`);
  }
  return lines;
}

function onPointer(event) {
  const target = event.target instanceof Element ? event.target.closest("svg.timeline") : null;
  const found = target ? drawn.get(target) : null;
  const tip = tooltipNode();
  if (!found) { tip.hidden = true; return; }
  const { byIndex, plan } = found;
  const box = target.getBoundingClientRect();
  const index = Math.min(plan.buckets - 1, Math.max(0, Math.floor((event.clientX - box.left) / box.width * plan.buckets)));
  replaceChildren(tip, ...describe(byIndex.get(index), plan, index).map((line) => el("div", null, line)));
  tip.hidden = false;
  // CSSOM, which the Content-Security-Policy allows (style attributes it would not).
  tip.style.left = `${Math.round(event.pageX + 12)}px`;
  tip.style.top = `${Math.round(event.pageY + 12)}px`;
}

/** Show bucket tooltips for every timeline inside `container`, now or later drawn. */
export function attachTooltips(container) {
  container.addEventListener("pointermove", onPointer);
  container.addEventListener("pointerleave", () => { tooltipNode().hidden = true; });
}

/** An SVG timeline of `cells` ([index, ok, error, missed, timeout, in_progress, unknown]). */
export function timeline(cells, plan, extraClass) {
  const paths = new Map();
  const byIndex = new Map();
  for (const cell of cells) {
    const index = cell[0];
    const status = tickStatus(cell);
    if (status === null || index < 0 || index >= plan.buckets) continue;
    byIndex.set(index, cell);
    if (!paths.has(status)) paths.set(status, { d: [], indexes: [] });
    const entry = paths.get(status);
    entry.d.push(`M${index * TICK + GAP} 0h${TICK - 2 * GAP}v${HEIGHT}h${-(TICK - 2 * GAP)}z`);
    entry.indexes.push(index);
  }
  const root = svg("svg", {
    class: `timeline ${extraClass || ""}`, viewBox: `0 0 ${plan.buckets * TICK} ${HEIGHT}`,
    preserveAspectRatio: "none", role: "img",
    "aria-label": `${byIndex.size} of ${plan.buckets} buckets with check-ins`,
  }, svg("rect", { class: "timeline-track", x: 0, y: HEIGHT / 2 - 1, width: plan.buckets * TICK, height: 2 }));
  for (const [status, entry] of paths) {
    root.append(svg("path", { class: `tick s-${status}`, d: entry.d.join(""),
                              dataset: { status, buckets: entry.indexes.join(" ") } }));
  }
  drawn.set(root, { byIndex, plan });
  return root;
}

/** Start and end labels for a column of timelines. */
export function timelineAxis(plan) {
  return el("div", { class: "timeline-axis" },
    el("span", null, formatTime(plan.since * 1000)),
    el("span", null, formatTime(plan.until * 1000)));
}
