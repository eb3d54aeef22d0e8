/**
 * `createClient`: the entry point. Holds what every socket shares (the URL, the token source,
 * the WebSocket implementation, timings) and one channel per room, document and the user's own
 * object, opened on first use. Its `status` sums up the channels' statuses.
 */
import { Emitter } from "./emitter.js";
import { SwitchboardError } from "./errors.js";
import type { ChannelStatus, ClientCore, ResolvedOptions, WebSocketConstructor } from "./core.js";
import { Room } from "./room.js";
import { Me } from "./me.js";
import { Doc } from "./doc.js";

/** The client's status: the worst of its open channels'. */
export type ClientStatus = "connecting" | "open" | "reconnecting" | "offline" | "closed";

export interface ClientOptions {
  /** The service's base URL: `https://rt.example.com`, `http://127.0.0.1:8787` (or `ws(s)://`). */
  url: string;
  /** A JWT, or a function returning one (called on every connect and before `exp`). */
  token: string | (() => string | Promise<string>);
  /** A WebSocket implementation where there is no global one (Node 20: `import WebSocket from "ws"`). */
  WebSocket?: WebSocketConstructor;
  /**
   * Timing options have floors (below: raised to them) so that no value, 0 included, makes a
   * tight reconnect loop; a value that is not a number is the default.
   *
   * First reconnect delay ceiling; doubles per attempt, full jitter. Default 500 ms, at least 50.
   */
  reconnectDelayMs?: number;
  /** Largest reconnect delay ceiling. Default 15,000 ms, at least 1,000 (and `reconnectDelayMs`). */
  reconnectDelayMaxMs?: number;
  /** Heartbeat interval. Default 25,000 ms, at least 1,000. */
  heartbeatMs?: number;
  /** A socket that delivers nothing this long after a ping is replaced. Default 10,000 ms, at least 1,000. */
  pongTimeoutMs?: number;
  /** Default timeout for requests and message acks. Default 10,000 ms, at least 1,000. */
  requestTimeoutMs?: number;
  /** Longest time before `exp` to renew the token with `auth:refresh`. Default 60,000 ms, at least 1,000. */
  refreshLeadMs?: number;
  /** The server's `MAX_FRAME_BYTES`. Default 65,536. */
  maxFrameBytes?: number;
  /** The server's `MAX_TEXT_CHARS`. Default 4,000. */
  maxTextChars?: number;
  /** Stop (status `closed`, error `gave_up`) after this many failed reconnects in a row. Default: never. */
  maxReconnectAttempts?: number;
  /**
   * Rooms and the user's object (`me()`) switch to their event-stream fallback (SSE + HTTP)
   * after this many WebSocket attempts in a row failed before opening (WebSockets blocked).
   * Default 3; 0 never falls back.
   */
  fallbackAfter?: number;
  /**
   * On the fallback, how often to check whether WebSockets get through again (then the channel
   * moves back to one). Default 60,000 ms, at least 1,000; 0 stays on the fallback. Each time
   * WebSockets fail again after a probe sent the channel back to them, the wait doubles (up to
   * 30 minutes), until a WebSocket stays open this long.
   */
  fallbackProbeMs?: number;
  /**
   * The server's `SSE_KEEPALIVE_MS`: an event stream that delivers no bytes (not even a
   * keepalive comment) for two of these plus slack is dead and replaced. Default 25,000 ms, at
   * least 500.
   */
  sseKeepaliveMs?: number;
  /**
   * A connect whose open frame (`room:state`, `user:state`, `doc:snapshot`) has not arrived this
   * long after its socket or event stream was created is given up (a handshake that hangs, a
   * proxy that buffers the stream) and retried. Default 15,000 ms, at least 1,000.
   */
  openTimeoutMs?: number;
}


export interface ClientEvents {
  status: ClientStatus;
  /** Every error any channel reports (also emitted on the channel itself). */
  error: SwitchboardError;
}

export class Client extends Emitter<ClientEvents> implements ClientCore {
  readonly options: ResolvedOptions;
  readonly wsBase: string;
  readonly httpBase: string;
  readonly WebSocket: WebSocketConstructor;
  readonly tokenIsCallback: boolean;
  readonly random = Math.random;
  offline = false;
  status: ClientStatus = "connecting";

  private readonly token: ClientOptions["token"];
  private readonly rooms = new Map<string, Room>();
  private readonly docs = new Map<string, Doc>();
  private user: Me | null = null;
  private closed = false;
  private readonly unlisten: (() => void)[] = [];

  constructor(options: ClientOptions) {
    super();
    const base = options.url.replace(/\/+$/, "");
    this.wsBase = base.replace(/^http/, "ws");
    this.httpBase = base.replace(/^ws/, "http");
    const ctor = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!ctor) throw new TypeError("no global WebSocket here: pass one, e.g. createClient({ WebSocket: (await import('ws')).default, ... })");
    this.WebSocket = ctor;
    this.token = options.token;
    this.tokenIsCallback = typeof options.token === "function";
    const o = options;
    const reconnectDelayMs = timing(o.reconnectDelayMs, 500, 50);
    this.options = {
      reconnectDelayMs,
      reconnectDelayMaxMs: Math.max(reconnectDelayMs, timing(o.reconnectDelayMaxMs, 15_000, 1000)),
      heartbeatMs: timing(o.heartbeatMs, 25_000, 1000),
      pongTimeoutMs: timing(o.pongTimeoutMs, 10_000, 1000),
      requestTimeoutMs: timing(o.requestTimeoutMs, 10_000, 1000),
      refreshLeadMs: timing(o.refreshLeadMs, 60_000, 1000),
      maxFrameBytes: o.maxFrameBytes ?? 65_536,
      maxTextChars: o.maxTextChars ?? 4_000,
      maxReconnectAttempts: o.maxReconnectAttempts ?? Infinity,
      fallbackAfter: o.fallbackAfter ?? 3,
      // 0 (or less): never probe.
      fallbackProbeMs: typeof o.fallbackProbeMs === "number" && o.fallbackProbeMs <= 0 ? 0 : timing(o.fallbackProbeMs, 60_000, 1000),
      sseKeepaliveMs: timing(o.sseKeepaliveMs, 25_000, 500),
      openTimeoutMs: timing(o.openTimeoutMs, 15_000, 1000),
    };
    // Browsers say when the network goes and comes back: wait for it instead of burning retries.
    const g = globalThis as { addEventListener?: (e: string, f: () => void) => void; removeEventListener?: (e: string, f: () => void) => void; navigator?: { onLine?: boolean } };
    if (typeof g.addEventListener === "function" && g.navigator && typeof g.navigator.onLine === "boolean") {
      this.offline = !g.navigator.onLine;
      const online = () => {
        this.offline = false;
        for (const ch of this.channels()) ch.reconnectNow();
        this.statusChanged();
      };
      const offline = () => {
        this.offline = true;
        this.statusChanged();
      };
      g.addEventListener("online", online);
      g.addEventListener("offline", offline);
      this.unlisten.push(() => g.removeEventListener?.("online", online), () => g.removeEventListener?.("offline", offline));
    }
  }

  /** The room `id`; its socket opens on first use (an event listener, a send, `join()`). */
  room(id: string): Room {
    this.ensureOpen();
    let room = this.rooms.get(id);
    if (!room) {
      room = new Room(this, id, () => this.rooms.delete(id));
      this.rooms.set(id, room);
    }
    return room;
  }

  /** The user's own object: status, watching others, notifications. Opens at once. */
  me(): Me {
    this.ensureOpen();
    if (!this.user) {
      this.user = new Me(this, () => (this.user = null));
      this.user.start();
    }
    return this.user;
  }

  /** The document `id`; its socket opens at once. */
  doc(id: string): Doc {
    this.ensureOpen();
    let doc = this.docs.get(id);
    if (!doc) {
      doc = new Doc(this, id, () => this.docs.delete(id));
      this.docs.set(id, doc);
      doc.start();
    }
    return doc;
  }

  /** Closes every socket; the client cannot be used afterwards. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const ch of this.channels()) ch.close();
    for (const f of this.unlisten) f();
    this.setStatus("closed");
  }

  async getToken(): Promise<string> {
    const t = typeof this.token === "function" ? await this.token() : this.token;
    if (typeof t !== "string" || !t) throw new SwitchboardError("unauthorized", "the token callback returned no token");
    return t;
  }

  statusChanged(): void {
    if (this.closed) return this.setStatus("closed");
    const all = this.channels().map((c) => c.status);
    const statuses = all.filter((s: ChannelStatus) => s !== "idle" && s !== "closed");
    let next: ClientStatus;
    // Channels still listed but closed were stopped by the server (a refusal, 4002, gave up);
    // with none active the status says so. Without any channel (all left), it stays as it was.
    if (statuses.length === 0) {
      if (!all.includes("closed")) return;
      next = "closed";
    } else if (this.offline || statuses.includes("offline")) next = "offline";
    else if (statuses.includes("reconnecting")) next = "reconnecting";
    else if (statuses.includes("connecting")) next = "connecting";
    else next = "open";
    this.setStatus(next);
  }

  reportError(error: SwitchboardError): void {
    this.emit("error", error);
  }

  private setStatus(status: ClientStatus): void {
    if (this.status === status) return;
    this.status = status;
    this.emit("status", status);
  }

  private channels(): (Room | Doc | Me)[] {
    const all: (Room | Doc | Me)[] = [...this.rooms.values(), ...this.docs.values()];
    if (this.user) all.push(this.user);
    return all;
  }

  private ensureOpen(): void {
    if (this.closed) throw new SwitchboardError("closed", "the client is closed");
  }
}

/** setTimeout's longest delay: a longer one fires at once. */
const MAX_DELAY_MS = 2 ** 31 - 1;

/**
 * A timing option: the default when it is not a number (or NaN), never below its floor (options
 * may come from outside the app's code, as the demo page's come from its URL, and a 0 would
 * reconnect in a tight loop), never above setTimeout's limit.
 */
function timing(value: unknown, fallback: number, floor: number): number {
  const ms = typeof value === "number" && !Number.isNaN(value) ? value : fallback;
  return Math.min(MAX_DELAY_MS, Math.max(floor, ms));
}

/** Creates a client. Nothing connects until a room, document or `me()` is used. */
export function createClient(options: ClientOptions): Client {
  return new Client(options);
}
