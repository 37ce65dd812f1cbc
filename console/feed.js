// The live feed: one websocket, replay from a position then live, resumed
// from the last position whenever the server closes it.
//
// Messages are not applied one by one: they are queued as they arrive and
// handed over in one batch per animation frame (a replay of 10,000
// delegations is a few dozen batches, not 10,000 redraws).
//
// The server closes a consumer that fell behind with 4008 and, on shutdown,
// with 1001; both reasons end "…; last position delivered N; reconnect with
// from=N". The feed reports the close (a notice for people), reconnects
// from the last position it applied (which is that N: every message sent
// before the close frame has arrived) and reports the resume.

/** Quiet time after which a replay counts as caught up when the log head
 * itself is not visible to this token (a workspace sees only its own). */
const IDLE_CAUGHT_UP_MS = 400;
/** Longest a batch waits when animation frames do not come (hidden tab). */
const FLUSH_FALLBACK_MS = 100;
const RETRY_FIRST_MS = 500;
const RETRY_MAX_MS = 10_000;

export const CLOSE_TOO_SLOW = 4008;
export const CLOSE_GOING_AWAY = 1001;

export class Feed {
  /**
   * @param {object} options
   * @param {string} options.token
   * @param {() => Promise<number|null>} options.head  the log head now
   * @param {(messages: object[]) => void} options.onMessages  one batch, in position order
   * @param {(state: string, position: number) => void} options.onState
   *        "connecting" | "replaying" | "live" | "reconnecting"
   * @param {(notice: object) => void} options.onNotice
   * @param {() => void} options.onCaughtUp  the first time replay caught up
   */
  constructor(options) {
    this.options = options;
    this.position = 0;
    this.pending = [];
    this.socket = null;
    this.stopped = false;
    this.caughtUp = false;
    this.everCaughtUp = false;
    this.retryMs = RETRY_FIRST_MS;
    this.lastClose = null;
    this.frame = 0;
    this.fallback = 0;
    this.idle = 0;
    this.target = null;
    this.attempts = 0;
  }

  start(from = 0) {
    this.position = from;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.idle);
    if (this.socket) this.socket.close(1000, "signed out");
  }

  connect() {
    if (this.stopped) return;
    this.caughtUp = false;
    this.target = null;
    this.options.onState("connecting", this.position);
    // The head is asked for while the socket opens: the replay is caught
    // up once it reached the head as it was when the socket connected.
    const attempt = ++this.attempts;
    this.options.head().then(
      (head) => {
        if (attempt !== this.attempts) return;
        this.target = head;
        this.checkCaughtUp();
      },
      () => {},
    );
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    // batch: the replay comes in frames of many messages (a browser pays
    // a fixed cost per frame); live messages come one per frame.
    const query = new URLSearchParams({ from: String(this.position), token: this.options.token, batch: "true" });
    const socket = new WebSocket(`${scheme}://${location.host}/ws?${query}`);
    this.socket = socket;
    const from = this.position;
    socket.onopen = () => {
      this.options.onState("replaying", this.position);
      if (this.lastClose) {
        this.options.onNotice({ kind: "resumed", from, ...this.lastClose });
        this.lastClose = null;
      }
      this.armIdle();
      this.checkCaughtUp();
    };
    socket.onmessage = (event) => {
      this.pending.push(event.data);
      this.schedule();
    };
    socket.onclose = (event) => this.closed(socket, event);
  }

  closed(socket, event) {
    if (socket !== this.socket) return;
    this.flush();
    clearTimeout(this.idle);
    this.socket = null;
    if (this.stopped) return;
    const close = { code: event.code, reason: event.reason || "", position: this.position };
    const serverSaid = /last position delivered (\d+)/.exec(close.reason);
    if (serverSaid) close.serverPosition = Number(serverSaid[1]);
    this.lastClose = close;
    this.options.onNotice({ kind: "closed", ...close });
    this.options.onState("reconnecting", this.position);
    let delay;
    if (event.code === CLOSE_TOO_SLOW) {
      // Nothing is wrong with the server: catch up at once.
      delay = 0;
      this.retryMs = RETRY_FIRST_MS;
    } else {
      delay = this.retryMs;
      this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS);
    }
    setTimeout(() => this.connect(), delay);
  }

  schedule() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => this.flush());
    this.fallback = setTimeout(() => this.flush(), FLUSH_FALLBACK_MS);
  }

  /** Apply everything queued, as one batch. */
  flush() {
    cancelAnimationFrame(this.frame);
    clearTimeout(this.fallback);
    this.frame = 0;
    if (!this.pending.length) return;
    const texts = this.pending;
    this.pending = [];
    const batch = [];
    for (const text of texts) {
      let message;
      try {
        message = JSON.parse(text);
      } catch {
        continue;
      }
      for (const one of Array.isArray(message) ? message : [message]) {
        if (typeof one?.position !== "number" || one.position <= this.position) continue;
        this.position = one.position;
        batch.push(one);
      }
    }
    if (batch.length) this.options.onMessages(batch);
    if (!this.caughtUp) this.armIdle();
    this.checkCaughtUp();
  }

  armIdle() {
    clearTimeout(this.idle);
    this.idle = setTimeout(() => {
      this.flush();
      this.markCaughtUp();
    }, IDLE_CAUGHT_UP_MS);
  }

  checkCaughtUp() {
    if (!this.caughtUp && this.socket && this.target !== null && this.position >= this.target) {
      this.markCaughtUp();
    }
  }

  markCaughtUp() {
    if (this.caughtUp || !this.socket) return;
    this.caughtUp = true;
    this.retryMs = RETRY_FIRST_MS;
    clearTimeout(this.idle);
    this.options.onState("live", this.position);
    if (!this.everCaughtUp) {
      this.everCaughtUp = true;
      this.options.onCaughtUp();
    }
  }
}
