// The JSON API, with its two error shapes: 422 `{detail: [{loc, msg, type}]}` and `{detail: "sentence"}`.

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

export async function api(method, path, body) {
  const init = { method, headers: { Accept: "application/json" } };
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
  const data = await response.json().catch(() => null);
  if (!response.ok) throw new HttpError(response.status, data);
  return data;
}

export const get = (path) => api("GET", path);
export const post = (path, body) => api("POST", path, body);

/** The WebSocket URL of a job's live status. */
export function jobSocketUrl(jobId) {
  const url = new URL(`/ws/jobs/${encodeURIComponent(jobId)}`, window.location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.href;
}
