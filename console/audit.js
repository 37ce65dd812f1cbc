// The audit view (admin): the log head to keep elsewhere, and a Verify
// button that walks the hash chain and shows `ok` or the first bad
// position.

import { el, fill } from "./dom.js";

export class Audit {
  constructor(root, { api }) {
    this.root = root;
    this.api = api;
    this.head = el("dl", { class: "facts", id: "audit-head" });
    this.result = el("div", { class: "verify-result", id: "verify-result", "aria-live": "polite" });
    this.button = el("button", { type: "button", id: "verify", class: "primary", onclick: () => this.verify() },
      "Verify the chain");
    fill(root,
      el("section", { class: "panel" },
        el("h2", {}, "Log head"),
        el("p", { class: "muted" },
          "Keep this position and hash somewhere outside the database: a rewritten or truncated chain no longer ends in it."),
        this.head,
        el("button", { type: "button", onclick: () => this.loadHead() }, "Refresh")),
      el("section", { class: "panel" },
        el("h2", {}, "Verify"),
        el("p", { class: "muted" }, "Recompute every entry's hash from its event and report the first bad position."),
        this.button,
        this.result));
  }

  async loadHead() {
    fill(this.head, el("dd", { class: "muted" }, "loading…"));
    try {
      const position = await this.api.head();
      if (position === null) throw new Error("the service is not ready");
      let hash = "—";
      if (position > 0) {
        const page = await this.api.auditEvents({ after: position - 1, limit: 1 });
        hash = page.events?.[0]?.hash ?? "—";
      }
      this.showHead(position, hash);
    } catch (error) {
      fill(this.head, el("dd", { class: "error" }, error.message));
    }
  }

  showHead(position, hash) {
    this.head.setAttribute("data-position", String(position));
    fill(this.head,
      el("dt", {}, "Position"), el("dd", {}, el("strong", {}, String(position))),
      el("dt", {}, "Hash"), el("dd", {}, el("code", { class: "hash" }, hash)));
  }

  async verify() {
    this.button.disabled = true;
    this.result.removeAttribute("data-ok");
    this.result.className = "verify-result";
    fill(this.result, el("p", { class: "muted" }, "verifying…"));
    try {
      const report = await this.api.verify();
      this.result.setAttribute("data-ok", String(report.ok === true));
      if (report.ok === true) {
        this.result.className = "verify-result ok";
        fill(this.result,
          el("p", { class: "verdict" }, "ok"),
          el("p", {}, `${report.checked} entries checked; the chain is intact up to position ${report.head_position}.`));
        this.showHead(report.head_position, report.head_hash ?? "—");
      } else {
        this.result.className = "verify-result bad";
        fill(this.result,
          el("p", { class: "verdict" }, `broken at position ${report.first_bad_position}`),
          el("p", {}, report.reason ?? ""));
      }
    } catch (error) {
      this.result.className = "verify-result bad";
      fill(this.result, el("p", { class: "error" }, error.message));
    } finally {
      this.button.disabled = false;
    }
  }
}
