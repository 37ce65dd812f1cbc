// One delegation in full: task, parties, outcome, status history — and for
// the admin a time-travel slider over its audit stream, showing the state
// the write path folds from the events up to each position.

import { el, fill, statusChip, time, label } from "./dom.js";

/** Asking again while the view is behind the feed: 100 ms, doubling, 6 times. */
const RETRIES = 6;
const RETRY_MS = 100;

export class Detail {
  /**
   * @param {HTMLElement} root  the drawer
   * @param {object} options
   * @param {import("./api.js").Api} options.api
   * @param {{role: string, workspace_id?: string}} options.viewer
   * @param {import("./board.js").Board} options.board
   */
  constructor(root, { api, viewer, board }) {
    this.root = root;
    this.api = api;
    this.viewer = viewer;
    this.board = board;
    this.id = null;
    this.seq = 0;
    this.loading = false;
    this.again = false;
    this.stream = null;
    this.body = el("div", { class: "detail-body" });
    this.travel = el("section", { class: "travel", hidden: true });
    this.root.replaceChildren(
      el("header", { class: "drawer-head" },
        el("h2", {}, "Delegation"),
        el("button", { type: "button", class: "close", "aria-label": "Close", onclick: () => this.close() }, "×")),
      this.body,
      this.travel);
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && this.id) this.close();
    });
  }

  open(id) {
    this.id = id;
    this.stream = null;
    this.root.hidden = false;
    this.root.setAttribute("data-delegation-id", id);
    fill(this.body, el("p", { class: "muted" }, "loading…"));
    this.travel.hidden = true;
    this.reload();
  }

  close() {
    this.id = null;
    this.seq += 1;
    this.root.hidden = true;
    this.root.removeAttribute("data-delegation-id");
  }

  /** Live: the feed touched these delegations. */
  touched(ids) {
    if (this.id && ids.has(this.id)) this.reload();
  }

  /** Fetch again; at most one load in flight, one more queued behind it.
   * The feed can be a moment ahead of the delegations view: while the view
   * still shows another status than the board, ask again a little later. */
  async reload(attempt = 0) {
    if (this.loading) {
      this.again = true;
      return;
    }
    let behind = false;
    this.loading = true;
    const seq = ++this.seq;
    const id = this.id;
    try {
      const item = this.board.get(id);
      const workspace = this.viewer.workspace_id ?? item?.source;
      const [detail, stream] = await Promise.all([
        workspace ? this.api.delegation(workspace, id) : Promise.resolve(null),
        this.viewer.role === "admin" ? this.api.auditStream(id).catch(() => null) : Promise.resolve(null),
      ]);
      if (seq !== this.seq) return;
      this.draw(detail, item);
      if (stream) this.drawTravel(stream);
      const now = this.board.get(id);
      behind = !!detail && !!now && detail.status !== now.status;
    } catch (error) {
      if (seq === this.seq) fill(this.body, el("p", { class: "error" }, error.message));
    } finally {
      this.loading = false;
      if (this.again && this.id) {
        this.again = false;
        this.reload();
      } else if (behind && this.id === id && attempt < RETRIES) {
        setTimeout(() => {
          if (this.id === id) this.reload(attempt + 1);
        }, RETRY_MS * 2 ** attempt);
      }
    }
  }

  draw(detail, item) {
    if (!detail) {
      fill(this.body, el("p", { class: "muted" }, "This delegation is not in the delegations view yet."));
      return;
    }
    this.root.setAttribute("data-status", detail.status);
    const outcome = [];
    if (typeof detail.result === "string") {
      outcome.push(el("h3", {}, "Result"), el("pre", { class: "text result" }, detail.result));
    }
    if (typeof detail.error === "string") {
      outcome.push(el("h3", {}, "Error"), el("pre", { class: "text error" }, detail.error));
    }
    if (typeof detail.question === "string") {
      outcome.push(el("h3", {}, "Question"), el("pre", { class: "text question" }, detail.question));
    }
    const history = Array.isArray(detail.history) ? detail.history : [];
    fill(this.body,
      this.cancelControl(detail),
      el("p", { class: "detail-id" }, el("code", {}, detail.delegation_id), statusChip(detail.status)),
      el("h3", {}, "Task"),
      el("pre", { class: "text task" }, detail.task ?? item?.task ?? ""),
      el("dl", { class: "facts" },
        el("dt", {}, "From"), el("dd", {}, el("code", {}, detail.source_id), this.you(detail.source_id)),
        el("dt", {}, "To"), el("dd", {}, el("code", {}, detail.target_id), this.you(detail.target_id)),
        el("dt", {}, "Created"), el("dd", {}, time(detail.created_at)),
        el("dt", {}, "Updated"), el("dd", {}, time(detail.updated_at)),
        detail.queue_id ? [el("dt", {}, "Queue item"), el("dd", {}, el("code", {}, detail.queue_id))] : null),
      outcome,
      el("h3", {}, "History"),
      el("ol", { class: "history" },
        history.map((step) => el("li", { "data-status": step.status },
          statusChip(step.status), el("time", { datetime: step.at }, time(step.at))))));
  }

  /** A Cancel button while the delegation is live, for its caller (or
   * the admin): withdraws it, and the feed then moves its card. */
  cancelControl(detail) {
    const ended = ["completed", "failed", "canceled"].includes(detail.status);
    const mayCancel = this.viewer.role === "admin" || this.viewer.workspace_id === detail.source_id;
    if (ended || !mayCancel) return null;
    const said = el("span", { class: "error cancel-error", role: "status" });
    const button = el("button", { type: "button", id: "cancel-delegation", class: "quiet" }, "Cancel delegation");
    button.addEventListener("click", async () => {
      button.disabled = true;
      said.textContent = "";
      try {
        await this.api.cancel(detail.source_id, detail.delegation_id, "canceled from the console");
        this.reload();
      } catch (error) {
        said.textContent = error.message;
        button.disabled = false;
      }
    });
    return el("p", { class: "detail-actions" }, button, " ", said);
  }

  you(id) {
    return id && id === this.viewer.workspace_id ? el("span", { class: "muted" }, " (you)") : null;
  }

  /** The slider over the audit stream's positions. */
  drawTravel(stream) {
    const events = Array.isArray(stream.events) ? stream.events : [];
    if (!events.length) return;
    const previous = this.stream;
    const atEnd = !previous || this.slider?.valueAsNumber === previous.events.length - 1;
    this.stream = { events };
    const slider = el("input", {
      type: "range", id: "time-travel", min: "0", max: String(events.length - 1), step: "1",
      value: String(atEnd ? events.length - 1 : Math.min(this.slider.valueAsNumber, events.length - 1)),
      "aria-label": "Position in the audit stream",
    });
    this.slider = slider;
    const caption = el("p", { class: "travel-caption" });
    const ticks = el("ol", { class: "travel-events" });
    const state = el("div", { class: "travel-state" });
    fill(this.travel,
      el("h3", {}, "Time travel ", el("span", { class: "muted" }, "(audit stream)")),
      slider, caption, ticks, state);
    this.travel.hidden = false;
    let seq = 0;
    const show = async () => {
      const index = slider.valueAsNumber;
      const event = events[index];
      fill(caption, "position ", el("strong", {}, String(event.position)),
        ` · event ${index + 1} of ${events.length} · `, el("code", {}, event.event_type),
        " · ", time(event.recorded_at));
      fill(ticks, events.map((e, i) => el("li", {
        class: i <= index ? "past" : "future",
        title: `show the state as of position ${e.position}`,
        onclick: () => {
          slider.value = String(i);
          show();
        },
      }, el("code", {}, String(e.position)), " ", e.event_type)));
      const mine = ++seq;
      try {
        const folded = await this.api.auditStream(this.id, event.position);
        if (mine !== seq) return;
        drawState(state, folded);
      } catch (error) {
        if (mine === seq) fill(state, el("p", { class: "error" }, error.message));
      }
    };
    slider.addEventListener("input", show);
    show();
  }
}

/** The folded state as a table of its fields. */
function drawState(node, folded) {
  const state = folded?.state && typeof folded.state === "object" ? folded.state : {};
  node.setAttribute("data-as-of", String(folded?.as_of_position ?? ""));
  node.setAttribute("data-state-status", typeof state.status === "string" ? state.status : "");
  fill(node,
    el("p", { class: "travel-status" }, `status as of position ${folded?.as_of_position}: `,
      statusChip(typeof state.status === "string" ? state.status : null)),
    el("table", { class: "state" },
      el("caption", {}, "the aggregate's state, folded from the events up to here"),
      el("tbody", {}, Object.entries(state).map(([key, value]) =>
        el("tr", {}, el("th", { scope: "row" }, label(key)), el("td", {}, show(value)))))));
}

function show(value) {
  if (value === null || value === undefined) return el("span", { class: "muted" }, "—");
  if (typeof value === "string") return value;
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  return el("code", { class: "json" }, JSON.stringify(value));
}
