/**
 * The fallback transport where WebSockets are blocked (a proxy that strips upgrades): an
 * object's Server-Sent Events stream (`GET .../events`) for what arrives, and HTTP for what is
 * sent. It looks like a WebSocket to `Channel`, speaking the same frames, so recovery, outboxes,
 * replies and pacing work unchanged. `EventStreamSocket` reads the stream and makes the calls;
 * each object says how its frames map to HTTP:
 *
 * - `RoomStreamSocket` (`/v1/rooms/:room/events`): `message:send` → `POST .../messages` (the
 *   message id as `Idempotency-Key`), `history:get` → `GET .../messages`. Typing, live state,
 *   signals and broadcasts are answered with `unsupported`, and `room:state` carries no members,
 *   typing or state.
 * - `UserStreamSocket` (`/v1/users/me/events`): `presence:set` → `POST .../status`,
 *   `presence:active` → `POST .../active`, `presence:(un)subscribe` → `POST .../(un)subscribe`,
 *   `notification:list` → `GET .../notifications`, `notification:read` →
 *   `POST .../notifications/read`.
 *
 * Only `fetch` with a streamed body is needed (browsers, Node ≥ 18).
 *
 * The heartbeat: `Channel` pings every socket. The stream answers `ping` itself, but only while
 * bytes keep arriving (the server's `: keepalive` comment every `SSE_KEEPALIVE_MS` counts): when
 * none came for two keepalive periods plus slack, the stream is dead (a cut network, a half-open
 * TCP connection) and ends as 1006 instead of passing for open. A stream whose first event never
 * comes (a proxy that buffers the body) is ended by `Channel`'s `openTimeoutMs`.
 */
import type { StreamOptions, WebSocketLike } from "./channel.js";
import { tokenClaims } from "./util.js";

const CONNECTING = 0;
const OPEN = 1;
const CLOSED = 3;

export interface Frame {
  t: string;
  ref?: number | string;
  d?: Record<string, unknown>;
}

interface WireError {
  code: string;
  message: string;
  retryAfterMs?: number;
}

export abstract class EventStreamSocket implements WebSocketLike {
  readyState = CONNECTING;
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;

  private readonly abort = new AbortController();
  /** The object's HTTP base (`.../rooms/general`, `.../users/me`). */
  protected readonly http: string;
  /** The token of every request; `auth:refresh` replaces it for the writes that follow. */
  protected token: string;
  protected readonly user: string;
  /** Writes go one at a time, so they apply in the order they were sent. */
  private posting: Promise<unknown> = Promise.resolve();
  /** When bytes last arrived (headers, events, keepalive comments). */
  private lastBytes = 0;
  /** Longer than this without bytes, the stream is dead: two keepalive periods plus slack. */
  private readonly silenceMs: number;

  /**
   * `url` and `protocols` as `Channel` would open the WebSocket (the token in `bearer.`);
   * `keepaliveMs`: the server's `SSE_KEEPALIVE_MS`.
   */
  constructor(url: string, protocols: string | string[] = [], options: StreamOptions = {}) {
    const keepalive = options.keepaliveMs ?? 25_000;
    this.silenceMs = 2 * keepalive + Math.max(1000, keepalive / 5);
    const u = new URL(url.replace(/^ws/, "http"));
    if (typeof protocols === "string") protocols = [protocols];
    this.http = `${u.origin}${u.pathname.replace(/\/ws$/, "")}`;
    this.token = protocols.find((p) => p.startsWith("bearer."))?.slice(7) ?? "";
    this.user = String(tokenClaims(this.token)?.sub ?? "");
    void this.listen(`${this.http}/events${u.search}`);
  }

  /** Maps one client frame to HTTP (`post`, `call`) or answers it here (`reply`). */
  protected abstract route(frame: Frame): void;

  /** The stream's event as the frame a socket would have received. */
  protected frameOf(event: string, d: Record<string, unknown>): Frame {
    return { t: event, d };
  }

  send(data: string): void {
    if (this.readyState !== OPEN) throw new Error("the stream is not open");
    const frame = JSON.parse(data) as Frame;
    if (frame.t === "ping") {
      // Answered here, so only while the stream shows signs of life: otherwise it is dead.
      if (Date.now() - this.lastBytes <= this.silenceMs) return this.deliver({ t: "pong" });
      return this.finish(1006, "the event stream went silent");
    }
    if (frame.t === "auth:refresh") {
      // The stream keeps the token it opened with (it ends at that token's exp with 4001 and
      // the channel reopens it); the writes from now on carry the new one.
      if (typeof frame.d?.token === "string") this.token = frame.d.token;
      return this.reply(frame, true, { expires: 0, canSend: true });
    }
    this.route(frame);
  }

  close(): void {
    if (this.readyState === CLOSED) return;
    this.finish(1000, "closed by the client");
  }

  /** A write, queued behind the previous ones; its answer is the frame's reply. */
  protected post(frame: Frame, path: string, body: unknown, headers: Record<string, string> = {}): void {
    const send = () =>
      this.call(frame, "POST", path, JSON.stringify(body), { "content-type": "application/json", ...headers });
    this.posting = this.posting.then(send, send);
  }

  /** Frames this transport cannot carry. */
  protected unsupported(frame: Frame): void {
    this.reply(frame, false, undefined, {
      code: "unsupported",
      message: `${frame.t} needs a WebSocket; this connection is on the event-stream fallback`,
    });
  }

  private async listen(url: string): Promise<void> {
    let res: Response;
    try {
      res = await fetch(url, { headers: { authorization: `Bearer ${this.token}`, accept: "text/event-stream" }, signal: this.abort.signal });
    } catch (err) {
      this.onerror?.({ message: String(err) });
      return this.finish(1006, "the event stream failed");
    }
    if (res.status !== 200 || !res.body) {
      // The statuses a WebSocket client offering switchboard.v1 would see as close codes.
      const code = res.status === 401 ? 4401 : res.status === 403 ? 4403 : res.status === 429 ? 4429 : 1006;
      return this.finish(code, `the event stream answered ${res.status}`);
    }
    this.lastBytes = Date.now();
    this.readyState = OPEN;
    this.onopen?.({});
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        this.lastBytes = Date.now();
        buffer += decoder.decode(value, { stream: true });
        let end: number;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          this.event(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
        }
      }
    } catch {
      // aborted, or the connection dropped
    }
    this.finish(1006, "the event stream ended");
  }

  private event(block: string): void {
    let event = "";
    let data = "";
    for (const line of block.split("\n")) {
      if (line.startsWith("event:")) event = line.slice(6).trim();
      else if (line.startsWith("data:")) data += line.slice(5).trim();
    }
    if (!event || !data) return;
    const d = JSON.parse(data) as Record<string, unknown>;
    // The server ends the stream (token expiry) as it would close a socket: with its code.
    if (event === "close") return this.finish(Number(d.code) || 1006, String(d.reason ?? ""));
    this.deliver(this.frameOf(event, d));
  }

  /** An HTTP call (`path` relative to the object's base) whose answer is the frame's reply. */
  protected async call(frame: Frame, method: string, path: string, body?: string, headers: Record<string, string> = {}): Promise<void> {
    try {
      const res = await fetch(`${this.http}${path}`, {
        method,
        body,
        headers: { authorization: `Bearer ${this.token}`, ...headers },
        signal: this.abort.signal,
      });
      const json = (await res.json().catch(() => ({}))) as { error?: WireError };
      if (res.ok) this.reply(frame, true, json);
      else this.reply(frame, false, undefined, json.error ?? { code: "internal", message: `HTTP ${res.status}` });
    } catch (err) {
      if (this.readyState === OPEN) this.reply(frame, false, undefined, { code: "internal", message: String(err) });
    }
  }

  protected reply(frame: Frame, ok: boolean, d?: unknown, error?: WireError): void {
    if (frame.ref === undefined) return;
    this.deliver(ok ? { t: "reply", ref: frame.ref, ok, d } : { t: "reply", ref: frame.ref, ok, error });
  }

  private deliver(frame: unknown): void {
    if (this.readyState !== OPEN) return;
    const data = JSON.stringify(frame);
    // Asynchronously, as a socket would: never inside the caller's send().
    queueMicrotask(() => this.readyState === OPEN && this.onmessage?.({ data }));
  }

  private finish(code: number, reason: string): void {
    if (this.readyState === CLOSED) return;
    this.readyState = CLOSED;
    this.abort.abort();
    const onclose = this.onclose;
    queueMicrotask(() => onclose?.({ code, reason }));
  }
}

/** `?before=&limit=` from a frame's payload. */
function pageQuery(d: Record<string, unknown>): string {
  const q = new URLSearchParams();
  if (d.before !== undefined) q.set("before", String(d.before));
  if (d.limit !== undefined) q.set("limit", String(d.limit));
  return q.toString();
}

/** A room's event stream and HTTP publish (see the module's comment). */
export class RoomStreamSocket extends EventStreamSocket {
  protected route(frame: Frame): void {
    const d = frame.d ?? {};
    switch (frame.t) {
      case "message:send": {
        const headers: Record<string, string> = typeof d.id === "string" ? { "idempotency-key": d.id } : {};
        return this.post(frame, "/messages", { text: d.text, ...(d.data !== undefined ? { data: d.data } : {}) }, headers);
      }
      case "history:get":
        return void this.call(frame, "GET", `/messages?${pageQuery(d)}`);
      default:
        return this.unsupported(frame);
    }
  }

  protected override frameOf(event: string, d: Record<string, unknown>): Frame {
    // The stream's opening says where the log is; the rest a socket would say is unknown here.
    if (event === "room:state") return { t: event, d: { connId: "", user: this.user, members: [], typing: [], state: {}, ...d } };
    return { t: event, d };
  }
}

/** The user's own event stream and its HTTP writes (see the module's comment). */
export class UserStreamSocket extends EventStreamSocket {
  protected route(frame: Frame): void {
    const d = frame.d ?? {};
    switch (frame.t) {
      case "presence:set":
        return this.post(frame, "/status", d);
      case "presence:active":
        return this.post(frame, "/active", {});
      case "presence:subscribe":
        return this.post(frame, "/subscribe", d);
      case "presence:unsubscribe":
        return this.post(frame, "/unsubscribe", d);
      case "notification:read":
        return this.post(frame, "/notifications/read", d);
      case "notification:list":
        return void this.call(frame, "GET", `/notifications?${pageQuery(d)}`);
      default:
        return this.unsupported(frame);
    }
  }
}
