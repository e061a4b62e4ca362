// The console's pages, one per hash route (#/projects, #/deployments, #/deployment/<id>,
// #/workflows?query=…, #/workflow?id=…&run_id=…, #/taskqueues?name=…&kind=…), built with DOM
// calls (never innerHTML, so nothing from the API is ever parsed as markup).
import { ApiError, followLog, followRunLog, get as apiGet, post, setToken, token } from "./api.js";

const main = document.getElementById("main");
let cleanup = [];  // what the current page started (timers, log streams), stopped on leaving

// Each route drawn is a generation. A page whose route was left while it read the API (a list
// of 10,000 runs still loading when a search already drew its own) must not draw over the new
// page: its reads end with Stale, which the router ignores. body[data-stale-reads] counts them.
let generation = 0;
class Stale extends Error {
  constructor() { super("the page changed meanwhile"); }
}
async function get(path, params) {
  const mine = generation;
  const answer = await apiGet(path, params);
  if (mine !== generation) {
    document.body.dataset.staleReads = String(Number(document.body.dataset.staleReads || 0) + 1);
    throw new Stale();
  }
  return answer;
}

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
  main.replaceChildren(...nodes.filter((node) => node !== null && node !== undefined));
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

// A fresh id for a request the server makes idempotent (a double click starts one thing).
function requestId() {
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes);
  return "console-" + [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

// A button that, after a confirmation, POSTs and hands the answer to `done`; an error is shown
// in an alert and the button enabled again.
function actionButton(id, label, question, call, done, danger = true) {
  const button = h("button", { class: danger ? "danger" : "", id, type: "button", onclick: async () => {
    const text = typeof question === "function" ? question() : question;
    if (text === null || !confirm(text)) return;
    button.disabled = true;
    try {
      const answer = await call();
      if (done) done(answer);
    } catch (error) {
      alert(error.message);
      button.disabled = false;
    }
  } }, label);
  return button;
}

function decodeText(base64) {
  try {
    const binary = atob(base64 || "");
    return new TextDecoder().decode(Uint8Array.from(binary, (c) => c.charCodeAt(0)));
  } catch {
    return "";
  }
}

// Payloads as a person reads them: JSON and text as they are, anything else by size; long ones
// cut at 4,000 characters.
function payloadsText(payloads) {
  const list = (payloads && payloads.payloads) || [];
  if (!list.length) return "";
  return list.map((p) => {
    const encoding = decodeText((p.metadata || {}).encoding);
    if (/^(json|text)\//.test(encoding) || encoding === "binary/plain") {
      const text = decodeText(p.data);
      return text.length > 4000 ? text.slice(0, 4000) + "…" : text;
    }
    return "<" + Math.floor((p.data || "").length * 3 / 4) + " bytes, " + (encoding || "no encoding") + ">";
  }).join("\n");
}

// One payload of JSON a person typed ("" for none); throws when it is not JSON.
function jsonPayloads(text) {
  if (!text.trim()) return undefined;
  JSON.parse(text);
  const base64 = (value) => btoa(String.fromCharCode(...new TextEncoder().encode(value)));
  return { payloads: [{ metadata: { encoding: base64("json/plain") }, data: base64(text.trim()) }] };
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
      await apiGet("projects", { page_size: 1 });  // not a page draw: never stale
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

// A preview: its branch, deployment (with commit and status when the project still lists it
// among its recent deployments) and URL.
function previewItem(preview, deployment) {
  const d = deployment || {};
  return h("li", { "data-preview": preview.branch },
    h("strong", {}, preview.branch), " ",
    preview.deploymentId ? h("a", { href: "#/deployment/" + encodeURIComponent(preview.deploymentId) },
      preview.deploymentId) : "-", " ",
    d.commitSha ? h("span", { class: "mono" }, short(d.commitSha, 7)) : null, " ",
    d.state ? badge(enumName(d.state, "DEPLOYMENT_STATE_")) : null, " ",
    /^https?:\/\//.test(preview.url || "") ? h("a", { href: preview.url, class: "url" }, preview.url)
      : (preview.url || ""));
}

// --- Projects ----------------------------------------------------------------------------

async function projectsPage() {
  show(h("h1", {}, "Projects"), h("p", { class: "muted" }, "Loading…"));
  const list = await get("projects", { page_size: 100 });
  const rows = [];
  for (const project of list.projects || []) {
    const state = (await get("projects/" + encodeURIComponent(project.id))).state || {};
    const production = state.production || {};
    const recent = new Map((state.recent || []).map((d) => [d.id, d]));
    const previews = Object.values(state.previews || {}).sort((a, b) => a.branch.localeCompare(b.branch));
    rows.push(h("tr", { "data-project": project.id },
      h("td", {}, h("a", { href: "#/deployments?project=" + encodeURIComponent(project.id) }, project.id)),
      h("td", { class: "mono wrap" }, project.repositoryUrl),
      h("td", {}, production.id
        ? h("a", { href: "#/deployment/" + encodeURIComponent(production.id) }, production.id) : "-"),
      h("td", { class: "mono" }, short(production.commitSha, 7)),
      h("td", { class: "mono" }, digestShort(production.imageDigest)),
      h("td", {}, age(production.finishedTime || production.createdTime)),
      h("td", {}, production.id ? badge(enumName(production.state, "DEPLOYMENT_STATE_")) : "-"),
      h("td", { class: "previews" }, previews.length ? h("ul", { class: "plain" }, previews.map((preview) =>
        previewItem(preview, recent.get(preview.deploymentId)))) : "-")));
  }
  show(h("h1", {}, "Projects"),
    rows.length ? h("table", { id: "projects" },
      h("thead", {}, h("tr", {}, ["Project", "Repository", "Production", "Commit", "Digest",
        "Age", "Status", "Previews (branch, deployment, commit, URL)"].map((t) => h("th", {}, t)))),
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
  const redeploy = actionButton("redeploy", "Redeploy",
    () => "Deploy " + d.projectId + " " + d.branch + " at " + (short(d.commitSha, 7) || "its head") +
      " again (a new deployment; a tree built before is not built again)?",
    () => post("deployments/" + encodeURIComponent(id) + "/redeploy", {}, { requestId: requestId() }),
    (answer) => { location.hash = "#/deployment/" + encodeURIComponent(answer.deploymentId); }, false);
  const rollback = actionButton("rollback", "Roll back to this",
    () => "Deploy this deployment's image (" + digestShort(d.imageDigest) + ") of " + d.projectId +
      " " + d.branch + " again, replacing what runs now?",
    () => post("deployments/" + encodeURIComponent(id) + "/rollback", {}, { projectId: d.projectId }),
    (answer) => { location.hash = "#/deployment/" + encodeURIComponent(answer.deploymentId); });
  function render() {
    const state = enumName(d.state, "DEPLOYMENT_STATE_");
    header.replaceChildren(facts([
      ["Status", badge(state)], ["Project", d.projectId], ["Branch", d.branch],
      ["Commit", h("span", { class: "mono" }, d.commitSha)],
      ["Image", h("span", { class: "mono" }, d.imageReference || d.imageDigest)],
      ["URL", /^https?:\/\//.test(d.url || "") ? h("a", { href: d.url }, d.url) : d.url], ["Started", isoTime(d.createdTime)],
      ["Trigger", d.trigger], ["Rollback of", d.rollbackOf ? h("a", {
        href: "#/deployment/" + encodeURIComponent(d.rollbackOf) }, d.rollbackOf) : null],
      ["Error", d.error], ["Workflow", h("a", {
        href: "#/workflow?id=" + encodeURIComponent("deployment/" + d.id) }, "deployment/" + d.id)],
    ]));
    steps.replaceChildren(timeline(d));
    cancel.disabled = ["succeeded", "failed", "canceled"].includes(state);
    // Only an image that was deployed can be deployed again.
    rollback.disabled = state !== "succeeded" || !d.imageReference;
    rollback.title = rollback.disabled ? "only a succeeded deployment's image" : "";
  }
  render();
  show(h("h1", {}, "Deployment ", h("span", { class: "mono" }, id)), header,
    h("div", { class: "actions" }, cancel, redeploy, rollback), h("h2", {}, "Steps"), steps, h("h2", {}, "Build log"), log);
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

// The history as bars: each activity from its scheduling to its outcome, each timer from its
// start to its firing, each child from its initiation to its close. An open one runs to now
// (or to the run's close).
const OUTCOMES = [["Completed", "completed"], ["Failed", "failed"], ["TimedOut", "timed_out"],
  ["Canceled", "canceled"], ["Terminated", "terminated"], ["Fired", "fired"]];

function historySpans(events, runEnd) {
  const spans = new Map();  // by the opening event's id
  for (const e of events) {
    const type = camel(e.eventType, "EVENT_TYPE_");
    const key = Object.keys(e).find((k) => k.endsWith("Attributes"));
    const a = (key && e[key]) || {};
    const at = Date.parse(e.eventTime);
    if (type === "ActivityTaskScheduled") {
      spans.set(e.eventId, { kind: "activity", name: (a.activityType || {}).name + " " + a.activityId,
        from: at, to: null, status: "scheduled", id: e.eventId });
    } else if (type === "TimerStarted") {
      spans.set(e.eventId, { kind: "timer", name: "timer " + a.timerId, from: at, to: null,
        status: "started", id: e.eventId });
    } else if (type === "StartChildWorkflowExecutionInitiated") {
      spans.set(e.eventId, { kind: "child", name: (a.workflowType || {}).name + " " + a.workflowId,
        from: at, to: null, status: "initiated", id: e.eventId, workflowId: a.workflowId });
    } else {
      const opener = type.startsWith("ActivityTask") ? a.scheduledEventId
        : type.startsWith("Timer") ? a.startedEventId
          : (type.startsWith("ChildWorkflowExecution") || type.startsWith("StartChildWorkflowExecution"))
            ? a.initiatedEventId : null;
      const span = opener && spans.get(opener);
      if (!span) continue;
      if (type.endsWith("Started")) {
        span.status = "running";
        if (a.attempt) span.attempt = a.attempt;
        continue;
      }
      const outcome = OUTCOMES.find(([suffix]) => type.endsWith(suffix));
      if (outcome || type === "StartChildWorkflowExecutionFailed") {
        span.to = at;
        span.status = outcome ? outcome[1] : "failed";
      }
    }
  }
  return [...spans.values()].map((s) => ({ ...s, open: s.to === null, to: s.to === null ? runEnd : s.to }));
}

function historyTimeline(events, runStart, runEnd) {
  const spans = historySpans(events, runEnd);
  if (!spans.length) return h("p", { class: "muted", id: "run-timeline" }, "No activities, timers or children.");
  const total = Math.max(1, runEnd - runStart);
  return h("div", { class: "timeline", id: "run-timeline" }, spans.map((span) => {
    const bar = h("div", { class: "bar " + (span.open ? "running" : span.status) + " " + span.kind,
      title: span.kind + " " + span.name + ": " + span.status });
    bar.style.left = ((span.from - runStart) / total * 100).toFixed(2) + "%";
    bar.style.width = (Math.max(0, span.to - span.from) / total * 100).toFixed(2) + "%";
    return h("div", { class: "row", "data-kind": span.kind, "data-event": span.id },
      h("span", { class: "label", title: span.name }, span.kind, " ", h("span", { class: "mono" }, span.name)),
      h("div", { class: "track" }, bar),
      h("span", { class: "duration" }, durationText(Math.max(0, span.to - span.from) / 1000),
        span.open ? " …" : ""));
  }));
}

const AWAIT_TEXT = {
  AWAIT_KIND_ACTIVITY: (p) => "activity " + p.activityType + " (" + p.activityId + ")",
  AWAIT_KIND_TIMER: (p) => "timer " + p.timerId + (p.fireTime ? " until " + isoTime(p.fireTime) : ""),
  AWAIT_KIND_CHILD_WORKFLOW: (p) => "child " + p.workflowType + " " + p.workflowId +
    (p.childStarted ? "" : " (not started yet)"),
  AWAIT_KIND_EXTERNAL_SIGNAL: (p) => "signal " + p.signalName + " to " + p.workflowId,
  AWAIT_KIND_EXTERNAL_CANCEL: (p) => "cancel of " + p.workflowId,
  AWAIT_KIND_SIGNAL: (p) => "a signal " + p.signalName,
  AWAIT_KIND_CONDITION: () => "a condition",
  AWAIT_KIND_CANCELLATION: () => "a cancellation request",
};

// Where the code waits: the run's worker answers the stack query (a closed run, or one whose
// worker is away, says so).
async function loadStack(id, runId, into) {
  into.replaceChildren(h("p", { class: "muted" }, "Asking the run's worker…"));
  try {
    const trace = await get("workflow/stack", { id, run_id: runId });
    const pending = trace.pending || [];
    into.replaceChildren(pending.length ? h("table", { id: "stack" },
      h("thead", {}, h("tr", {}, ["Waits on", "Awaited", "Where"].map((t) => h("th", {}, t)))),
      h("tbody", {}, pending.map((p) => {
        const where = p.location ? (p.location.file || "") + ":" + (p.location.line || "") +
          (p.location.function ? " " + p.location.function : "") : "-";
        return h("tr", { "data-await": enumName(p.kind, "AWAIT_KIND_") },
          h("td", {}, (AWAIT_TEXT[p.kind] || (() => enumName(p.kind, "AWAIT_KIND_")))(p)),
          h("td", {}, p.awaited ? "yes" : "no (started, not awaited)"),
          h("td", { class: "mono wrap" }, where));
      })))
      : h("p", { class: "muted", id: "stack" }, "The code waits on nothing."));
  } catch (error) {
    into.replaceChildren(h("p", { class: "error", id: "stack-error" }, "No stack: " + error.message));
  }
}

function runActions(id, runId, status, events) {
  const running = status === "running";
  const cancel = actionButton("cancel", "Cancel workflow", "Cancel workflow " + id + "?",
    () => post("workflow/cancel", { id, run_id: runId }, { reason: "canceled from the web console" }),
    () => route());
  const terminate = actionButton("terminate", "Terminate",
    () => {
      const reason = prompt("Terminate workflow " + id + " now (its code does not run again)? Reason:",
        "terminated from the web console");
      return reason === null ? null : (terminate.dataset.reason = reason, "Terminate " + id + "?");
    },
    () => post("workflow/terminate", { id, run_id: runId }, { reason: terminate.dataset.reason }),
    () => route());
  cancel.disabled = !running;
  terminate.disabled = !running;

  const signalName = h("input", { id: "signal-name", placeholder: "signal name", maxlength: 200 });
  const signalInput = h("textarea", { id: "signal-input", placeholder: "input as JSON (optional)", rows: 1 });
  const signal = actionButton("signal", "Send signal",
    () => {
      if (!signalName.value.trim()) { alert("Name the signal."); return null; }
      try { jsonPayloads(signalInput.value); } catch (error) { alert("The input is not JSON: " + error.message); return null; }
      return "Send signal " + signalName.value.trim() + " to " + id + "?";
    },
    () => post("workflow/signal", { id, run_id: runId }, { signalName: signalName.value.trim(),
      input: jsonPayloads(signalInput.value), requestId: requestId() }),
    () => { signalName.value = ""; signalInput.value = ""; signal.disabled = false; route(); }, false);
  signal.disabled = !running;

  // Reset points: the first and last completed workflow task, or any completed one.
  // The latest 100 as choices: a long history would otherwise make a select of thousands.
  const points = events.filter((e) => e.eventType === "EVENT_TYPE_WORKFLOW_TASK_COMPLETED").slice(-100);
  const point = h("select", { id: "reset-point" },
    h("option", { value: "RESET_POINT_LAST_WORKFLOW_TASK" }, "last workflow task"),
    h("option", { value: "RESET_POINT_FIRST_WORKFLOW_TASK" }, "first workflow task"),
    points.map((e) => h("option", { value: String(e.eventId) }, "after event " + e.eventId)));
  const reset = actionButton("reset", "Reset",
    () => "Reset " + id + " to its " + point.selectedOptions[0].textContent +
      "? A new run replays up to there" + (running ? "; this run is terminated." : "."),
    () => post("workflow/reset", { id, run_id: runId }, {
      reason: "reset from the web console", requestId: requestId(),
      ...(point.value.startsWith("RESET_POINT_") ? { resetPoint: point.value }
        : { workflowTaskFinishEventId: point.value }) }),
    (answer) => { location.hash = "#/workflow?id=" + encodeURIComponent(id) + "&run_id=" + encodeURIComponent(answer.runId); });
  reset.disabled = !points.length;
  return h("div", { class: "actions wrap" }, cancel, terminate,
    h("span", { class: "group" }, signalName, signalInput, signal),
    h("span", { class: "group" }, point, reset));
}

async function workflowPage(params) {
  const id = params.get("id") || "";
  let runId = params.get("run_id") || "";
  // The run and its first history page at once (one round trip less); the later pages name the
  // run the description found. (Without a run id both mean the current run: a continue-as-new
  // between the two is redrawn by the refresh below.)
  const [described, first] = await Promise.all([get("workflow", { id, run_id: runId }),
    get("workflow/history", { id, run_id: runId, page_size: 500 })]);
  const info = described.workflowExecutionInfo || {};
  runId = info.execution.runId;
  const events = [...((first.history || {}).events || [])];
  let pageToken = first.nextPageToken || "";
  while (pageToken && events.length < 50000) {
    const page = await get("workflow/history", { id, run_id: runId, page_size: 500, page_token: pageToken });
    events.push(...((page.history || {}).events || []));
    pageToken = page.nextPageToken || "";
  }
  const status = enumName(info.status, "WORKFLOW_EXECUTION_STATUS_");
  const started = events.find((e) => e.eventType === "EVENT_TYPE_WORKFLOW_EXECUTION_STARTED");
  const input = payloadsText(((started || {}).workflowExecutionStartedEventAttributes || {}).input);
  const closing = status === "running" ? null : events[events.length - 1];
  const closeKey = closing && Object.keys(closing).find((k) => k.endsWith("Attributes"));
  const closeAttributes = (closeKey && closing[closeKey]) || {};
  const result = payloadsText(closeAttributes.result);
  const closeFailure = (closeAttributes.failure || {}).message || closeAttributes.reason || "";
  const runStart = Date.parse(info.startTime || (started && started.eventTime) || new Date());
  const runEnd = status === "running" ? Date.now() : Date.parse(info.closeTime) || Date.now();

  const pending = (described.pendingActivities || []).map((a) => h("tr", {},
    h("td", {}, a.activityId), h("td", {}, (a.activityType || {}).name),
    h("td", {}, enumName(a.state, "PENDING_ACTIVITY_STATE_")), h("td", {}, a.attempt),
    h("td", { class: "error" }, (a.lastFailure || {}).message || "")));
  const stack = h("div", { id: "stack-view" });
  const stackButton = h("button", { type: "button", id: "load-stack",
    onclick: () => loadStack(id, runId, stack) }, "Ask again");
  const streamName = params.get("stream") || "build";
  const log = h("pre", { class: "log", id: "run-log" });
  const logHeading = h("h2", {}, "Log stream ", h("span", { class: "mono" }, streamName));
  show(h("h1", {}, "Workflow ", h("span", { class: "mono" }, id)),
    facts([["Run", h("span", { class: "mono" }, runId)], ["Type", (info.type || {}).name],
      ["Status", badge(status)], ["Task queue", info.taskQueue ? h("a", { href: "#/taskqueues?" +
        new URLSearchParams({ name: info.taskQueue, kind: "workflow" }) }, info.taskQueue) : "-"],
      ["Started", isoTime(info.startTime)], ["Closed", isoTime(info.closeTime)], ["Events", info.historyLength]]),
    runActions(id, runId, status, events),
    h("div", { class: "io" },
      h("div", {}, h("h2", {}, "Input"), h("pre", { class: "payload", id: "input" }, input || "(none)")),
      h("div", {}, h("h2", {}, status === "running" ? "Result" : "Result (" + status + ")"),
        h("pre", { class: "payload", id: "result" }, status === "running" ? "(still running)"
          : result || closeFailure || "(none)"))),
    pending.length ? h("div", {}, h("h2", {}, "Pending activities"), h("table", { id: "pending" },
      h("thead", {}, h("tr", {}, ["Activity", "Type", "State", "Attempt", "Last failure"].map((t) => h("th", {}, t)))),
      h("tbody", {}, pending))) : null,
    status === "running" ? h("div", {}, h("h2", {}, "Where it waits ", stackButton), stack) : null,
    h("h2", {}, "Timeline"), historyTimeline(events, runStart, runEnd),
    h("h2", {}, "History"),
    h("table", { id: "history" },
      h("thead", {}, h("tr", {}, ["ID", "Time", "Type", "Attributes"].map((t) => h("th", {}, t)))),
      h("tbody", {}, events.map((e) => h("tr", {},
        h("td", {}, e.eventId), h("td", { class: "mono" }, isoTime(e.eventTime)),
        h("td", {}, camel(e.eventType, "EVENT_TYPE_")),
        h("td", { class: "mono wrap" }, attributesText(e)))))),
    logHeading, log);
  if (status === "running") loadStack(id, runId, stack);
  // A closed run's log is read at once; a running run's is followed when asked (a followed log
  // holds one of the few log streams the worker serves at once, for as long as the page is open).
  let following = false;
  function follow() {
    following = true;
    followButton.hidden = true;
    cleanup.push(followRunLog(id, runId, streamName, {
      onText: (text) => {
        const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
        log.append(text);
        if (atEnd) log.scrollTop = log.scrollHeight;
      },
      onEnd: () => {
        log.dataset.ended = "1";
        if (!log.textContent) log.textContent = "(nothing in stream " + streamName + ")";
      },
      onError: (error) => log.append("\n[log: " + error.message + "]\n"),
    }));
  }
  const followButton = h("button", { type: "button", id: "follow-log", onclick: follow }, "Follow the log");
  const changed = h("p", { class: "muted", hidden: true }, "The run has changed: ",
    h("a", { href: "#", onclick: (event) => { event.preventDefault(); route(); } }, "show it"), ".");
  logHeading.append(" ", followButton);
  logHeading.after(changed);
  if (status !== "running") follow();
  // A running run is looked at again every two seconds; the page is redrawn when it changed
  // (while its log is followed, it offers to).
  if (status === "running") {
    every(2000, async () => {
      let now = null;
      try {
        now = await get("workflow", { id, run_id: runId });
      } catch (error) {
        if (error instanceof Stale) return;
      }
      const nowInfo = (now && now.workflowExecutionInfo) || {};
      if (nowInfo.status === info.status && nowInfo.historyLength === info.historyLength) return;
      if (following) changed.hidden = false;
      else route();
    });
  }
}

// --- Task queues -------------------------------------------------------------------------

function queueRow(name, kind, d) {
  const pollers = d.pollers || [];
  return h("tr", { "data-queue": name, "data-kind": kind },
    h("td", { class: "mono" }, h("a", { href: "#/taskqueues?" + new URLSearchParams({ name, kind }) }, name)),
    h("td", {}, kind),
    h("td", { class: "pollers" }, pollers.length ? h("ul", { class: "plain" }, pollers.map((p) =>
      h("li", {}, h("span", { class: "mono" }, p.identity), " ", h("span", { class: "muted" }, age(p.lastAccessTime)),
        " · ", h("span", { class: "muted waiting", title: "polls or stream credits waiting for a task (0: every slot busy)" },
          `${p.waitingPolls || 0} waiting`),
        " · ", h("span", { class: "muted delivery", title: p.stream ? "tasks pushed on a worker stream" : "long polls" },
          p.stream ? "stream" : "polls"))))
      : h("span", { class: "muted" }, "none")),
    h("td", { class: "backlog" }, String(d.backlogCount || 0) + (d.backlogCountCapped ? "+" : "")),
    h("td", {}, seconds(d.oldestTaskAge) ? durationText(seconds(d.oldestTaskAge)) : "-"),
    h("td", { class: "mono" }, d.exclusiveHolder || "-"));
}

async function taskQueuesPage(params) {
  const name = params.get("name") || "";
  const kind = params.get("kind") || "activity";
  const nameInput = h("input", { name: "name", placeholder: "task queue, e.g. project/web", value: name, maxlength: 200 });
  const kindSelect = h("select", { name: "kind" }, ["activity", "workflow"].map((k) =>
    h("option", { value: k, selected: k === kind }, k)));
  const form = h("form", { class: "filters", onsubmit: (event) => {
    event.preventDefault();
    location.hash = "#/taskqueues?" + new URLSearchParams({ name: nameInput.value.trim(), kind: kindSelect.value });
  } }, nameInput, kindSelect, h("button", { type: "submit" }, "Describe"));
  show(h("h1", {}, "Task queues"), form, h("p", { class: "muted" }, "Loading…"));

  // The platform's own queues and each project's builder queue (one page of projects), or the
  // queue asked for.
  const describe = ([n, k]) => get("taskqueue", { name: n, kind: k }).then((d) => queueRow(n, k, d))
    .catch((error) => h("tr", { "data-queue": n, "data-kind": k }, h("td", { class: "mono" }, n), h("td", {}, k),
      h("td", { class: "error", colspan: 4 }, error.message)));
  const queues = name ? [[name, kind]] : [["kiln-platform", "workflow"], ["kiln-platform", "activity"]];
  // The platform's queues are asked for while the projects are listed.
  const machinesAnswer = get("machines", { page_size: 50 });
  const first = Promise.all(queues.map(describe));
  const projects = name ? {} : await get("projects", { page_size: 50 });
  const projectQueues = (projects.projects || []).map((project) => ["project/" + project.id, "activity"]);
  const [firstRows, projectRows, machines] = await Promise.all([first,
    Promise.all(projectQueues.map(describe)), machinesAnswer]);
  queues.push(...projectQueues);
  const described = [...firstRows, ...projectRows];
  const machineRows = (machines.machines || []).map((m) => h("tr", { "data-machine": m.projectId },
    h("td", {}, m.projectId), h("td", {}, m.provider),
    h("td", { class: "state" }, m.error ? h("span", { class: "error" }, m.error) : badge(m.awake ? "awake" : "asleep")),
    h("td", {}, m.awake ? String(m.pid) : "-"),
    h("td", {}, age(Date.parse(m.wokeTime) > 0 ? m.wokeTime : "")),
    h("td", {}, m.lastExitCode >= 0 ? String(m.lastExitCode) : "-")));
  show(h("h1", {}, "Task queues"), form,
    h("table", { id: "taskqueues" }, h("thead", {}, h("tr", {}, ["Queue", "Kind", "Pollers (last poll)",
      "Backlog", "Oldest task", "Exclusive holder"].map((t) => h("th", {}, t)))), h("tbody", {}, described)),
    name ? h("p", {}, h("a", { href: "#/taskqueues" }, "← All the platform's queues")) : null,
    h("h2", {}, "Builder machines"),
    machineRows.length ? h("table", { id: "machines" }, h("thead", {}, h("tr", {}, ["Project", "Provider",
      "State", "PID", "Last woken", "Last exit code"].map((t) => h("th", {}, t)))), h("tbody", {}, machineRows))
      : h("p", { class: "muted" }, "No projects."));
  // Pollers come and go: looked at again every 3 s.
  every(3000, async () => {
    const again = await Promise.all(queues.map(([n, k]) => get("taskqueue", { name: n, kind: k })
      .then((d) => queueRow(n, k, d)).catch(() => null)));
    const body = document.querySelector("table#taskqueues tbody");
    if (body && again.every((row) => row)) body.replaceChildren(...again);
  });
}

// --- Router ------------------------------------------------------------------------------

async function route() {
  ++generation;
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
    else if (path === "/taskqueues") await taskQueuesPage(params);
    else show(h("p", {}, "No such page. "), h("a", { href: "#/deployments" }, "Deployments"));
  } catch (error) {
    if (error instanceof Stale) return;  // another route draws the page now
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
