// The console's pages, one per hash route (#/projects, #/deployments, #/deployment/<id>,
// #/workflows?query=…, #/workflow?id=…&run_id=…), built with DOM calls (never innerHTML, so
// nothing from the API is ever parsed as markup).
import { ApiError, followLog, get, post, setToken, token } from "./api.js";

const main = document.getElementById("main");
let cleanup = [];  // what the current page started (timers, log streams), stopped on leaving

function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== undefined && value !== null && value !== false) node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function show(...nodes) {
  main.replaceChildren(...nodes);
}

function enumName(value, prefix) {
  return String(value || "").replace(prefix, "").toLowerCase();
}

// "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED" -> "ActivityTaskScheduled", as `kiln workflow show`.
function camel(value, prefix) {
  return String(value || "").replace(prefix, "").toLowerCase()
    .split("_").map((w) => w.charAt(0).toUpperCase() + w.slice(1)).join("");
}

function statusClass(name) {
  if (["succeeded", "completed", "ok", "healthy"].includes(name)) return "ok";
  if (["failed", "canceled", "terminated", "timed_out"].includes(name)) return "bad";
  if (["waking", "fetching", "building", "pushing", "deploying", "running"].includes(name)) return "run";
  return "wait";
}

function badge(name) {
  return h("span", { class: "status " + statusClass(name) }, name || "-");
}

function seconds(duration) {
  return duration ? parseFloat(duration) : 0;  // protobuf JSON: "1.500s"
}

function durationText(s) {
  if (s < 1) return Math.round(s * 1000) + " ms";
  if (s < 120) return s.toFixed(1) + " s";
  return Math.floor(s / 60) + " min " + Math.round(s % 60) + " s";
}

function age(time) {
  if (!time) return "-";
  const s = (Date.now() - Date.parse(time)) / 1000;
  if (s < 60) return Math.max(0, Math.round(s)) + "s ago";
  if (s < 3600) return Math.round(s / 60) + "m ago";
  if (s < 86400) return Math.round(s / 3600) + "h ago";
  return Math.round(s / 86400) + "d ago";
}

// An unset timestamp may come as the epoch: it shows as "-".
function isoTime(time) {
  const ms = time ? Date.parse(time) : 0;
  return ms > 0 ? new Date(ms).toISOString() : "-";
}

function short(text, n) {
  return text ? String(text).slice(0, n) : "-";
}

function digestShort(digest) {
  return digest ? digest.replace("sha256:", "").slice(0, 12) : "-";
}

function failure(error) {
  if (error instanceof ApiError && error.status === 401) {
    setToken("");
    location.hash = "#/login";
    return h("p", {}, "Please log in.");
  }
  return h("p", { class: "error" }, "Error: " + error.message);
}

function every(ms, fn) {
  const id = setInterval(fn, ms);
  cleanup.push(() => clearInterval(id));
}

// --- Login -------------------------------------------------------------------------------

function loginPage() {
  const input = h("input", { type: "password", id: "token", autocomplete: "off",
    placeholder: "kiln1.…" });
  const message = h("p", { class: "error", id: "login-error" });
  const form = h("form", { class: "login", id: "login-form", onsubmit: async (event) => {
    event.preventDefault();
    setToken(input.value.trim());
    try {
      await get("projects", { page_size: 1 });
      location.hash = "#/deployments";
    } catch (error) {
      setToken("");
      message.textContent = error.message;
    }
  } },
  h("h1", {}, "Log in"),
  h("p", { class: "muted" },
    "Paste the admin token (kiln-data/admin.token after make demo). It stays in this tab only."),
  input, h("button", { type: "submit" }, "Log in"), message);
  show(form);
  input.focus();
}

// --- Projects ----------------------------------------------------------------------------

async function projectsPage() {
  show(h("h1", {}, "Projects"), h("p", { class: "muted" }, "Loading…"));
  const list = await get("projects", { page_size: 100 });
  const rows = [];
  for (const project of list.projects || []) {
    const state = (await get("projects/" + encodeURIComponent(project.id))).state || {};
    const production = state.production || {};
    const previews = Object.keys(state.previews || {});
    rows.push(h("tr", { "data-project": project.id },
      h("td", {}, h("a", { href: "#/deployments?project=" + encodeURIComponent(project.id) }, project.id)),
      h("td", { class: "mono wrap" }, project.repositoryUrl),
      h("td", {}, production.id
        ? h("a", { href: "#/deployment/" + encodeURIComponent(production.id) }, production.id) : "-"),
      h("td", { class: "mono" }, short(production.commitSha, 7)),
      h("td", { class: "mono" }, digestShort(production.imageDigest)),
      h("td", {}, age(production.finishedTime || production.createdTime)),
      h("td", {}, production.id ? badge(enumName(production.state, "DEPLOYMENT_STATE_")) : "-"),
      h("td", {}, previews.length ? previews.join(", ") : "-")));
  }
  show(h("h1", {}, "Projects"),
    rows.length ? h("table", { id: "projects" },
      h("thead", {}, h("tr", {}, ["Project", "Repository", "Production", "Commit", "Digest",
        "Age", "Status", "Previews"].map((t) => h("th", {}, t)))),
      h("tbody", {}, rows))
      : h("p", { class: "muted" }, "No projects yet: kiln project create …"));
}

// --- Deployments -------------------------------------------------------------------------

const DEPLOYMENT_STATES = ["", "queued", "waking", "fetching", "building", "pushing", "deploying",
  "succeeded", "failed", "canceled"];

function deploymentRow(d) {
  return h("tr", { "data-deployment": d.id },
    h("td", {}, h("a", { href: "#/deployment/" + encodeURIComponent(d.id) }, d.id)),
    h("td", {}, d.projectId),
    h("td", {}, d.branch),
    h("td", { class: "mono" }, short(d.commitSha, 7)),
    h("td", { class: "state" }, badge(enumName(d.state, "DEPLOYMENT_STATE_"))),
    h("td", { class: "mono" }, digestShort(d.imageDigest)),
    h("td", {}, age(d.createdTime)));
}

async function deploymentsPage(params) {
  const filters = { project: params.get("project") || "", branch: params.get("branch") || "",
    status: params.get("status") || "" };
  const pageToken = params.get("page_token") || "";
  const project = h("input", { name: "project", placeholder: "project", value: filters.project });
  const branch = h("input", { name: "branch", placeholder: "branch", value: filters.branch });
  const status = h("select", { name: "status" }, DEPLOYMENT_STATES.map((s) =>
    h("option", { value: s, selected: s === filters.status }, s || "any status")));
  const form = h("form", { class: "filters", onsubmit: (event) => {
    event.preventDefault();
    const next = new URLSearchParams();
    for (const [k, v] of [["project", project.value], ["branch", branch.value], ["status", status.value]]) {
      if (v) next.set(k, v);
    }
    location.hash = "#/deployments" + (next.toString() ? "?" + next : "");
  } }, project, branch, status, h("button", { type: "submit" }, "Filter"));
  const body = h("tbody", {});
  const note = h("span", { class: "muted", id: "updated" });
  const older = h("a", { id: "older", hidden: true }, "Older deployments →");
  show(h("h1", {}, "Deployments"), form,
    h("table", { id: "deployments" },
      h("thead", {}, h("tr", {}, ["Deployment", "Project", "Branch", "Commit", "Status", "Digest",
        "Started"].map((t) => h("th", {}, t)))), body),
    h("div", { class: "pager" }, pageToken ? h("a", { href: "#/deployments?" +
      new URLSearchParams(Object.entries(filters).filter(([, v]) => v)) }, "← Newest") : null,
    older, note));
  // Live without a reload: the list is polled while the page is open.
  async function refresh() {
    const list = await get("deployments", { ...filters, page_size: 50, page_token: pageToken });
    body.replaceChildren(...(list.deployments || []).map(deploymentRow));
    note.textContent = (list.deployments || []).length
      ? "Updated " + new Date().toLocaleTimeString() : "No deployments match.";
    older.hidden = !list.nextPageToken;
    if (list.nextPageToken) {
      older.href = "#/deployments?" + new URLSearchParams({ ...Object.fromEntries(
        Object.entries(filters).filter(([, v]) => v)), page_token: list.nextPageToken });
    }
  }
  await refresh();
  every(2000, () => refresh().catch((error) => { note.textContent = error.message; }));
}

// --- A deployment ------------------------------------------------------------------------

function timeline(d) {
  const steps = d.steps || [];
  const start = Date.parse(d.createdTime || (steps[0] && steps[0].startedTime) || new Date());
  let end = start;
  const spans = steps.map((step) => {
    const from = step.startedTime ? Date.parse(step.startedTime) : start;
    let length = seconds(step.duration) * 1000;
    if (step.status === "running") length = Math.max(length, Date.now() - from);
    end = Math.max(end, from + length);
    return { step, from, length };
  });
  const total = Math.max(1, end - start);
  return h("div", { class: "timeline", id: "timeline" }, spans.map(({ step, from, length }) => {
    const bar = h("div", { class: "bar " + step.status, title: step.detail || step.status });
    // CSSOM, not a style attribute: the Content-Security-Policy allows no inline styles.
    bar.style.left = ((from - start) / total * 100).toFixed(2) + "%";
    bar.style.width = (length / total * 100).toFixed(2) + "%";
    return h("div", { class: "row", "data-step": step.name },
      h("span", {}, step.name, " ", badge(step.status)),
      h("div", { class: "track" }, bar),
      h("span", { class: "duration" }, durationText(length / 1000)));
  }));
}

function facts(pairs) {
  return h("dl", { class: "facts" }, pairs.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v || "-")]));
}

async function deploymentPage(id) {
  let d = await get("deployments/" + encodeURIComponent(id));
  const header = h("div", {});
  const steps = h("div", {});
  const log = h("pre", { class: "log", id: "log" });
  const cancel = h("button", { class: "danger", id: "cancel", type: "button", onclick: async () => {
    if (!confirm("Cancel deployment " + id + "?")) return;
    cancel.disabled = true;
    try {
      await post("deployments/" + encodeURIComponent(id) + "/cancel", {}, { reason: "canceled from the web console" });
    } catch (error) {
      alert(error.message);
      cancel.disabled = false;
    }
  } }, "Cancel deployment");
  function render() {
    const state = enumName(d.state, "DEPLOYMENT_STATE_");
    header.replaceChildren(facts([
      ["Status", badge(state)], ["Project", d.projectId], ["Branch", d.branch],
      ["Commit", h("span", { class: "mono" }, d.commitSha)],
      ["Image", h("span", { class: "mono" }, d.imageReference || d.imageDigest)],
      ["URL", /^https?:\/\//.test(d.url || "") ? h("a", { href: d.url }, d.url) : d.url], ["Started", isoTime(d.createdTime)],
      ["Error", d.error], ["Workflow", h("a", {
        href: "#/workflow?id=" + encodeURIComponent("deployment/" + d.id) }, "deployment/" + d.id)],
    ]));
    steps.replaceChildren(timeline(d));
    cancel.disabled = ["succeeded", "failed", "canceled"].includes(state);
  }
  render();
  show(h("h1", {}, "Deployment ", h("span", { class: "mono" }, id)), header,
    h("div", { class: "actions" }, cancel), h("h2", {}, "Steps"), steps, h("h2", {}, "Build log"), log);
  let ended = false;
  const stop = followLog(id, {
    onText: (text) => {
      const follow = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
      log.append(text);
      if (follow) log.scrollTop = log.scrollHeight;
    },
    onEnd: (deployment) => { ended = true; if (deployment.id) { d = deployment; render(); } log.dataset.ended = "1"; },
    onError: (error) => log.append("\n[log: " + error.message + "]\n"),
  });
  cleanup.push(stop);
  every(1000, async () => {
    if (ended && !(d.steps || []).some((s) => s.status === "running")) return;
    try { d = await get("deployments/" + encodeURIComponent(id)); render(); } catch { /* next tick */ }
  });
}

// --- Workflows ---------------------------------------------------------------------------

async function workflowsPage(params) {
  const query = params.get("query") || "";
  const pageToken = params.get("page_token") || "";
  const input = h("input", { class: "query", name: "query", value: query,
    placeholder: 'WorkflowType = "kiln.DeploymentWorkflow" AND ExecutionStatus = "Running"' });
  const form = h("form", { class: "filters", onsubmit: (event) => {
    event.preventDefault();
    location.hash = "#/workflows" + (input.value ? "?query=" + encodeURIComponent(input.value) : "");
  } }, input, h("button", { type: "submit" }, "Search"));
  show(h("h1", {}, "Workflows"), form, h("p", { class: "muted" }, "Loading…"));
  const list = await get("workflows", { query, page_size: 50, page_token: pageToken });
  const rows = (list.executions || []).map((w) => h("tr", { "data-workflow": w.execution.workflowId },
    h("td", { class: "mono" }, h("a", { href: "#/workflow?id=" + encodeURIComponent(w.execution.workflowId) +
      "&run_id=" + encodeURIComponent(w.execution.runId) }, w.execution.workflowId)),
    h("td", { class: "mono" }, w.execution.runId),
    h("td", {}, (w.type || {}).name),
    h("td", {}, badge(enumName(w.status, "WORKFLOW_EXECUTION_STATUS_"))),
    h("td", {}, isoTime(w.startTime)),
    h("td", {}, isoTime(w.closeTime)),
    h("td", {}, w.historyLength)));
  const next = list.nextPageToken
    ? h("a", { id: "next", href: "#/workflows?" + new URLSearchParams({ query, page_token: list.nextPageToken }) }, "Next page →")
    : null;
  show(h("h1", {}, "Workflows"), form,
    h("table", { id: "workflows" }, h("thead", {}, h("tr", {}, ["Workflow", "Run", "Type", "Status",
      "Started", "Closed", "Events"].map((t) => h("th", {}, t)))), h("tbody", {}, rows)),
    h("div", { class: "pager" }, pageToken ? h("a", { href: "#/workflows" + (query ? "?query=" + encodeURIComponent(query) : "") }, "← First page") : null,
      next, h("span", { class: "muted" }, rows.length + " shown")));
}

// The event's attributes, one line: its oneof field as JSON, payload data left as base64.
function attributesText(event) {
  const key = Object.keys(event).find((k) => k.endsWith("Attributes"));
  if (!key) return "";
  const text = JSON.stringify(event[key]);
  return text.length > 300 ? text.slice(0, 300) + "…" : text;
}

async function workflowPage(params) {
  const id = params.get("id") || "";
  let runId = params.get("run_id") || "";
  const described = await get("workflow", { id, run_id: runId });
  const info = described.workflowExecutionInfo || {};
  runId = info.execution.runId;
  const events = [];
  let pageToken = "";
  do {
    const page = await get("workflow/history", { id, run_id: runId, page_size: 500, page_token: pageToken });
    events.push(...((page.history || {}).events || []));
    pageToken = page.nextPageToken || "";
  } while (pageToken && events.length < 50000);
  const status = enumName(info.status, "WORKFLOW_EXECUTION_STATUS_");
  const cancel = h("button", { class: "danger", id: "cancel", type: "button", disabled: status !== "running",
    onclick: async () => {
      if (!confirm("Cancel workflow " + id + "?")) return;
      cancel.disabled = true;
      try {
        await post("workflow/cancel", { id, run_id: runId }, { reason: "canceled from the web console" });
      } catch (error) {
        alert(error.message);
        cancel.disabled = false;
      }
    } }, "Cancel workflow");
  const pending = (described.pendingActivities || []).map((a) => h("tr", {},
    h("td", {}, a.activityId), h("td", {}, (a.activityType || {}).name),
    h("td", {}, enumName(a.state, "PENDING_ACTIVITY_STATE_")), h("td", {}, a.attempt),
    h("td", { class: "error" }, (a.lastFailure || {}).message || "")));
  show(h("h1", {}, "Workflow ", h("span", { class: "mono" }, id)),
    facts([["Run", h("span", { class: "mono" }, runId)], ["Type", (info.type || {}).name],
      ["Status", badge(status)], ["Task queue", info.taskQueue], ["Started", isoTime(info.startTime)],
      ["Closed", isoTime(info.closeTime)], ["Events", info.historyLength]]),
    h("div", { class: "actions" }, cancel),
    pending.length ? h("div", {}, h("h2", {}, "Pending activities"), h("table", {},
      h("thead", {}, h("tr", {}, ["Activity", "Type", "State", "Attempt", "Last failure"].map((t) => h("th", {}, t)))),
      h("tbody", {}, pending))) : null,
    h("h2", {}, "History"),
    h("table", { id: "history" },
      h("thead", {}, h("tr", {}, ["ID", "Time", "Type", "Attributes"].map((t) => h("th", {}, t)))),
      h("tbody", {}, events.map((e) => h("tr", {},
        h("td", {}, e.eventId), h("td", { class: "mono" }, isoTime(e.eventTime)),
        h("td", {}, camel(e.eventType, "EVENT_TYPE_")),
        h("td", { class: "mono wrap" }, attributesText(e)))))));
  // A running run is looked at again every two seconds; the page is redrawn when it changed.
  if (status === "running") {
    every(2000, async () => {
      const now = await get("workflow", { id, run_id: runId }).catch(() => null);
      const nowInfo = (now && now.workflowExecutionInfo) || {};
      if (nowInfo.status !== info.status || nowInfo.historyLength !== info.historyLength) route();
    });
  }
}

// --- Router ------------------------------------------------------------------------------

async function route() {
  for (const stop of cleanup) stop();
  cleanup = [];
  const hash = location.hash.replace(/^#/, "") || "/deployments";
  const [path, query] = hash.split("?");
  const params = new URLSearchParams(query || "");
  document.getElementById("logout").hidden = !token();
  for (const link of document.querySelectorAll("#nav a")) {
    link.classList.toggle("active", path.startsWith(link.getAttribute("href").slice(1)));
  }
  if (!token() && path !== "/login") {
    location.hash = "#/login";
    return;
  }
  try {
    if (path === "/login") loginPage();
    else if (path === "/projects") await projectsPage();
    else if (path === "/deployments") await deploymentsPage(params);
    else if (path.startsWith("/deployment/")) await deploymentPage(decodeURIComponent(path.slice(12)));
    else if (path === "/workflows") await workflowsPage(params);
    else if (path === "/workflow") await workflowPage(params);
    else show(h("p", {}, "No such page. "), h("a", { href: "#/deployments" }, "Deployments"));
  } catch (error) {
    show(failure(error));
  }
  document.body.dataset.page = path;
}

document.getElementById("logout").addEventListener("click", () => {
  setToken("");
  location.hash = "#/login";
});
window.addEventListener("hashchange", route);
route();
