/**
 * A Socket.IO-style facade over the SDK, so an app written against socket.io-client moves to
 * Switchboard by changing one import:
 *
 * ```ts
 * import { io } from "@switchboard/client/socket.io"; // was: from "socket.io-client"
 * const socket = io(url, { auth: { token }, reconnectionDelay: 1000, reconnectionAttempts: 5 });
 * ```
 *
 * The facade's connection is the user socket (`/v1/users/me/ws`), opened at once: `connect`
 * fires on its `user:state`, `disconnect` when it goes, `connect_error` for each failed attempt,
 * `reconnect_attempt` before each retry (on the socket and on `socket.io`). As in socket.io-client,
 * a connection the server refuses (a bad token: socket.io's middleware error) gets one
 * `connect_error` and no retry, and after `reconnect_failed` nothing retries either: `active` is
 * then false and `connect()` starts again (reading `auth` anew). `room:join` opens that
 * room's socket behind it; frames for a room whose socket is down wait in its outbox and leave,
 * in order, after its `room:state`. The events those apps use are mapped to the protocol (see
 * README.md, "Migrating from socket.io-client"); an event it does not know is reported (the ack
 * gets an error, the socket emits `error`), never dropped silently.
 */
import { Client, createClient } from "./client.js";
import type { WebSocketConstructor } from "./channel.js";
import { SwitchboardError } from "./errors.js";
import type { Room } from "./room.js";
import type { Me } from "./me.js";
import type { Message, Presence } from "./types.js";
import { tokenClaims } from "./util.js";

type Handler = (...args: any[]) => void;
type Ack = (reply: unknown) => void;

/** The socket.io-client options the facade understands (others are accepted and ignored). */
export interface FacadeOptions {
  /** `{ token }`, or socket.io's callback form `(cb) => cb({ token })`, called on every connect. */
  auth?: { token?: string } | ((cb: (auth: { token?: string }) => void) => void);
  /** A token, or a function returning one (the SDK's own form). */
  token?: string | (() => string | Promise<string>);
  /** With `"polling"` (or omitted), rooms fall back to the event stream where WebSockets fail. */
  transports?: string[];
  /** `false`: never reconnect. Default true. */
  reconnection?: boolean;
  /** Default 1,000 ms (socket.io's). */
  reconnectionDelay?: number;
  /** Default 5,000 ms (socket.io's). */
  reconnectionDelayMax?: number;
  /** Default: unlimited. */
  reconnectionAttempts?: number;
  /** Default true: connect at once. */
  autoConnect?: boolean;
  /** A WebSocket implementation where there is no global one (Node 20). */
  WebSocket?: WebSocketConstructor;
  [other: string]: unknown;
}

/** A minimal event emitter with socket.io's signatures (`on`, `once`, `off`, variadic args). */
class Events {
  private handlers = new Map<string, Set<Handler>>();

  on(event: string, fn: Handler): this {
    let set = this.handlers.get(event);
    if (!set) this.handlers.set(event, (set = new Set()));
    set.add(fn);
    return this;
  }

  once(event: string, fn: Handler): this {
    const wrapper: Handler = (...args) => {
      this.off(event, wrapper);
      fn(...args);
    };
    return this.on(event, wrapper);
  }

  off(event?: string, fn?: Handler): this {
    if (event === undefined) this.handlers.clear();
    else if (!fn) this.handlers.delete(event);
    else this.handlers.get(event)?.delete(fn);
    return this;
  }

  /** Same as `off`, socket.io's other name for it. */
  removeListener(event?: string, fn?: Handler): this {
    return this.off(event, fn);
  }

  /** Removes every listener (of `event`). */
  removeAllListeners(event?: string): this {
    return this.off(event);
  }

  listeners(event: string): Handler[] {
    return [...(this.handlers.get(event) ?? [])];
  }

  protected fire(event: string, ...args: unknown[]): void {
    for (const fn of [...(this.handlers.get(event) ?? [])]) {
      try {
        fn(...args);
      } catch (err) {
        setTimeout(() => {
          throw err;
        });
      }
    }
  }
}

/** `socket.io`: the Manager's events (`reconnect_attempt`, `reconnect`, `reconnect_failed`, `error`). */
export class Manager extends Events {
  /** @internal */
  emitReserved(event: string, ...args: unknown[]): void {
    this.fire(event, ...args);
  }
}

/** What `message:receive` delivers: the seed apps' message shape plus the room's `seq`. */
export interface FacadeMessage {
  id: string;
  text: string;
  roomId: string;
  userId: string;
  /** ISO 8601, the server's time. */
  timestamp: string;
  seq: number;
  data?: unknown;
}

export class Socket extends Events {
  /** The user socket's connection id while connected. */
  id: string | undefined;
  connected = false;
  /** The Manager: `socket.io.on("reconnect_attempt", n => ...)`. */
  readonly io = new Manager();
  /** The SDK client underneath, for what the facade does not map. */
  client: Client | null = null;

  private readonly rooms = new Map<string, { room: Room; offs: (() => void)[]; lastSeq: number }>();
  private me: Me | null = null;
  private offs: (() => void)[] = [];
  private attempts = 0;
  /** The server's error frame that came before a refused socket closed: the `connect_error`'s detail. */
  private refusal: SwitchboardError | null = null;

  private readonly opts: FacadeOptions;

  constructor(
    private readonly url: string,
    opts: FacadeOptions = {},
  ) {
    super();
    this.opts = { ...opts };
    if (opts.autoConnect !== false) this.connect();
  }

  get disconnected(): boolean {
    return !this.connected;
  }

  /**
   * socket.io-client's `active`: whether the socket is connected or will reconnect by itself.
   * False after `disconnect()`, a refused connection and `reconnect_failed`: only `connect()`
   * tries again.
   */
  get active(): boolean {
    return this.client !== null;
  }

  /** socket.io-client's `auth`: read on every connect, so `socket.auth = { token }` then `connect()` uses the new token. */
  get auth(): FacadeOptions["auth"] {
    return this.opts.auth;
  }

  set auth(auth: FacadeOptions["auth"]) {
    this.opts.auth = auth;
  }

  /** Opens the user socket (again, after `disconnect()`). */
  connect(): this {
    if (this.client) return this;
    const o = this.opts;
    const client = createClient({
      url: this.url,
      token: () => this.token(),
      ...(o.WebSocket ? { WebSocket: o.WebSocket } : {}),
      reconnectDelayMs: o.reconnectionDelay ?? 1000,
      reconnectDelayMaxMs: o.reconnectionDelayMax ?? 5000,
      // The facade gives up for the whole connection, as socket.io-client's Manager does, when
      // the user socket has used `reconnectionAttempts`; a room socket never gives up alone.
      maxReconnectAttempts: Infinity,
      // The user socket and rooms fall back to their event streams only where the app allowed
      // polling, as socket.io does.
      ...(o.transports && !o.transports.includes("polling") ? { fallbackAfter: 0 } : {}),
    });
    this.client = client;
    const me = (this.me = client.me());
    this.offs = [
      me.on("open", (state) => {
        this.id = state.connId;
        const wasConnected = this.connected;
        this.connected = true;
        if (this.attempts > 0) this.io.emitReserved("reconnect", this.attempts);
        this.attempts = 0;
        // The connection is back: rooms waiting out a backoff try again now, not seconds later.
        for (const r of this.rooms.values()) r.room.reconnectNow();
        if (!wasConnected) this.fire("connect");
      }),
      me.on("status", (status) => {
        if (status === "open" || !this.connected) return;
        this.connected = false;
        this.id = undefined;
        if (o.reconnection === false) this.halt();
        this.fire("disconnect", status === "closed" ? "io server disconnect" : "transport close");
      }),
      me.on("attempt", (n) => {
        this.attempts = n;
        this.io.emitReserved("reconnect_attempt", n);
        this.fire("reconnect_attempt", n);
      }),
      me.on("connectError", (err) => {
        const code = err.closeCode ?? 0;
        // 426: a proxy stripped the upgrade. Where polling is allowed that is a WebSocket failure
        // the user socket falls back from (the SDK reports the status before it does), not a refusal.
        const stripped = code === 426 && (!o.transports || o.transports.includes("polling"));
        if (((code >= 4400 && code < 4500) || (code >= 400 && code < 500)) && !stripped) {
          // Refused by the server (socket.io: a middleware error): one connect_error with the
          // server's reason, and no retry, as socket.io-client does; `connect()` tries again.
          const reason = this.refusal;
          this.halt();
          this.fire("connect_error", reason ? new SwitchboardError(reason.code, reason.message, { closeCode: code }) : err);
          return;
        }
        this.refusal = null;
        const attempts = this.attempts;
        // `reconnection: false`: no retry; after the last of `reconnectionAttempts`, the Manager
        // gives up for good. Either way nothing (rooms neither) retries until `connect()`.
        const giveUp = o.reconnection === false || attempts >= (o.reconnectionAttempts ?? Infinity);
        if (giveUp) this.halt();
        this.fire("connect_error", err);
        if (attempts > 0) this.io.emitReserved("reconnect_error", err);
        if (giveUp && o.reconnection !== false) this.io.emitReserved("reconnect_failed");
      }),
      me.on("error", (err) => {
        if (err.code === "refused") {
          // The server stopped an open socket for good (4002, ...): "disconnect" with "io server
          // disconnect" has told the app, as socket.io's server-side disconnect() does.
          this.halt();
        } else if (!this.connected) {
          // Before the socket is up an error belongs to the attempt (the server says why it
          // refuses the token, then closes): it is the detail of that attempt's connect_error.
          this.refusal = err;
        } else this.fire("error", err);
      }),
      me.on("presence", (p) => this.fire("presence:update", presence(p))),
      me.on("notification", (n) => this.fire("notification:new", n)),
      me.on("unread", (n) => this.fire("notification:count", n)),
    ];
    // Inbound presence covers the users in the token's `friends` claim.
    void this.token()
      .then((t) => {
        const friends = tokenClaims(t)?.friends;
        if (Array.isArray(friends) && friends.length) return me.subscribe(friends.filter((f): f is string => typeof f === "string"));
        return undefined;
      })
      .catch((err) => this.fire("error", err));
    return this;
  }

  /** socket.io's other name for `connect`. */
  open(): this {
    return this.connect();
  }

  /** Closes the user socket and every room socket. `connect()` opens them again. */
  disconnect(): this {
    this.halt();
    if (this.connected) {
      this.connected = false;
      this.id = undefined;
      this.fire("disconnect", "io client disconnect");
    }
    return this;
  }

  /** Stops every socket (the user's and the rooms') without events; `connect()` starts over. */
  private halt(): void {
    const client = this.client;
    if (!client) return;
    for (const off of this.offs) off();
    for (const r of this.rooms.values()) for (const off of r.offs) off();
    this.rooms.clear();
    this.client = null;
    this.me = null;
    this.attempts = 0;
    this.refusal = null;
    client.close();
  }

  /** socket.io's other name for `disconnect`. */
  close(): this {
    return this.disconnect();
  }

  /**
   * Sends an event; a function as the last argument is its ack and gets one reply object:
   * `{ok: true, ...}` or `{ok: false, error: {code, message}}`.
   */
  emit(event: string, ...args: unknown[]): this {
    const ack: Ack | undefined = typeof args[args.length - 1] === "function" ? (args.pop() as Ack) : undefined;
    const data = args[0];
    const reply = (p: Promise<unknown>) =>
      p.then(
        (d) => ack?.({ ok: true, ...(d && typeof d === "object" ? d : {}) }),
        (err: SwitchboardError) => {
          const error = { code: err.code ?? "internal", message: err.message };
          if (ack) ack({ ok: false, error });
          // An unknown event is never dropped silently: the socket reports it even with an ack.
          if (!ack || err.code === "unknown_event") this.fire("error", err);
        },
      );
    try {
      if (!this.client) throw new SwitchboardError("closed", "the socket is disconnected: call connect()");
      reply(this.dispatch(event, data));
    } catch (err) {
      reply(Promise.reject(err));
    }
    return this;
  }

  /** socket.io's `send`: emits `message`, which the facade does not map (reported). */
  send(...args: unknown[]): this {
    return this.emit("message", ...args);
  }

  private dispatch(event: string, data: unknown): Promise<unknown> {
    const d = (data ?? {}) as Record<string, unknown>;
    switch (event) {
      case "room:join":
        return this.join(roomIdOf(data));
      case "room:leave":
        return this.leave(roomIdOf(data));
      case "message:send": {
        const { id, text, roomId, userId: _u, timestamp: _t, data: extra, ...rest } = d;
        if (typeof roomId !== "string" || typeof text !== "string") {
          return Promise.reject(new SwitchboardError("bad_request", "message:send needs {roomId, text}"));
        }
        const payload = extra ?? (Object.keys(rest).length ? rest : undefined);
        const room = this.joined(roomId);
        return room
          .send(text, { id: typeof id === "string" ? id : undefined, data: payload })
          .then((a) => ({ id: a.id, seq: a.seq, timestamp: new Date(a.ts).toISOString(), roomId }));
      }
      case "typing:start":
      case "typing:stop":
        this.joined(roomIdOf(data)).typing(event === "typing:start");
        return Promise.resolve({});
      case "presence:update": {
        if (typeof d.status !== "string") return Promise.reject(new SwitchboardError("bad_request", "presence:update needs {status}"));
        const activity = d.currentActivity ?? d.activity;
        return this.me!.setStatus(d.status as Presence["status"], typeof activity === "string" ? activity : undefined).then(presence);
      }
      case "presence:subscribe":
        return this.me!.subscribe(usersOf(data)).then((list) => ({ presence: list.map(presence) }));
      case "notification:read":
        return this.me!.markRead(d.all === true || data === "all" ? "all" : Array.isArray(data) ? (data as number[]) : (d.ids as number[])).then((unread) => ({ unread }));
      case "notification:list":
        return this.me!.notifications(d as { before?: number; limit?: number });
      default:
        return Promise.reject(new SwitchboardError("unknown_event", `the facade does not map "${event}"`));
    }
  }

  private token(): Promise<string> {
    const o = this.opts;
    if (o.token !== undefined) return Promise.resolve(typeof o.token === "function" ? o.token() : o.token);
    if (typeof o.auth === "function") {
      const auth = o.auth;
      return new Promise((resolve) => auth((a) => resolve(a?.token ?? "")));
    }
    return Promise.resolve(o.auth?.token ?? "");
  }

  /** The room's socket, opened (and its events mapped) on first use. */
  private joined(roomId: string): Room {
    const existing = this.rooms.get(roomId);
    if (existing) return existing.room;
    const room = this.client!.room(roomId);
    const entry = { room, offs: [] as (() => void)[], lastSeq: 0 };
    const deliver = (m: Message) => {
      entry.lastSeq = Math.max(entry.lastSeq, m.seq);
      this.fire("message:receive", facadeMessage(m, roomId));
    };
    entry.offs = [
      room.on("message", deliver),
      room.on("typing", (users) => this.fire("typing:update", users, roomId)),
      // Recovery was impossible: deliver what the latest page has beyond what was delivered.
      room.on("reset", ({ messages }) => {
        for (const m of messages) if (m.seq > entry.lastSeq) deliver(m);
      }),
      room.on("open", (state) => {
        if (!entry.lastSeq) entry.lastSeq = state.seq;
      }),
      room.on("error", (err) => this.fire("error", err)),
    ];
    this.rooms.set(roomId, entry);
    return room;
  }

  private join(roomId: string): Promise<unknown> {
    const room = this.joined(roomId);
    const answer = () => ({ roomId, members: room.members, memberCount: room.memberCount });
    if (room.isOpen) return Promise.resolve(answer());
    return new Promise((resolve) => {
      const off = room.on("open", () => {
        off();
        resolve(answer());
      });
    });
  }

  private leave(roomId: string): Promise<unknown> {
    const entry = this.rooms.get(roomId);
    if (entry) {
      for (const off of entry.offs) off();
      entry.room.close();
      this.rooms.delete(roomId);
    }
    return Promise.resolve({ roomId });
  }
}

function roomIdOf(data: unknown): string {
  const id = typeof data === "string" ? data : (data as { roomId?: unknown })?.roomId;
  if (typeof id !== "string" || !id) throw new SwitchboardError("bad_request", "a room id (or {roomId}) is required");
  return id;
}

function usersOf(data: unknown): string[] {
  const users = Array.isArray(data) ? data : (data as { users?: unknown })?.users;
  if (!Array.isArray(users)) throw new SwitchboardError("bad_request", "a list of user ids (or {users}) is required");
  return users as string[];
}

function facadeMessage(m: Message, roomId: string): FacadeMessage {
  const out: FacadeMessage = { id: m.id, text: m.text, roomId, userId: m.user, timestamp: new Date(m.ts).toISOString(), seq: m.seq };
  if (m.data !== undefined) out.data = m.data;
  return out;
}

function presence(p: Presence): { userId: string; status: Presence["status"]; lastSeen: string; currentActivity?: string } {
  const out: { userId: string; status: Presence["status"]; lastSeen: string; currentActivity?: string } = {
    userId: p.user,
    status: p.status,
    lastSeen: new Date(p.lastSeen).toISOString(),
  };
  if (p.activity !== undefined) out.currentActivity = p.activity;
  return out;
}

/**
 * The service's base URL from what socket.io-client accepts: no URL (or `""`, as in
 * `io(import.meta.env.VITE_SOCKET_URL || "")`) is the page's own origin, `//host` and `host:port`
 * take the page's scheme, and `/path` is on the page's origin. A path is where Switchboard is
 * served (its routes are under `<url>/v1/`), not a Socket.IO namespace.
 */
export function serviceUrl(uri?: string): string {
  const loc = (globalThis as { location?: { protocol?: string; host?: string } }).location;
  const origin = () => {
    if (!loc?.protocol || !loc.host) throw new TypeError("io() without a URL connects to the page's origin: there is no page here, pass the service's URL");
    return `${loc.protocol}//${loc.host}`;
  };
  const u = (uri ?? "").trim();
  if (u === "") return origin();
  if (u.startsWith("//")) return `${loc?.protocol ?? "https:"}${u}`;
  if (u.startsWith("/")) return origin() + u;
  if (!/^(https?|wss?):\/\//i.test(u)) return `${loc?.protocol ?? "https:"}//${u}`;
  return u;
}

/** Connects like socket.io-client's `io(url, options)`; `io(options)` and `io()` use the page's origin. */
export function io(url?: string | FacadeOptions, options: FacadeOptions = {}): Socket {
  if (url !== null && typeof url === "object") return new Socket(serviceUrl(undefined), url);
  return new Socket(serviceUrl(url), options);
}

export default io;
