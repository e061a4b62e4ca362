// The console's calls to kiln-worker's /api/v1: the admin token from sessionStorage as a
// bearer token on every call, errors as thrown ApiError, and the live log as server-sent
// events read from a fetch (EventSource cannot send the Authorization header), resumed after a
// dropped connection from the last event id.

const TOKEN_KEY = "kiln.token";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

function url(path, params) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params || {})) {
    if (value !== undefined && value !== null && value !== "") query.set(key, value);
  }
  const text = query.toString();
  return "/api/v1/" + path + (text ? "?" + text : "");
}

async function call(method, path, params, body) {
  const init = { method, headers: { Authorization: "Bearer " + token() } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(url(path, params), init);
  const text = await response.text();
  let json = {};
  try {
    json = text ? JSON.parse(text) : {};
  } catch {
    throw new ApiError(response.status, "not JSON: " + text.slice(0, 200));
  }
  if (!response.ok) throw new ApiError(response.status, json.error || response.statusText);
  return json;
}

export const get = (path, params) => call("GET", path, params);
export const post = (path, params, body) => call("POST", path, params, body || {});

function decodeBase64(text) {
  const binary = atob(text || "");
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; ++i) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

// Follows a deployment's build log: onText(text) for each piece, onEnd(deployment) once the
// run has closed and its whole log is out. Returns a function that stops following.
export function followLog(deploymentId, handlers) {
  return followStream("deployments/" + encodeURIComponent(deploymentId) + "/log", {}, handlers);
}

// Follows a run's log stream (`stream`, "build" by default): as followLog, onEnd(described) with
// the run's DescribeWorkflowExecutionResponse.
export function followRunLog(id, runId, stream, handlers) {
  return followStream("workflow/log", { id, run_id: runId, stream }, handlers);
}

// The server-sent events of `path`: `log` events (a LogChunk or ReadLogResponse: offset, base64
// data) and one `end` event; reconnects from the last event id while not stopped.
function followStream(path, params, { onText, onEnd, onError }) {
  let stopped = false;
  let lastEventId = "0";
  let controller = null;
  const decoder = new TextDecoder();

  function dispatch(event) {
    if (event.id !== undefined) lastEventId = event.id;
    if (event.type === "log") {
      const chunk = JSON.parse(event.data);
      onText(decoder.decode(decodeBase64(chunk.data), { stream: true }));
    } else if (event.type === "end") {
      stopped = true;
      onEnd(JSON.parse(event.data));
    }
  }

  async function once() {
    controller = new AbortController();
    const response = await fetch(url(path, params), {
      headers: { Authorization: "Bearer " + token(), "Last-Event-ID": lastEventId },
      signal: controller.signal,
    });
    if (!response.ok) {
      let message = response.statusText;
      try { message = (await response.json()).error; } catch { /* keep the status text */ }
      throw new ApiError(response.status, message);
    }
    const reader = response.body.getReader();
    const text = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += text.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const event = { type: "message", data: "" };
        for (const line of block.split("\n")) {
          if (line.startsWith(":")) continue;
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
          if (field === "event") event.type = value;
          else if (field === "data") event.data += value;
          else if (field === "id") event.id = value;
        }
        if (event.data) dispatch(event);
        if (stopped) return;
      }
    }
  }

  (async () => {
    let failures = 0;
    while (!stopped) {
      try {
        await once();
        failures = 0;
      } catch (error) {
        if (stopped) return;
        if (error instanceof ApiError && error.status !== 503) {
          onError(error);
          return;
        }
        failures += 1;
      }
      // Each stream ends after a while by design; reconnect from the last event id.
      if (!stopped) await new Promise((resolve) => setTimeout(resolve, Math.min(5000, 300 * failures)));
    }
  })();
  return () => {
    stopped = true;
    if (controller) controller.abort();
  };
}
