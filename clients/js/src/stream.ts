/**
 * The fallback transport for rooms where WebSockets are blocked (a proxy that strips upgrades):
 * the room's Server-Sent Events stream (`GET /v1/rooms/:room/events`) for what arrives, and HTTP
 * for what is sent (`POST /v1/rooms/:room/messages` with the message id as `Idempotency-Key`,
 * `GET /v1/rooms/:room/messages` for history). It looks like a WebSocket to `Channel`, speaking
 * the same frames, so recovery (`since`/`epoch`), the outbox and pacing work unchanged.
 *
 * What the stream cannot do: typing, live state, signals and broadcasts are answered with
 * `unsupported`, and `room:state` carries no members, typing or state. Only `fetch` with a
 * streamed body is needed (browsers, Node ≥ 18).
 */
import type { WebSocketLike } from "./channel.js";
import { tokenClaims } from "./util.js";

const CONNECTING = 0;
const OPEN = 1;
const CLOSED = 3;

interface Frame {
  t: string;
  ref?: number | string;
  d?: Record<string, unknown>;
}

export class StreamSocket implements WebSocketLike {
  readyState = CONNECTING;
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;

  private readonly abort = new AbortController();
  private readonly http: string;
  private readonly token: string;
  private readonly user: string;
  /** POSTs go one at a time, so messages are stored in the order they were sent. */
  private posting: Promise<unknown> = Promise.resolve();

  constructor(url: string, protocols: string[] = []) {
    const u = new URL(url.replace(/^ws/, "http"));
    const query = u.search;
    this.http = `${u.origin}${u.pathname.replace(/\/ws$/, "")}`;
    this.token = protocols.find((p) => p.startsWith("bearer."))?.slice(7) ?? "";
    this.user = String(tokenClaims(this.token)?.sub ?? "");
    void this.listen(`${this.http}/events${query}`);
  }

  send(data: string): void {
    if (this.readyState !== OPEN) throw new Error("the stream is not open");
    const frame = JSON.parse(data) as Frame;
    const d = frame.d ?? {};
    switch (frame.t) {
      case "ping":
        return this.deliver({ t: "pong" });
      case "message:send": {
        const headers: Record<string, string> = { "content-type": "application/json" };
        if (typeof d.id === "string") headers["idempotency-key"] = d.id;
        const body = JSON.stringify({ text: d.text, ...(d.data !== undefined ? { data: d.data } : {}) });
        const post = () => this.call(frame, "POST", "/messages", body, headers);
        this.posting = this.posting.then(post, post);
        return;
      }
      case "history:get": {
        const q = new URLSearchParams();
        if (d.before !== undefined) q.set("before", String(d.before));
        if (d.limit !== undefined) q.set("limit", String(d.limit));
        void this.call(frame, "GET", `/messages?${q}`);
        return;
      }
      case "auth:refresh": {
        // Each request carries the token it was given; the stream keeps the one it opened with.
        return this.reply(frame, true, { expires: 0, canSend: true });
      }
      default:
        if (frame.ref !== undefined) {
          this.reply(frame, false, undefined, { code: "unsupported", message: `${frame.t} needs a WebSocket; this room is on the event-stream fallback` });
        }
    }
  }

  close(): void {
    if (this.readyState === CLOSED) return;
    this.finish(1000, "closed by the client");
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
    this.readyState = OPEN;
    this.onopen?.({});
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
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
    if (event === "room:state") {
      // The stream's opening says where the log is; the rest a socket would say is unknown here.
      this.deliver({ t: "room:state", d: { connId: "", user: this.user, members: [], typing: [], state: {}, ...d } });
    } else this.deliver({ t: event, d });
  }

  private async call(frame: Frame, method: string, path: string, body?: string, headers: Record<string, string> = {}): Promise<void> {
    try {
      const res = await fetch(`${this.http}${path}`, {
        method,
        body,
        headers: { authorization: `Bearer ${this.token}`, ...headers },
        signal: this.abort.signal,
      });
      const json = (await res.json().catch(() => ({}))) as { error?: { code: string; message: string; retryAfterMs?: number } };
      if (res.ok) this.reply(frame, true, json);
      else this.reply(frame, false, undefined, json.error ?? { code: "internal", message: `HTTP ${res.status}` });
    } catch (err) {
      if (this.readyState === OPEN) this.reply(frame, false, undefined, { code: "internal", message: String(err) });
    }
  }

  private reply(frame: Frame, ok: boolean, d?: unknown, error?: { code: string; message: string; retryAfterMs?: number }): void {
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
