// The REST API, as the console uses it: the token goes in the
// Authorization header (never in a URL), errors come back as {error}.

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export class Api {
  constructor(token) {
    this.token = token;
  }

  /** GET a path of this origin; resolves to the JSON body. */
  async get(path, params = {}) {
    const query = new URLSearchParams();
    for (const [name, value] of Object.entries(params)) {
      if (value !== undefined && value !== null && value !== "") query.set(name, String(value));
    }
    const url = query.size ? `${path}?${query}` : path;
    return this.send(url, { method: "GET" });
  }

  /** POST a JSON body to a path of this origin; resolves to the JSON body. */
  post(path, body) {
    return this.send(path, {
      method: "POST",
      body: JSON.stringify(body),
      headers: { "Content-Type": "application/json" },
    });
  }

  async send(url, { method, body: payload, headers = {} }) {
    let response;
    try {
      response = await fetch(url, {
        method,
        body: payload,
        headers: { ...headers, Authorization: `Bearer ${this.token}`, Accept: "application/json" },
        cache: "no-store",
      });
    } catch (error) {
      throw new ApiError(0, `the service did not answer (${error.message})`);
    }
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    if (!response.ok) {
      const message = body && typeof body.error === "string" ? body.error : response.statusText;
      throw new ApiError(response.status, message || `HTTP ${response.status}`);
    }
    return body;
  }

  whoami() {
    return this.get("/console/whoami");
  }

  delegation(workspaceId, delegationId) {
    return this.get(`/workspaces/${enc(workspaceId)}/delegations/${enc(delegationId)}`);
  }

  /** Withdraw a delegation (its source, or the admin on its behalf). */
  cancel(sourceId, delegationId, reason) {
    return this.post(
      `/workspaces/${enc(sourceId)}/delegations/${enc(delegationId)}/cancel`,
      reason ? { reason } : {});
  }

  activity(workspaceId, params) {
    return this.get(`/workspaces/${enc(workspaceId)}/activity`, params);
  }

  queue(workspaceId) {
    return this.get(`/workspaces/${enc(workspaceId)}/a2a/queue`, { limit: 200 });
  }

  auditStream(delegationId, asOf) {
    return this.get(`/audit/streams/delegation/${enc(delegationId)}`, { as_of: asOf });
  }

  auditEvents(params) {
    return this.get("/audit/events", params);
  }

  verify() {
    return this.get("/audit/verify");
  }

  /** The log head position (public; no token needed). */
  async head() {
    const ready = await fetch("/readyz", { cache: "no-store" }).then((r) => r.json());
    return typeof ready.head === "number" ? ready.head : null;
  }
}

function enc(part) {
  return encodeURIComponent(String(part));
}
