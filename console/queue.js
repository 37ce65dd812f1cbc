// The A2A queue, per target: the requests parked for a busy workspace, in
// drain order (priority, then first in first out), with attempts, expiry
// and how many still wait.

import { el, fill, idSpan, relative, statusChip, time } from "./dom.js";

const PRIORITY = { 100: "critical", 50: "task", 10: "info" };

export class Queue {
  /**
   * @param {HTMLElement} root
   * @param {object} options
   * @param {import("./api.js").Api} options.api
   * @param {(id: string) => void} options.onOpen  open a delegation
   */
  constructor(root, { api, onOpen }) {
    this.root = root;
    this.api = api;
    this.onOpen = onOpen;
    this.targets = [];
    this.busy = false;
    this.again = false;
    this.list = el("div", { class: "queues" });
    this.status = el("p", { class: "muted" });
    fill(root,
      el("div", { class: "toolbar" },
        el("button", { type: "button", onclick: () => this.reload() }, "Refresh"),
        this.status),
      this.list);
  }

  /** Live: queue news arrived. The queue view can be a moment behind the
   * feed, so look now and once more a second later. */
  news() {
    this.reload();
    clearTimeout(this.later);
    this.later = setTimeout(() => this.reload(), 1000);
  }

  /** The targets whose queues to show. */
  setTargets(targets, why) {
    this.targets = targets;
    this.why = why;
    this.reload();
  }

  async reload() {
    if (this.root.hidden) return;
    if (this.busy) {
      this.again = true;
      return;
    }
    this.busy = true;
    try {
      if (!this.targets.length) {
        fill(this.status, this.why || "No queue has held an item yet.");
        this.list.replaceChildren();
        return;
      }
      const queues = await Promise.all(this.targets.map((target) =>
        this.api.queue(target).then((queue) => ({ target, queue }), (error) => ({ target, error }))));
      fill(this.status, `${queues.length} target${queues.length === 1 ? "" : "s"}; items in drain order`);
      this.list.replaceChildren(...queues.map(({ target, queue, error }) => this.section(target, queue, error)));
    } finally {
      this.busy = false;
      if (this.again) {
        this.again = false;
        this.reload();
      }
    }
  }

  section(target, queue, error) {
    if (error) {
      return el("section", { class: "queue", "data-target": target },
        el("h2", {}, "Target ", idSpan(target)), el("p", { class: "error" }, error.message));
    }
    const items = Array.isArray(queue.items) ? queue.items : [];
    return el("section", { class: "queue", "data-target": target, "data-depth": String(queue.depth) },
      el("h2", {}, "Target ", idSpan(target),
        el("span", { class: "depth" }, `depth ${queue.depth}`)),
      items.length
        ? el("table", { class: "rows" },
          el("thead", {}, el("tr", {},
            ["#", "Item", "From", "Priority", "Status", "Attempts", "Enqueued", "Expires", "Last error", "Delegation"]
              .map((h) => el("th", {}, h)))),
          el("tbody", {}, items.map((item, index) => el("tr", { "data-queue-id": item.queue_id, "data-status": item.status },
            el("td", {}, String(index + 1)),
            el("td", {}, idSpan(item.queue_id)),
            el("td", {}, idSpan(item.caller_id)),
            el("td", {}, `${PRIORITY[item.priority] ?? "priority"} (${item.priority})`),
            el("td", {}, statusChip(item.status)),
            el("td", {}, String(item.attempts)),
            el("td", { class: "nowrap" }, time(item.enqueued_at)),
            el("td", { class: "nowrap" }, item.expires_at ? `${time(item.expires_at)} (${relative(item.expires_at)})` : "never"),
            el("td", { class: "summary" }, item.last_error ? el("span", { class: "error" }, item.last_error) : ""),
            el("td", {}, item.delegation_id
              ? el("button", { type: "button", class: "link", onclick: () => this.onOpen(item.delegation_id) },
                idSpan(item.delegation_id))
              : "—")))))
        : el("p", { class: "muted" }, "empty"));
  }
}
