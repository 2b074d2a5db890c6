// The signalling WebSocket, speaking session_server/protocol.py's messages.
//
// It says hello with the ticket, reconnects by itself when the connection drops, and turns
// every server message into an event of the same name ("welcome", "schedule", "presence",
// "offer", "answer", "candidate", "error"), plus:
//   "down"     the connection dropped; it is being re-opened (a "welcome" follows when it is back)
//   "refused"  the server will not talk to this ticket (expired, revoked): detail {code, message}

const RETRY_DELAYS_MS = [500, 1000, 2000, 4000, 8000];
const JOIN_TIMEOUT_MS = 15000;
// Errors that mean this ticket will never be accepted: retrying would only repeat them.
const FINAL_CODES = new Set(["auth_failed", "not_authenticated"]);

/** The server said no to a join; `message` is its reason, written for the teacher. */
export class JoinRefused extends Error {
  constructor(code, message) {
    super(message);
    this.name = "JoinRefused";
    this.code = code;
  }
}

function defaultUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws`;
}

export class Signalling extends EventTarget {
  #url;
  #ticket;
  #socket = null;
  #stopped = true;
  #welcomed = false;
  #attempt = 0;
  #retryTimer = null;
  #refusal = null;
  #waiters = [];
  #pendingJoin = null;

  /** Our own side, as the server named it in "welcome". */
  party = null;

  constructor(ticket, url = defaultUrl()) {
    super();
    this.#ticket = ticket;
    this.#url = url;
  }

  get connected() {
    return this.#welcomed;
  }

  start() {
    if (!this.#stopped) return;
    this.#stopped = false;
    this.#refusal = null;
    this.#open();
  }

  stop() {
    this.#stopped = true;
    clearTimeout(this.#retryTimer);
    const socket = this.#socket;
    this.#socket = null;
    this.#welcomed = false;
    this.#failWaiters(new JoinRefused("closed", "The page stopped talking to the server."));
    if (socket) socket.close(1000, "bye");
  }

  /** Send one protocol message; false when the connection is not up (the caller retries later). */
  send(message) {
    if (!this.#welcomed || this.#socket?.readyState !== WebSocket.OPEN) return false;
    this.#socket.send(JSON.stringify(message));
    return true;
  }

  /** Ask to enter a session's room. Resolves with "joined"; rejects with JoinRefused. */
  async join(room) {
    if (this.#stopped) this.start();
    const deadline = Date.now() + JOIN_TIMEOUT_MS;
    await this.#withTimeout(this.#whenWelcomed(), JOIN_TIMEOUT_MS);
    if (this.#pendingJoin) this.#pendingJoin.reject(new JoinRefused("superseded", "Joining again."));
    const reply = new Promise((resolve, reject) => {
      this.#pendingJoin = { room, resolve, reject };
    });
    this.send({ type: "join", room });
    try {
      return await this.#withTimeout(reply, Math.max(deadline - Date.now(), 1000));
    } finally {
      this.#pendingJoin = null;
    }
  }

  #open() {
    const socket = new WebSocket(this.#url);
    this.#socket = socket;
    socket.addEventListener("open", () => {
      socket.send(JSON.stringify({ type: "hello", ticket: this.#ticket }));
    });
    socket.addEventListener("message", (event) => {
      if (socket === this.#socket) this.#receive(event.data);
    });
    socket.addEventListener("close", (event) => this.#closed(socket, event));
  }

  #receive(text) {
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      return;
    }
    if (!message || typeof message.type !== "string") return;
    switch (message.type) {
      case "welcome":
        this.#welcomed = true;
        this.#attempt = 0;
        this.party = message.party;
        for (const waiter of this.#waiters.splice(0)) waiter.resolve();
        break;
      case "joined":
        if (this.#pendingJoin?.room === message.room) this.#pendingJoin.resolve(message);
        break;
      case "error":
        if (this.#errorIsFinal(message)) return;
        if (this.#pendingJoin && (message.room == null || message.room === this.#pendingJoin.room)) {
          this.#pendingJoin.reject(new JoinRefused(message.code, message.message));
          return;
        }
        break;
      default:
        break;
    }
    this.dispatchEvent(new CustomEvent(message.type, { detail: message }));
  }

  #errorIsFinal(message) {
    if (this.#welcomed && !FINAL_CODES.has(message.code)) return false;
    this.#refusal = { code: message.code, message: message.message };
    this.#socket?.close(1000, "refused");
    return true;
  }

  #closed(socket, event) {
    if (socket !== this.#socket) return;
    this.#socket = null;
    this.#welcomed = false;
    this.#pendingJoin?.reject(
      new JoinRefused("connection_lost", "The connection to the server dropped. Try again."),
    );
    if (this.#stopped) return;
    // 1008 is the server's "policy violation": it closed us on purpose, so do not hammer it.
    if (this.#refusal || event.code === 1008) {
      const refusal = this.#refusal ?? {
        code: "closed",
        message: event.reason || "The server closed the connection. Please sign in again.",
      };
      this.#stopped = true;
      this.#failWaiters(new JoinRefused(refusal.code, refusal.message));
      this.dispatchEvent(new CustomEvent("refused", { detail: refusal }));
      return;
    }
    this.dispatchEvent(new CustomEvent("down"));
    const delay = RETRY_DELAYS_MS[Math.min(this.#attempt, RETRY_DELAYS_MS.length - 1)];
    this.#attempt += 1;
    this.#retryTimer = setTimeout(() => {
      if (!this.#stopped) this.#open();
    }, delay);
  }

  #whenWelcomed() {
    if (this.#welcomed) return Promise.resolve();
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }

  #failWaiters(error) {
    for (const waiter of this.#waiters.splice(0)) waiter.reject(error);
    this.#pendingJoin?.reject(error);
  }

  #withTimeout(promise, ms) {
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(
        () => reject(new JoinRefused("timeout", "The server did not answer in time. Try again.")),
        ms,
      );
    });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
  }
}
