// Pure formatting: times, durations, schedules in words, and the status of a timeline tick.

/** Timeline cell columns after the bucket index (docs/api.md, monitors-timeline). */
export const CELL_STATUSES = ["ok", "error", "missed", "timeout", "in_progress", "unknown"];
/** A tick shows its worst status: an error outweighs anything that went well in the bucket. */
export const TICK_PRECEDENCE = ["error", "timeout", "missed", "ok", "in_progress", "unknown"];
export const STATUS_LABELS = {
  ok: "ok", error: "error", missed: "missed", timeout: "timeout", in_progress: "in progress", unknown: "unknown",
  active: "waiting", disabled: "disabled", muted: "muted",
};

/** The status a tick is drawn in: the first of TICK_PRECEDENCE with a count. */
export function tickStatus(cell) {
  for (const status of TICK_PRECEDENCE) {
    if (cell[1 + CELL_STATUSES.indexOf(status)] > 0) return status;
  }
  return null;
}

export function cellCounts(cell) {
  const counts = {};
  CELL_STATUSES.forEach((status, i) => { counts[status] = cell[1 + i]; });
  return counts;
}

const pad = (n) => String(n).padStart(2, "0");

/** "2026-12-02 03:40 UTC": the dashboard shows UTC, like the API. */
export function formatTime(value) {
  if (!value) return "—";
  const d = value instanceof Date ? value : new Date(value);
  if (Number.isNaN(d.getTime())) return "—";
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} `
    + `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())} UTC`;
}

export function formatSeconds(value) {
  const d = new Date(value);
  return `${formatTime(d).slice(0, 16)}:${pad(d.getUTCSeconds())} UTC`;
}

/** "3 min ago" / "in 2 h" relative to now. */
export function relative(value, now = Date.now()) {
  if (!value) return "—";
  const seconds = Math.round((new Date(value).getTime() - now) / 1000);
  const size = Math.abs(seconds);
  const text = size < 60 ? `${size} s` : size < 3600 ? `${Math.round(size / 60)} min`
    : size < 86400 ? `${Math.round(size / 3600)} h` : `${Math.round(size / 86400)} d`;
  return seconds < 0 ? `${text} ago` : `in ${text}`;
}

export function formatDuration(ms) {
  if (ms === null || ms === undefined) return "—";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 3600000) return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
  return `${(ms / 3600000).toFixed(1)} h`;
}

const DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
const UNITS = { minute: "minute", hour: "hour", day: "day", week: "week", month: "month", year: "year" };

function plural(n, unit) {
  return n === 1 ? `every ${unit}` : `every ${n} ${unit}s`;
}

/** A monitor config's schedule in words; anything unusual is shown as its crontab. */
export function scheduleWords(config) {
  const schedule = config && config.schedule;
  if (Array.isArray(schedule) && schedule.length === 2 && UNITS[schedule[1]]) {
    const words = plural(Number(schedule[0]), UNITS[schedule[1]]);
    return words.charAt(0).toUpperCase() + words.slice(1);
  }
  if (typeof schedule !== "string") return "No schedule";
  const fields = schedule.trim().split(/\s+/);
  if (fields.length !== 5) return `Cron ${schedule}`;
  const [minute, hour, dom, month, dow] = fields;
  const number = (s) => /^[0-9]{1,2}$/.test(s);
  const step = /^\*\/([0-9]{1,2})$/;
  if (dom !== "*" || month !== "*") {
    if (number(minute) && number(hour) && number(dom) && month === "*" && dow === "*") {
      return `Monthly on day ${Number(dom)} at ${pad(hour)}:${pad(minute)}`;
    }
    return `Cron ${schedule}`;
  }
  if (minute === "*" && hour === "*" && dow === "*") return "Every minute";
  if (step.test(minute) && hour === "*" && dow === "*") return `Every ${Number(step.exec(minute)[1])} minutes`;
  if (number(minute) && hour === "*" && dow === "*") return `Every hour at minute ${Number(minute)}`;
  if (number(minute) && step.test(hour) && dow === "*") {
    return `Every ${Number(step.exec(hour)[1])} hours at minute ${Number(minute)}`;
  }
  if (number(minute) && number(hour)) {
    const at = `${pad(hour)}:${pad(minute)}`;
    if (dow === "*") return `Every day at ${at}`;
    if (/^[0-7]$/.test(dow)) return `Every ${DAYS[Number(dow) % 7]} at ${at}`;
    if (dow === "1-5") return `Every weekday at ${at}`;
  }
  return `Cron ${schedule}`;
}

export function minutes(n) {
  return n === null || n === undefined ? "—" : `${n} min`;
}
