// The board: every delegation the token may see, as cards grouped by
// status, kept current by the live feed.
//
// The model (one entry per delegation) takes every message; the view draws
// at most `limit` cards per column (newest activity first, "show more" for
// the rest) and redraws only the columns a batch touched, reusing card
// elements — so 10,000 delegations cost a few hundred elements, not 10,000.
// Each card carries data-delegation-id and data-status, always the
// delegation's current status.

import { el, fill, idSpan, label, time, KNOWN_STATUSES } from "./dom.js";

/** Columns in lifecycle order; the first seven are always shown, the
 * others when they hold a card. Unknown statuses get a column of their own
 * after these. */
const COLUMN_ORDER = [
  "pending", "dispatched", "queued", "received", "in_progress",
  "input_required", "completed", "failed", "canceled",
];
const ALWAYS_SHOWN = new Set(COLUMN_ORDER.slice(0, 5).concat(["completed", "failed"]));
/** Cards drawn per column before "show more". */
export const PAGE = 40;

/** What a message says the delegation's status now is (null: no change). */
export function statusOf(message) {
  const payload = message.payload ?? {};
  switch (message.type) {
    case "DELEGATION_SENT":
      return typeof payload.status === "string" ? payload.status : "pending";
    case "DELEGATION_COMPLETE":
      return "completed";
    case "DELEGATION_FAILED":
      return "failed";
    case "DELEGATION_INPUT_REQUIRED":
      return "input_required";
    case "DELEGATION_CANCELED":
    case "DELEGATION_CANCELLED":
      return "canceled";
    default:
      if (typeof payload.status === "string" && payload.status) return payload.status;
      // An unknown DELEGATION_<X> without a status: X, lowercased.
      if (typeof message.type === "string" && message.type.startsWith("DELEGATION_")) {
        return message.type.slice("DELEGATION_".length).toLowerCase();
      }
      return null;
  }
}

export class Board {
  /**
   * @param {HTMLElement} root  the element holding the columns
   * @param {object} options
   * @param {{role: string, workspace_id?: string}} options.viewer
   * @param {(id: string) => void} options.onOpen  a card was chosen
   * @param {HTMLElement} options.summary  where the totals go
   */
  constructor(root, { viewer, onOpen, summary }) {
    this.root = root;
    this.viewer = viewer;
    this.onOpen = onOpen;
    this.summary = summary;
    this.items = new Map();
    this.byStatus = new Map();
    this.columns = new Map();
    this.dirty = new Set();
    this.cards = new Map();
    this.workspaces = new Set();
    this.filter = { workspace: "", text: "" };
    for (const status of COLUMN_ORDER) {
      this.byStatus.set(status, new Set());
      this.dirty.add(status);
    }
    this.layout();
    this.render();
  }

  /** Apply a batch of feed messages to the model; returns the ids of the
   * delegations they touched. */
  apply(messages) {
    const touched = new Set();
    for (const message of messages) {
      const id = message.delegation_id;
      if (typeof id !== "string" || typeof message.type !== "string") continue;
      if (!message.type.startsWith("DELEGATION_")) continue;
      const payload = message.payload ?? {};
      let item = this.items.get(id);
      if (!item) {
        item = { id, status: null, task: "", source: null, target: null, created: message.at };
        this.items.set(id, item);
      }
      if (typeof message.workspace_id === "string") item.source = message.workspace_id;
      if (typeof payload.target_id === "string") item.target = payload.target_id;
      if (message.type === "DELEGATION_SENT") {
        item.task = typeof payload.task_preview === "string" ? payload.task_preview : "";
        item.created = message.at;
      }
      if (typeof payload.error === "string") item.error = payload.error;
      if (typeof payload.response_preview === "string") item.result = payload.response_preview;
      if (typeof payload.question === "string") item.question = payload.question;
      item.updated = message.at;
      item.position = message.position;
      const status = statusOf(message);
      if (status && status !== item.status) {
        if (item.status !== null) {
          this.byStatus.get(item.status)?.delete(id);
          this.dirty.add(item.status);
        }
        item.status = status;
        if (!this.byStatus.has(status)) this.byStatus.set(status, new Set());
        this.byStatus.get(status).add(id);
      }
      if (item.status !== null) this.dirty.add(item.status);
      for (const workspace of [item.source, item.target]) {
        if (workspace && !this.workspaces.has(workspace)) this.workspaces.add(workspace);
      }
      touched.add(id);
    }
    return touched;
  }

  get(id) {
    return this.items.get(id);
  }

  setFilter(filter) {
    Object.assign(this.filter, filter);
    for (const status of this.byStatus.keys()) this.dirty.add(status);
    this.render();
  }

  matches(item) {
    const { workspace, text } = this.filter;
    if (workspace && item.source !== workspace && item.target !== workspace) return false;
    if (text) {
      const needle = text.toLowerCase();
      return item.id.includes(needle) || item.task.toLowerCase().includes(needle);
    }
    return true;
  }

  /** While a replay runs: only the counts, no cards (cheap per batch). */
  drawCounts() {
    for (const [status, ids] of this.byStatus) {
      const column = this.columns.get(status);
      if (column) column.count.textContent = String(ids.size);
    }
    fill(this.summary, "replaying the feed: ", el("strong", {}, this.items.size.toLocaleString("en")),
      " delegations so far…");
  }

  /** Redraw the columns that changed since the last render. */
  render() {
    if (!this.dirty.size) return;
    let newColumn = false;
    for (const status of this.dirty) {
      if (!this.columns.has(status)) {
        this.columns.set(status, this.column(status));
        newColumn = true;
      }
    }
    if (newColumn) this.layout();
    for (const status of this.dirty) this.drawColumn(status);
    this.dirty.clear();
    // Forget the elements of cards no longer drawn.
    for (const [id, card] of this.cards) {
      if (!card.node.isConnected) this.cards.delete(id);
    }
    this.drawSummary();
  }

  layout() {
    for (const status of COLUMN_ORDER) {
      if (!this.columns.has(status)) this.columns.set(status, this.column(status));
    }
    const known = COLUMN_ORDER.map((status) => this.columns.get(status));
    const others = [...this.columns.entries()]
      .filter(([status]) => !COLUMN_ORDER.includes(status))
      .map(([, column]) => column);
    this.root.replaceChildren(...known.map((c) => c.node), ...others.map((c) => c.node));
    for (const [status, column] of this.columns) {
      column.node.hidden = !ALWAYS_SHOWN.has(status) && !(this.byStatus.get(status)?.size);
    }
  }

  column(status) {
    const colour = KNOWN_STATUSES.includes(status) ? status : "other";
    const count = el("span", { class: "count" }, "0");
    const list = el("div", { class: "cards" });
    const more = el("button", { class: "more", type: "button", hidden: true });
    const column = {
      limit: PAGE,
      count,
      list,
      more,
      node: el("section", { class: `column status-${colour}`, "data-column": status },
        el("h2", {}, el("span", { class: "dot" }), el("span", { class: "name" }, label(status)), count),
        list,
        more),
    };
    more.addEventListener("click", () => {
      column.limit += PAGE;
      this.dirty.add(status);
      this.render();
    });
    return column;
  }

  drawColumn(status) {
    const column = this.columns.get(status);
    const ids = this.byStatus.get(status) ?? new Set();
    column.node.hidden = !ALWAYS_SHOWN.has(status) && ids.size === 0;
    const shown = [];
    for (const id of ids) {
      const item = this.items.get(id);
      if (item && this.matches(item)) shown.push(item);
    }
    shown.sort((a, b) => b.position - a.position);
    column.count.textContent = String(shown.length);
    const visible = shown.slice(0, column.limit);
    if (visible.length) {
      column.list.replaceChildren(...visible.map((item) => this.card(item)));
    } else {
      fill(column.list, el("p", { class: "empty" }, "nothing here"));
    }
    const hidden = shown.length - visible.length;
    column.more.hidden = hidden <= 0;
    column.more.textContent = `show ${Math.min(PAGE, hidden)} more (${hidden} not shown)`;
  }

  /** The card of an item: reused while the item did not change. */
  card(item) {
    const version = `${item.position}:${item.status}`;
    const known = this.cards.get(item.id);
    if (known && known.version === version) return known.node;
    const node = known?.node ?? el("article", {
      class: "card",
      tabindex: "0",
      "data-delegation-id": item.id,
      onclick: () => this.onOpen(item.id),
      onkeydown: (event) => {
        if (event.key === "Enter" || event.key === " ") {
          event.preventDefault();
          this.onOpen(item.id);
        }
      },
    });
    node.setAttribute("data-status", item.status);
    node.className = `card status-${KNOWN_STATUSES.includes(item.status) ? item.status : "other"}`;
    fill(node,
      el("header", {},
        idSpan(item.id),
        KNOWN_STATUSES.includes(item.status) ? null : el("span", { class: "chip status-other" }, label(item.status)),
        el("time", { datetime: item.updated ?? "" }, time(item.updated))),
      el("p", { class: "task" }, item.task || "(no task text)"),
      this.parties(item),
      this.outcome(item));
    this.cards.set(item.id, { node, version });
    return node;
  }

  parties(item) {
    const me = this.viewer.workspace_id;
    if (me && item.source === me) return el("p", { class: "parties" }, "to ", idSpan(item.target));
    if (me && item.target === me) return el("p", { class: "parties" }, "from ", idSpan(item.source));
    return el("p", { class: "parties" }, idSpan(item.source), " → ", idSpan(item.target));
  }

  outcome(item) {
    const box = (kind, text) => el("p", { class: `outcome ${kind}` }, el("span", {}, text));
    if (item.status === "failed" && item.error) return box("error", item.error);
    if (item.status === "completed" && item.result) return box("result", item.result);
    if (item.status === "input_required" && item.question) return box("question", item.question);
    return null;
  }

  drawSummary() {
    let total = 0;
    let open = 0;
    let completed = 0;
    let failed = 0;
    for (const item of this.items.values()) {
      if (!this.matches(item)) continue;
      total += 1;
      if (item.status === "completed") completed += 1;
      else if (item.status === "failed") failed += 1;
      else if (item.status !== "canceled") open += 1;
    }
    fill(this.summary,
      el("strong", {}, String(total)), ` delegation${total === 1 ? "" : "s"} · `,
      el("strong", {}, String(open)), " open · ",
      el("strong", {}, String(completed)), " completed · ",
      el("strong", {}, String(failed)), " failed");
  }
}
