// The console's entry point: sign-in, then the board, activity, queue and
// audit views wired to one live feed.
//
// The token is typed into the form or given as /console#token=<token> (a
// fragment never reaches the server; it is removed from the address bar at
// once). It is kept in this tab's sessionStorage only, sent in the
// Authorization header to the REST API and as ?token= to the websocket
// (browsers cannot set headers on a websocket).

import { Api, ApiError } from "./api.js";
import { Activity } from "./activity.js";
import { Audit } from "./audit.js";
import { Board } from "./board.js";
import { Detail } from "./detail.js";
import { el, fill, shortId } from "./dom.js";
import { Feed, CLOSE_GOING_AWAY, CLOSE_TOO_SLOW } from "./feed.js";
import { Queue } from "./queue.js";

const TOKEN_KEY = "ledger-console-token";
const $ = (id) => document.getElementById(id);

/** The token in the fragment (`#token=…`), removed from the URL. */
function takeFragmentToken() {
  if (!location.hash) return null;
  const token = new URLSearchParams(location.hash.slice(1)).get("token");
  history.replaceState(null, "", location.pathname + location.search);
  return token;
}

async function boot() {
  const given = takeFragmentToken();
  if (given) sessionStorage.setItem(TOKEN_KEY, given);
  $("sign-in-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token-input").value.trim();
    if (token) signIn(token);
  });
  // A link with another #token= opened in this tab: start over with it.
  addEventListener("hashchange", () => {
    const next = takeFragmentToken();
    if (next) {
      sessionStorage.setItem(TOKEN_KEY, next);
      location.reload();
    }
  });
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) signIn(token);
  else showSignIn("");
}

function showSignIn(message) {
  $("app").hidden = true;
  $("sign-in").hidden = false;
  fill($("sign-in-error"), message);
  $("token-input").focus();
}

async function signIn(token) {
  const api = new Api(token);
  let viewer;
  try {
    viewer = await api.whoami();
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      showSignIn("That token is not valid: use a workspace token or the admin token.");
    } else {
      showSignIn(`Could not sign in: ${error.message}`);
    }
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  $("token-input").value = "";
  $("sign-in").hidden = true;
  $("app").hidden = false;
  start(api, token, viewer);
}

function start(api, token, viewer) {
  const admin = viewer.role === "admin";
  document.documentElement.dataset.role = viewer.role;
  fill($("who"), admin
    ? el("span", { class: "role admin" }, "admin")
    : [el("span", { class: "role" }, "workspace"), " ",
      el("code", { title: viewer.workspace_id }, shortId(viewer.workspace_id))]);
  $("sign-out").addEventListener("click", () => {
    feed.stop();
    sessionStorage.removeItem(TOKEN_KEY);
    location.replace(location.pathname);
  });

  const board = new Board($("board"), { viewer, summary: $("board-summary"), onOpen: (id) => detail.open(id) });
  const detail = new Detail($("detail"), { api, viewer, board });
  const activity = new Activity($("activity-view"), { api, workspaces: () => board.workspaces });
  const queue = new Queue($("queue-view"), { api, onOpen: (id) => detail.open(id) });
  const audit = admin ? new Audit($("audit-view"), { api }) : null;
  const queueTargets = new Set();

  // The admin sees every workspace; a selector narrows the board and picks
  // the workspace for activity and queue.
  const select = $("workspace-select");
  select.hidden = !admin;
  let knownWorkspaces = 0;
  const drawWorkspaces = () => {
    if (!admin || board.workspaces.size === knownWorkspaces) return;
    knownWorkspaces = board.workspaces.size;
    const chosen = select.value;
    fill(select, el("option", { value: "" }, "all workspaces"),
      [...board.workspaces].sort().map((id) => el("option", { value: id }, id)));
    select.value = chosen;
  };
  const chosenWorkspace = () => (admin ? select.value || null : viewer.workspace_id);
  const targetsChanged = () => {
    if (!admin) queue.setTargets([viewer.workspace_id]);
    else if (select.value) queue.setTargets([select.value]);
    else queue.setTargets([...queueTargets].sort(), "No queue has held an item yet (choose a workspace to see its queue).");
  };
  select.addEventListener("change", () => {
    board.setFilter({ workspace: select.value });
    activity.setWorkspace(chosenWorkspace());
    targetsChanged();
  });
  let searchTimer = 0;
  $("board-search").addEventListener("input", (event) => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => board.setFilter({ text: event.target.value.trim() }), 150);
  });

  // Tabs.
  const views = { board: $("board-view"), activity: $("activity-view"), queue: $("queue-view"), audit: $("audit-view") };
  $("tab-audit").hidden = !admin;
  const show = (name) => {
    for (const [tab, view] of Object.entries(views)) {
      view.hidden = tab !== name;
      $(`tab-${tab}`).setAttribute("aria-selected", String(tab === name));
    }
    if (name === "activity") activity.setWorkspace(chosenWorkspace());
    if (name === "queue") targetsChanged();
    if (name === "audit" && audit) audit.loadHead();
  };
  for (const name of Object.keys(views)) $(`tab-${name}`).addEventListener("click", () => show(name));
  show("board");

  const state = $("feed-state");
  const position = $("feed-position");
  const feed = new Feed({
    token,
    head: () => api.head(),
    onMessages: (batch) => {
      const touched = board.apply(batch);
      // Live, every batch is drawn at once. During a replay only the counts
      // are: the cards are drawn once it caught up (drawing 10,000
      // delegations batch by batch would cost more than the replay).
      if (feed.caughtUp) {
        board.render();
        drawWorkspaces();
      } else {
        board.drawCounts();
      }
      let queueNews = false;
      for (const message of batch) {
        if (typeof message.type === "string" && message.type.startsWith("QUEUE_ITEM_")) {
          queueNews = true;
          if (typeof message.payload?.target_id === "string") queueTargets.add(message.payload.target_id);
        }
      }
      const last = batch[batch.length - 1].position;
      position.dataset.position = String(last);
      position.textContent = last.toLocaleString("en");
      // During the replay only the board follows; the other views load
      // once it caught up.
      if (!feed.caughtUp) return;
      detail.touched(touched);
      const me = chosenWorkspace();
      if (batch.some((m) => !me || m.workspace_id === me || m.payload?.target_id === me)) activity.newer();
      if (queueNews) {
        targetsChanged();
        queue.news();
      }
    },
    onState: (name, at) => {
      if (name === "live") {
        board.render();
        drawWorkspaces();
        // After a resumed replay: what the other views skipped meanwhile.
        if (feed.everCaughtUp) {
          if (detail.id) detail.reload();
          activity.newer();
          queue.reload();
        }
      }
      state.dataset.state = name;
      state.textContent = name;
      position.dataset.position = String(at);
      position.textContent = at.toLocaleString("en");
    },
    onNotice: (notice) => showNotice(notice),
    onCaughtUp: () => {
      // Time to board: from navigation start to the first paint after the
      // replay caught up (the frame after this one has painted the board).
      requestAnimationFrame(() => setTimeout(() => {
        const ms = Math.round(performance.now());
        document.documentElement.dataset.timeToBoard = String(ms);
        fill($("timing"), `board ready ${ms.toLocaleString("en")} ms after the page started loading · `
          + `${board.items.size.toLocaleString("en")} delegations`);
      }, 0));
    },
  });
  feed.start(0);
}

/** A visible notice when the server closes the feed, and when it resumed. */
let resumes = 0;
function showNotice(notice) {
  const box = $("notice");
  const why = notice.code === CLOSE_TOO_SLOW
    ? "this browser fell behind (4008, slow consumer)"
    : notice.code === CLOSE_GOING_AWAY
      ? "the server is going away (1001, shutting down)"
      : `the connection was interrupted (code ${notice.code})`;
  box.hidden = false;
  box.dataset.kind = notice.kind;
  box.dataset.closeCode = String(notice.code);
  if (notice.kind === "closed") {
    box.className = "notice warn";
    fill($("notice-text"),
      el("strong", {}, "Live feed closed: "), `${why}. `,
      notice.reason ? ["The server said: “", notice.reason, "”. "] : null,
      `Reconnecting from position ${notice.position.toLocaleString("en")}…`);
  } else {
    resumes += 1;
    box.className = "notice info";
    box.dataset.resumedFrom = String(notice.from);
    box.dataset.resumes = String(resumes);
    fill($("notice-text"),
      el("strong", {}, `Resumed from position ${notice.from.toLocaleString("en")}: `),
      `the server had closed the live feed because ${why}`,
      notice.reason ? [" — “", notice.reason, "”"] : null,
      ". Nothing was missed: the board replayed what it had not seen.");
  }
}

$("notice-close").addEventListener("click", () => {
  $("notice").hidden = true;
});

boot();
