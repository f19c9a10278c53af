// The read API, as a script would call it: Bearer token, JSON, Link headers for paging.
// The token lives in sessionStorage only (gone when the tab closes) and travels only in the
// Authorization header; it is never put in a URL, the history or the console.

const ORG_KEY = "cronpipe.organization";
const TOKEN_KEY = "cronpipe.token";

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
    this.detail = detail;
  }
}

export function session() {
  const organization = sessionStorage.getItem(ORG_KEY);
  const token = sessionStorage.getItem(TOKEN_KEY);
  return organization && token ? { organization, token } : null;
}

export function saveSession(organization, token) {
  sessionStorage.setItem(ORG_KEY, organization);
  sessionStorage.setItem(TOKEN_KEY, token);
}

export function clearSession() {
  sessionStorage.removeItem(ORG_KEY);
  sessionStorage.removeItem(TOKEN_KEY);
}

function organizationPath(organization, path) {
  return `/api/0/organizations/${encodeURIComponent(organization)}/${path}`;
}

function withQuery(path, params) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params || {})) {
    if (value === null || value === undefined) continue;
    for (const one of Array.isArray(value) ? value : [value]) query.append(name, String(one));
  }
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

async function request(url, token) {
  let response;
  try {
    response = await fetch(url, { headers: { Authorization: `Bearer ${token}` }, credentials: "omit",
                                  cache: "no-store", referrerPolicy: "no-referrer" });
  } catch (_) {
    throw new ApiError(0, "The API could not be reached.");
  }
  if (!response.ok) {
    let detail = `HTTP ${response.status}`;
    try {
      const body = await response.json();
      if (body && typeof body.detail === "string") detail = body.detail;
    } catch (_) { /* not JSON: keep the status */ }
    throw new ApiError(response.status, detail);
  }
  return response;
}

/** Parse a Sentry Link header into {previous, next} cursors (null when results="false"). */
export function parseLink(header) {
  const out = { previous: null, next: null };
  for (const part of (header || "").split(/,\s*(?=<)/)) {
    const rel = /rel="(previous|next)"/.exec(part);
    const results = /results="(true|false)"/.exec(part);
    const cursor = /cursor="([0-9]+:[0-9]+:[01])"/.exec(part);
    if (rel && results && cursor && results[1] === "true") out[rel[1]] = cursor[1];
  }
  return out;
}

/** GET an organization path: {body, link}. Raises ApiError with the API's detail text. */
export async function getJson(auth, path, params) {
  const response = await request(withQuery(organizationPath(auth.organization, path), params), auth.token);
  return { body: await response.json(), link: parseLink(response.headers.get("Link")) };
}

/** The installation's system incidents (any valid token): the volume guard's banner. */
export async function getSystemIncidents(auth) {
  const response = await request("/api/0/system-incidents/", auth.token);
  return response.json();
}

/** GET raw bytes (an attachment): never interpreted, only decoded as text or saved. */
export async function getBytes(auth, path) {
  const response = await request(organizationPath(auth.organization, path), auth.token);
  return new Uint8Array(await response.arrayBuffer());
}

export function monitorPath(monitorId, rest) {
  return `monitors/${encodeURIComponent(monitorId)}/${rest || ""}`;
}
