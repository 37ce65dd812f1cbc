// The activity feed of one workspace: newest first; rows that arrive later
// are fetched with the since_id cursor (rows strictly after the newest one
// shown) and put on top, so nothing is missed or shown twice.

import { el, fill, idSpan, statusChip, time } from "./dom.js";

const PAGE = 50;
const MAX_LIMIT = 1000;
/** Asking again for rows the feed announced: 100 ms, doubling, 6 times. */
const RETRIES = 6;
const RETRY_MS = 100;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export class Activity {
  constructor(root, { api, workspaces }) {
    this.root = root;
    this.api = api;
    this.workspaces = workspaces;
    this.workspace = null;
    this.rows = [];
    this.limit = PAGE;
    this.seq = 0;
    this.busy = false;
    this.again = false;
    this.types = new Set(["delegation", "a2a_receive"]);

    this.type = el("select", { id: "activity-type", "aria-label": "Type" });
    this.source = el("input", {
      id: "activity-source", list: "activity-sources", placeholder: "any source (workspace id)",
      spellcheck: "false", autocomplete: "off", "aria-label": "Source workspace",
    });
    this.sources = el("datalist", { id: "activity-sources" });
    this.status = el("p", { class: "muted activity-status" });
    this.table = el("tbody", {});
    this.more = el("button", { type: "button", class: "more", hidden: true, onclick: () => this.loadMore() });
    this.drawTypes();
    this.type.addEventListener("change", () => this.reload());
    this.source.addEventListener("change", () => this.reload());
    fill(root,
      el("div", { class: "toolbar" },
        el("label", {}, "Type ", this.type),
        el("label", {}, "Source ", this.source, this.sources),
        el("button", { type: "button", onclick: () => this.reload() }, "Refresh"),
        this.status),
      el("table", { class: "rows", id: "activity-table" },
        el("thead", {}, el("tr", {},
          ["Time", "Type", "Method", "Summary", "Status", "From → to", "Detail"].map((h) => el("th", {}, h)))),
        this.table),
      this.more);
  }

  /** Show this workspace's feed (loaded afresh). */
  setWorkspace(workspace) {
    this.workspace = workspace;
    this.reload();
  }

  drawTypes() {
    const chosen = this.type.value;
    fill(this.type, el("option", { value: "" }, "any type"),
      [...this.types].sort().map((t) => el("option", { value: t }, t)));
    this.type.value = chosen;
  }

  filters() {
    const source = this.source.value.trim();
    if (source && !UUID.test(source)) {
      throw new Error("the source must be a workspace id (a UUID)");
    }
    return { type: this.type.value, source };
  }

  async reload() {
    const seq = ++this.seq;
    fill(this.sources, [...this.workspaces()].map((id) => el("option", { value: id })));
    if (!this.workspace) {
      this.rows = [];
      this.draw("Choose a workspace above to see its activity.");
      return;
    }
    try {
      const rows = await this.api.activity(this.workspace, { ...this.filters(), limit: this.limit });
      if (seq !== this.seq) return;
      this.rows = rows;
      this.draw();
    } catch (error) {
      if (seq === this.seq) {
        this.rows = [];
        this.draw(error.message, true);
      }
    }
  }

  loadMore() {
    this.limit = Math.min(this.limit + PAGE, MAX_LIMIT);
    this.reload();
  }

  /** Live: something happened; fetch the rows after the newest shown.
   * The feed can be a moment ahead of the activity view, so when nothing
   * new is there yet, ask again a little later (a few times, backing off). */
  async newer(attempt = 0) {
    if (!this.workspace || this.root.hidden) return;
    if (this.busy) {
      this.again = true;
      return;
    }
    this.busy = true;
    const seq = this.seq;
    let gained = 0;
    try {
      if (!this.rows.length) {
        const rows = await this.api.activity(this.workspace, { ...this.filters(), limit: this.limit });
        if (seq !== this.seq) return;
        gained = rows.length;
        this.rows = rows;
      } else {
        let cursor = this.rows[0].id;
        for (;;) {
          const page = await this.api.activity(this.workspace, {
            ...this.filters(), since_id: cursor, limit: PAGE,
          });
          if (seq !== this.seq) return;
          if (!page.length) break;
          gained += page.length;
          this.rows = page.slice().reverse().concat(this.rows);
          cursor = page[page.length - 1].id;
          if (page.length < PAGE) break;
        }
      }
      this.draw();
    } catch (error) {
      // 410: the cursor row is gone (another filter, another workspace).
      if (seq === this.seq) this.reload();
      gained = -1;
    } finally {
      this.busy = false;
      if (this.again) {
        this.again = false;
        this.newer();
      } else if (gained === 0 && attempt < RETRIES) {
        setTimeout(() => this.newer(attempt + 1), RETRY_MS * 2 ** attempt);
      }
    }
  }

  draw(message = "", isError = false) {
    for (const row of this.rows) if (row.activity_type) this.types.add(row.activity_type);
    this.drawTypes();
    if (message) {
      fill(this.status, message);
      this.status.className = isError ? "error activity-status" : "muted activity-status";
    } else {
      fill(this.status, `${this.rows.length} row${this.rows.length === 1 ? "" : "s"}, newest first`);
      this.status.className = "muted activity-status";
    }
    this.table.replaceChildren(...this.rows.map((row) => el("tr", { "data-activity-id": row.id },
      el("td", { class: "nowrap" }, time(row.created_at)),
      el("td", {}, row.activity_type),
      el("td", {}, row.method ?? ""),
      el("td", { class: "summary" }, row.summary ?? ""),
      el("td", {}, row.status ? statusChip(row.status) : ""),
      el("td", { class: "nowrap" }, row.source_id ? idSpan(row.source_id) : "—", " → ",
        row.target_id ? idSpan(row.target_id) : "—"),
      el("td", { class: "summary" }, row.error_detail ? el("span", { class: "error" }, row.error_detail) : ""))));
    const full = this.rows.length >= this.limit && this.limit < MAX_LIMIT;
    this.more.hidden = !full;
    this.more.textContent = "show older rows";
  }
}
