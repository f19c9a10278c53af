// The dashboard's entry point: sign-in, a hash router between the overview and a monitor,
// and the system-incident banner (#system-banner, system.js) on every page once signed in.

import { ApiError, clearSession, getJson, saveSession, session } from "./api.js";
import { el, replaceChildren, show } from "./dom.js";
import { showMonitor } from "./monitor.js";
import { startOverview, stopOverview } from "./overview.js";
import { startSystemBanner, stopSystemBanner } from "./system.js";

const $ = (selector) => document.querySelector(selector);

/** What a person should read when the API says no. */
export function explain(error, organization) {
  if (!(error instanceof ApiError)) return `Something went wrong: ${error.message}`;
  if (error.status === 401) return `This token was not accepted (${error.detail}). Use a read token of the organization.`;
  if (error.status === 404 && /Organization/.test(error.detail)) {
    return `Organization "${organization}" was not found for this token.`;
  }
  if (error.status === 0) return error.detail;
  return `The API answered ${error.status}: ${error.detail}`;
}

function signedOut(message) {
  stopOverview();
  stopSystemBanner($("#system-banner"));
  clearSession();
  show($("#signin"), true);
  show($("#overview"), false);
  show($("#monitor"), false);
  show($("#sign-out"), false);
  $("#org-name").textContent = "";
  const notice = $("#signin-error");
  notice.textContent = message || "";
  show(notice, Boolean(message));
}

function failed(error) {
  const auth = session();
  if (error instanceof ApiError && error.status === 401) {
    signedOut(explain(error, auth ? auth.organization : ""));
    return;
  }
  const notice = $("#page-error");
  notice.textContent = explain(error, auth ? auth.organization : "");
  show(notice, true);
}

async function route() {
  const auth = session();
  if (!auth) {
    signedOut($("#signin-error").textContent);
    return;
  }
  show($("#signin"), false);
  show($("#sign-out"), true);
  show($("#page-error"), false);
  $("#org-name").textContent = auth.organization;
  startSystemBanner(auth, $("#system-banner"));
  const match = /^#\/monitor\/([^/]+)$/.exec(location.hash);
  if (match) {
    stopOverview();
    show($("#overview"), false);
    show($("#monitor"), true);
    try {
      await showMonitor(auth, $("#monitor"), decodeURIComponent(match[1]));
    } catch (error) {
      replaceChildren($("#monitor"), el("a", { href: "#/", class: "back" }, "← All monitors"));
      failed(error);
    }
    return;
  }
  show($("#monitor"), false);
  show($("#overview"), true);
  await startOverview(auth, $("#overview"), failed);
}

async function signIn(event) {
  event.preventDefault();
  const organization = $("#signin-org").value.trim();
  const token = $("#signin-token").value.trim();
  const notice = $("#signin-error");
  show(notice, false);
  if (!organization || !token) {
    notice.textContent = "Enter the organization slug and a read token.";
    show(notice, true);
    return;
  }
  try {
    await getJson({ organization, token }, "monitors/", { per_page: 1 });
  } catch (error) {
    notice.textContent = explain(error, organization);
    show(notice, true);
    return;
  }
  $("#signin-token").value = "";
  saveSession(organization, token);
  notice.textContent = "";
  if (location.hash !== "#/") location.hash = "#/";
  else route();
}

document.addEventListener("DOMContentLoaded", () => {
  $("#signin-form").addEventListener("submit", signIn);
  $("#sign-out").addEventListener("click", () => { signedOut(""); location.hash = "#/"; });
  window.addEventListener("hashchange", route);
  route();
});
