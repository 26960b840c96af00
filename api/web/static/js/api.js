// The JSON API, with its two error shapes: 422 `{detail: [{loc, msg, type}]}` and `{detail: "sentence"}`.
// Every call relies on the HttpOnly session cookie (same-origin fetch sends it); the page never
// holds an API key. A 401 from any call but the sign-in ones means the session ended.

export class HttpError extends Error {
  constructor(status, body) {
    const detail = body?.detail;
    const message = typeof detail === "string"
      ? detail
      : Array.isArray(detail)
        ? detail.map((d) => d.msg).join("; ")
        : `The server answered ${status}.`;
    super(message);
    this.status = status;
    this.fields = Array.isArray(detail) ? detail : [];
  }
}

let unauthorized = () => {};

/** Call `handler` whenever the server says the session is gone (HTTP 401, WebSocket 4401). */
export function onUnauthorized(handler) {
  unauthorized = handler;
}

/** Report a lost session found outside `api()` (the job WebSocket's close code 4401). */
export function reportUnauthorized() {
  unauthorized();
}

export async function api(method, path, body) {
  const init = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
  if (body instanceof FormData) {
    init.body = body;
  } else if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new HttpError(0, { detail: "The server could not be reached. Check the connection and try again." });
  }
  const data = await response.json().catch(() => null); // 204 has no body
  if (!response.ok) {
    // `/api/session` answers 401 for "not signed in yet" and for a wrong key: the sign-in form handles those.
    if (response.status === 401 && !path.startsWith("/api/session")) unauthorized();
    throw new HttpError(response.status, data);
  }
  return data;
}

export const get = (path) => api("GET", path);
export const post = (path, body) => api("POST", path, body);
export const del = (path) => api("DELETE", path);

/** The WebSocket URL of a job's live status (the browser sends the session cookie with the handshake). */
export function jobSocketUrl(jobId) {
  const url = new URL(`/ws/jobs/${encodeURIComponent(jobId)}`, window.location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.href;
}
