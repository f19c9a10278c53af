// The monitor page's charts from the stats endpoint: stacked status bars per bucket and the
// mean duration per bucket. Plain SVG with classes for colour (no style attributes).

import { el, svg } from "./dom.js";
import { formatDuration, formatTime } from "./format.js";

const STACK = ["ok", "error", "missed", "timeout", "unknown"];
const BAR = 20;
const HEIGHT = 100;

function day(ts) {
  return formatTime(ts * 1000).slice(0, 10);
}

function axis(buckets, top) {
  return el("div", { class: "chart-axis" },
    el("span", null, day(buckets[0].ts)), el("span", { class: "chart-max" }, top),
    el("span", null, day(buckets[buckets.length - 1].ts)));
}

/** Stacked bars: one column per stats bucket, one segment per status with a count. */
export function statusBars(buckets) {
  const max = Math.max(1, ...buckets.map((b) => STACK.reduce((sum, s) => sum + b[s], 0)));
  const root = svg("svg", { class: "chart bars", viewBox: `0 0 ${buckets.length * BAR} ${HEIGHT}`,
                            preserveAspectRatio: "none", role: "img", "aria-label": "Check-ins per day by status" });
  buckets.forEach((bucket, i) => {
    const total = STACK.reduce((sum, s) => sum + bucket[s], 0);
    const group = svg("g", { class: "bar", dataset: { ts: String(bucket.ts), total: String(total),
      ...Object.fromEntries(STACK.map((s) => [s, String(bucket[s])])) } },
      svg("title", null, `${day(bucket.ts)}: ${STACK.map((s) => `${bucket[s]} ${s}`).join(", ")}`));
    let y = HEIGHT;
    for (const status of STACK) {
      if (!bucket[status]) continue;
      const height = (bucket[status] / max) * (HEIGHT - 4);
      y -= height;
      group.append(svg("rect", { class: `s-${status}`, x: i * BAR + 2, y, width: BAR - 4, height }));
    }
    root.append(group);
  });
  return el("figure", { class: "chart-box" }, el("figcaption", null, "Check-ins per day"), root,
            axis(buckets, `max ${max}`));
}

/** Mean duration per bucket as a line with a dot per bucket that had finished check-ins. */
export function durationChart(buckets) {
  const max = Math.max(1, ...buckets.map((b) => b.duration));
  const root = svg("svg", { class: "chart durations", viewBox: `0 0 ${buckets.length * BAR} ${HEIGHT}`,
                            preserveAspectRatio: "none", role: "img", "aria-label": "Average duration per day" });
  const points = [];
  buckets.forEach((bucket, i) => {
    if (!bucket.duration) return;
    const x = i * BAR + BAR / 2;
    const y = HEIGHT - 4 - (bucket.duration / max) * (HEIGHT - 8);
    points.push(`${points.length ? "L" : "M"}${x} ${y}`);
    root.append(svg("g", { class: "point", dataset: { ts: String(bucket.ts), duration: String(bucket.duration) } },
      svg("title", null, `${day(bucket.ts)}: average ${formatDuration(bucket.duration)}`),
      svg("rect", { class: "dot", x: x - 3, y: y - 3, width: 6, height: 6 })));
  });
  if (points.length) root.prepend(svg("path", { class: "line", d: points.join("") }));
  return el("figure", { class: "chart-box" }, el("figcaption", null, "Average duration"), root,
            axis(buckets, `max ${formatDuration(max)}`));
}
