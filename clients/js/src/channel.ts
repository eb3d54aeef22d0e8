/**
 * One reconnecting socket to one object (a room, the user's own object, a document): the
 * connection life cycle every object shares. It owns the WebSocket, the token on each connect,
 * backoff with full jitter, the close-code policy, the heartbeat, `auth:refresh` before the
 * token's `exp`, batches, request/reply matching by `ref`, and per-class pacing. What the frames
 * mean is left to the subclasses (`Room`, `Me`, `Doc`), which say where to connect (`path`),
 * which frame opens the socket (`openEvent`), and handle the rest (`handleFrame`).
 *
 * Channels whose object has an event stream (rooms, the user's object) name it (`fallbackTransport`):
 * after `fallbackAfter` WebSocket attempts in a row fail before opening, the channel uses it
 * instead, and while it does, it checks every `fallbackProbeMs` whether WebSockets get through
 * again (a handshake without a token, which the server refuses with 4401 before touching any
 * object); when they do, it moves back to a WebSocket. The probe cannot prove that the real
 * handshake (with the token) gets through too: each time WebSockets fail again after a probe's
 * return, the wait before the next probe doubles, until a WebSocket stays open for
 * `fallbackProbeMs`.
 */
import { Emitter } from "./emitter.js";
import { SwitchboardError, fromWire } from "./errors.js";
import type { RefreshRequest, ServerFrame } from "./types.js";
import { backoffDelay, Pacer, tokenExpiry, utf8Length } from "./util.js";
import type { ChannelStatus, ClientCore, StreamSocketConstructor, WebSocketLike } from "./core.js";

export type { ChannelStatus, StreamOptions, StreamSocketConstructor, WebSocketConstructor, WebSocketLike } from "./core.js";

/** Close codes after which reconnecting cannot help: stop and report. */
const FATAL_CLOSE = new Set([4002, 4400, 4401, 4403, 4404, 4429]);
const OPEN = 1;
/** setTimeout's longest delay. */
const MAX_DELAY_MS = 2 ** 31 - 1;
/** The longest wait between probes, however often returns failed. */
const PROBE_MAX_MS = 30 * 60_000;

interface Pending {
  gen: number;
  onReply: (frame: ServerFrame) => void;
  onDown: () => void;
}

interface Queued {
  send: () => void;
  cancelled: () => boolean;
  /** The channel closed or stopped before it was sent. */
  fail?: (err: SwitchboardError) => void;
}

export interface ChannelEvents {
  status: ChannelStatus;
  error: SwitchboardError;
  /** A reconnect attempt starts (1, 2, ... since the socket was last open). */
  attempt: number;
  /** A connect attempt failed before the socket opened. */
  connectError: SwitchboardError;
}

export abstract class Channel<E extends ChannelEvents> extends Emitter<E> {
  /** The connection status of this socket. */
  status: ChannelStatus = "idle";
  /** Reconnect attempts since the socket was last open (0 while open). */
  attempt = 0;

  protected ws: WebSocketLike | null = null;
  /** Increases with every socket; replies and outbox entries remember which socket they used. */
  protected gen = 0;
  protected live = false;
  private closedByUser = false;
  private stopped = false;
  private everOpen = false;
  private nextRef = 1;
  private replies = new Map<number, Pending>();
  private queues = new Map<string, { pacer: Pacer | null; items: Queued[]; pumping: boolean }>();
  private timers = new Set<ReturnType<typeof setTimeout>>();
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  private socketTimers: ReturnType<typeof setTimeout>[] = [];
  private lastRx = 0;
  private lastError = "";
  private refused401 = 0;
  private tokenExp: number | undefined;

  /**
   * `websocket`, or `stream` once WebSockets failed `fallbackAfter` times in a row (only
   * channels with a `fallbackTransport`): the object's event stream and HTTP instead, until a
   * probe finds WebSockets working again.
   */
  transport: "websocket" | "stream" = "websocket";
  private failedInARow = 0;
  private probe: WebSocketLike | null = null;
  private probeTimer: ReturnType<typeof setTimeout> | undefined;
  /** The wait before the next probe: `fallbackProbeMs`, doubled per failed return. */
  private probeEvery = 0;
  /** A probe sent the channel back to WebSockets, and no WebSocket has stayed open since. */
  private probeReturned = false;
  /** `connect()` is waiting for the token callback (the socket is not made yet). */
  private gettingToken = false;

  protected constructor(protected readonly client: ClientCore) {
    super();
  }

  /** Where to connect, with its query (recovery positions); called before every connect. */
  protected abstract path(): string;
  /** The event that opens the socket (`room:state`, `user:state`, `doc:snapshot`). */
  protected abstract readonly openEvent: string;
  /** The open frame arrived: the socket is ready. */
  protected abstract handleOpen(d: unknown): void;
  /** Every other frame, in order (batches unpacked). */
  protected abstract handleFrame(frame: ServerFrame): void;
  /** The socket went away (outboxes mark what must be resent). */
  protected handleDown(): void {}
  /**
   * The event-stream transport of this channel's object (made with the URL and protocols a
   * WebSocket would get), for objects that have one; `null`: no fallback.
   */
  protected fallbackTransport(): StreamSocketConstructor | null {
    return null;
  }

  /** Makes the socket for one connect: a WebSocket, or the fallback once WebSockets failed. */
  private createSocket(url: string, protocols: string[]): WebSocketLike {
    const Fallback = this.transport === "stream" ? this.fallbackTransport() : null;
    if (Fallback) return new Fallback(url, protocols, { keepaliveMs: this.client.options.sseKeepaliveMs });
    return new this.client.WebSocket(url, protocols);
  }

  /** Whether this channel may fall back: it has an event stream and the option allows it. */
  private get canFallBack(): boolean {
    return this.client.options.fallbackAfter > 0 && this.fallbackTransport() !== null;
  }

  /**
   * A connect attempt failed before opening: count it; enough in a row switch to the stream
   * (true then). Attempts keep counting across the switch, so `maxReconnectAttempts` bounds
   * them all, as socket.io's `reconnectionAttempts` does.
   */
  private connectFailed(): boolean {
    if (this.transport !== "websocket" || !this.canFallBack) return false;
    if (++this.failedInARow < this.client.options.fallbackAfter) return false;
    this.transport = "stream";
    // Back after a probe's return failed: the probe got through, the real handshake does not
    // (a proxy's header-size limit, say). Wait twice as long before believing the next one.
    const base = this.client.options.fallbackProbeMs;
    this.probeEvery = this.probeReturned ? Math.min(Math.max(this.probeEvery, base) * 2, Math.max(base, PROBE_MAX_MS)) : base;
    this.scheduleProbe();
    return true;
  }

  /**
   * On the stream (open or still trying): in `probeEvery`, a WebSocket handshake without a
   * token. The server accepts it and closes it with 4401 without touching any object, so an open
   * (or that close) shows WebSockets get through again: the channel moves back to one. Anything
   * else: the next probe later. A probe still in flight when the next is due puts it off.
   */
  private scheduleProbe(): void {
    clearTimeout(this.probeTimer);
    if (this.client.options.fallbackProbeMs <= 0 || this.transport !== "stream" || this.closedByUser || this.stopped) return;
    this.probeTimer = setTimeout(() => this.runProbe(), this.probeEvery || this.client.options.fallbackProbeMs);
  }

  private runProbe(): void {
    if (this.transport !== "stream" || this.closedByUser || this.stopped) return;
    if (this.probe) return this.scheduleProbe();
    let probe: WebSocketLike;
    try {
      probe = new this.client.WebSocket(this.client.wsBase + this.path(), ["switchboard.v1"]);
    } catch {
      return this.scheduleProbe();
    }
    this.probe = probe;
    // A handshake that never ends counts as blocked.
    const timeout = setTimeout(() => done(false), Math.max(5_000, this.client.options.pongTimeoutMs));
    const done = (works: boolean) => {
      clearTimeout(timeout);
      if (this.probe !== probe) return;
      this.dropProbe();
      if (this.transport !== "stream" || this.closedByUser || this.stopped) return;
      if (!works) return this.scheduleProbe();
      this.returnToWebSocket();
    };
    probe.onopen = () => done(true);
    probe.onclose = (ev) => done(ev.code === 4401);
    probe.onerror = () => {};
  }

  /**
   * A probe got through: WebSockets from the next connect on. An open stream is replaced at
   * once, one still connecting is dropped for a WebSocket, and a backoff wait ends; a connect
   * waiting for its token makes a WebSocket anyway. Attempts keep counting (`attempt` is 0 when
   * the stream was open), so `maxReconnectAttempts` still bounds a channel that cannot open.
   */
  private returnToWebSocket(): void {
    this.transport = "websocket";
    this.failedInARow = 0;
    this.probeReturned = true;
    if (this.gettingToken) return;
    clearTimeout(this.reconnectTimer);
    if (this.ws) this.teardown(1000, "back to a WebSocket");
    void this.connect();
  }

  /** Opens the socket if it is not open or opening yet. */
  start(): void {
    if (this.status !== "idle" || this.closedByUser) return;
    void this.connect();
  }

  /** Closes the socket for good; pending requests reject with `closed`. */
  close(): void {
    if (this.closedByUser) return;
    this.closedByUser = true;
    this.teardown(1000, "closed by the client");
    clearTimeout(this.probeTimer);
    this.dropProbe();
    this.failQueued(new SwitchboardError("closed", "the socket was closed"));
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    clearTimeout(this.reconnectTimer);
    this.setChannelStatus("closed");
  }

  /** Whether the socket is open and its open frame has arrived. */
  get isOpen(): boolean {
    return this.live;
  }

  /** Reconnects now (after `online`, or to skip a backoff wait). */
  reconnectNow(): void {
    if (this.closedByUser || this.stopped || this.live || this.status === "connecting") return;
    clearTimeout(this.reconnectTimer);
    void this.connect();
  }

  protected setChannelStatus(status: ChannelStatus): void {
    if (this.status === status) return;
    this.status = status;
    this.fire("status", status);
    this.client.statusChanged();
  }

  /** Emits an event of this channel's own (the typed `emit` cannot see `E`'s keys here). */
  protected fire(event: string, value: unknown): void {
    (this.emit as (k: string, v: unknown) => void).call(this, event, value);
  }

  protected report(error: SwitchboardError): void {
    this.fire("error", error);
    this.client.reportError(error);
  }

  private later(ms: number, fn: () => void): void {
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    this.timers.add(t);
  }

  private async connect(): Promise<void> {
    if (this.closedByUser || this.stopped) return;
    const again = this.everOpen || this.attempt > 0;
    this.setChannelStatus(again ? "reconnecting" : "connecting");
    if (again) this.fire("attempt", Math.max(1, this.attempt));
    let token: string;
    this.gettingToken = true;
    try {
      token = await this.client.getToken();
    } catch (err) {
      this.report(new SwitchboardError("unauthorized", `the token callback failed: ${String(err)}`));
      return this.retry();
    } finally {
      this.gettingToken = false;
    }
    if (this.closedByUser || this.stopped) return;
    this.tokenExp = tokenExpiry(token);
    const gen = ++this.gen;
    let ws: WebSocketLike;
    try {
      ws = this.createSocket(this.client.wsBase + this.path(), ["switchboard.v1", `bearer.${token}`]);
    } catch (err) {
      this.report(new SwitchboardError("internal", `cannot open a WebSocket: ${String(err)}`));
      return this.retry();
    }
    this.ws = ws;
    this.lastError = "";
    // A handshake that hangs, or a stream whose body a proxy holds back, would otherwise leave
    // the channel connecting for good: without the open frame in time, the attempt failed.
    const { openTimeoutMs } = this.client.options;
    this.socketTimer(openTimeoutMs, () => {
      if (gen === this.gen && !this.live) this.lost(1006, `no ${this.openEvent} within ${openTimeoutMs} ms`);
    });
    ws.onopen = () => {
      if (gen !== this.gen) return;
      this.lastRx = Date.now();
      this.startHeartbeat(gen);
    };
    ws.onmessage = (ev) => {
      if (gen !== this.gen) return;
      this.lastRx = Date.now();
      if (typeof ev.data !== "string") return;
      let parsed: unknown;
      try {
        parsed = JSON.parse(ev.data);
      } catch {
        return;
      }
      // A frame may be a batch: a JSON array of envelopes, in order.
      const frames = Array.isArray(parsed) ? parsed : [parsed];
      for (const frame of frames) {
        if (gen !== this.gen) return;
        if (frame && typeof frame === "object" && typeof (frame as ServerFrame).t === "string") this.dispatch(frame as ServerFrame);
      }
    };
    ws.onerror = (ev) => {
      const message = (ev as { message?: string })?.message;
      if (message) this.lastError = message;
    };
    ws.onclose = (ev) => {
      if (gen !== this.gen) return;
      this.lost(ev.code, ev.reason ?? "");
    };
  }

  private dispatch(frame: ServerFrame): void {
    if (frame.t === "reply") {
      const ref = typeof frame.ref === "number" ? frame.ref : Number(frame.ref);
      const p = this.replies.get(ref);
      if (p) {
        this.replies.delete(ref);
        p.onReply(frame);
      }
      return;
    }
    if (frame.t === "pong") return;
    if (frame.t === "error") {
      this.report(fromWire(frame.error));
      return;
    }
    if (frame.t === this.openEvent) {
      this.live = true;
      this.everOpen = true;
      this.attempt = 0;
      this.refused401 = 0;
      if (this.transport === "websocket") {
        this.failedInARow = 0;
        // Back from the fallback: once this socket has stayed open a probe period, the
        // return worked and probes go back to `fallbackProbeMs`.
        if (this.probeReturned) {
          this.socketTimer(this.client.options.fallbackProbeMs, () => {
            this.probeReturned = false;
            this.probeEvery = 0;
          });
        }
      }
      this.scheduleTokenTimers(this.gen);
      this.handleOpen(frame.d);
      this.setChannelStatus("open");
      for (const key of this.queues.keys()) this.pump(key);
      return;
    }
    this.handleFrame(frame);
  }

  /** The socket closed (or was found dead): decide from the code whether and when to return. */
  private lost(code: number, reason: string): void {
    const wasOpen = this.live;
    this.teardown();
    if (this.closedByUser) return;
    const status = /Unexpected server response: (\d+)/.exec(this.lastError)?.[1];
    const http = status ? Number(status) : 0;
    let switched = false;
    if (!wasOpen) {
      switched = this.connectFailed();
      const why = http ? `HTTP ${http}` : reason || this.lastError || `closed with ${code}`;
      this.fire("connectError", new SwitchboardError("connect_failed", `could not connect: ${why}`, { closeCode: http || code }));
    }
    if (code === 4001) {
      // The token expired: a fresh one from the callback, and back at once.
      if (!this.client.tokenIsCallback) return this.stop(code, "the token expired and no callback can renew it");
      this.attempt = 0;
      return void this.connect();
    }
    // A refused token (HTTP 401, or 4401 where the server reports it on the socket, as browsers
    // need): one more try with a fresh token from the callback, then stop.
    if ((http === 401 || code === 4401) && this.client.tokenIsCallback && this.refused401++ < 1) return this.retry();
    if (FATAL_CLOSE.has(code)) return this.stop(code, reason || `closed with ${code}`);
    // 426: something on the way stripped the upgrade (the server saw plain HTTP). With a
    // fallback that is a WebSocket failure like any other, not a refusal.
    const stripped = http === 426 && this.canFallBack;
    if (http >= 400 && http < 500 && !stripped) return this.stop(http, `the server refused the socket with HTTP ${http}`);
    // The first try on the fallback goes at once; it still counts as an attempt.
    this.retry(switched);
  }

  private stop(code: number, message: string, errorCode = "refused"): void {
    this.stopped = true;
    clearTimeout(this.probeTimer);
    this.dropProbe();
    const error = new SwitchboardError(errorCode, message, { closeCode: code });
    this.failQueued(error);
    this.setChannelStatus("closed");
    this.report(error);
  }

  /** Rejects every request still waiting for the socket. */
  private failQueued(error: SwitchboardError): void {
    for (const q of this.queues.values()) for (const item of q.items.splice(0)) if (!item.cancelled()) item.fail?.(error);
  }

  private retry(now = false): void {
    if (this.closedByUser || this.stopped) return;
    const max = this.client.options.maxReconnectAttempts;
    if (this.attempt >= max) return this.stop(0, `gave up after ${max} reconnect attempts`, "gave_up");
    const n = this.attempt++;
    const delay = now ? 0 : backoffDelay(n, this.client.options.reconnectDelayMs, this.client.options.reconnectDelayMaxMs, this.client.random);
    if (this.client.offline) {
      this.setChannelStatus("offline");
      // Waiting for the `online` event; try now and then anyway, since that event can lie.
      this.reconnectTimer = setTimeout(() => void this.connect(), this.client.options.reconnectDelayMaxMs);
      return;
    }
    this.setChannelStatus("reconnecting");
    this.reconnectTimer = setTimeout(() => void this.connect(), delay);
  }

  private dropProbe(): void {
    const probe = this.probe;
    this.probe = null;
    if (!probe) return;
    probe.onopen = probe.onmessage = probe.onclose = null;
    probe.onerror = () => {};
    try {
      probe.close(1000, "probe");
    } catch {
      // already closed
    }
  }

  /** Drops the current socket (closing it if `code` is given) and fails what waited on it. */
  private teardown(code?: number, reason?: string): void {
    const ws = this.ws;
    this.ws = null;
    const wasReady = this.live;
    this.live = false;
    this.gen++;
    for (const t of this.socketTimers) clearTimeout(t);
    this.socketTimers = [];
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      // Not null: ending a handshake in progress (the open timeout, close()) emits an error,
      // which `ws` would throw with no listener.
      ws.onerror = () => {};
      try {
        const terminate = (ws as unknown as { terminate?: () => void }).terminate;
        if (code === undefined && typeof terminate === "function") terminate.call(ws);
        else if (ws.readyState <= OPEN) ws.close(code ?? 4000, reason ?? "");
      } catch {
        // already closed
      }
    }
    const pending = [...this.replies.values()];
    this.replies.clear();
    for (const p of pending) p.onDown();
    if (wasReady || ws) this.handleDown();
  }

  private socketTimer(ms: number, fn: () => void): void {
    // setTimeout fires at once past its limit (~24.8 days): a token valid longer than that
    // would otherwise expire at once, and reconnect in a loop. Wait in steps instead.
    if (ms > MAX_DELAY_MS) {
      this.socketTimers.push(setTimeout(() => this.socketTimer(ms - MAX_DELAY_MS, fn), MAX_DELAY_MS));
      return;
    }
    this.socketTimers.push(setTimeout(fn, ms));
  }

  /**
   * Heartbeat: `{"t":"ping"}` every `heartbeatMs`; a socket that delivers nothing within
   * `pongTimeoutMs` of a ping is dead (a cut network keeps TCP "open" for minutes) and replaced.
   */
  private startHeartbeat(gen: number): void {
    const { heartbeatMs, pongTimeoutMs } = this.client.options;
    const tick = () => {
      if (gen !== this.gen || !this.ws) return;
      const sentAt = Date.now();
      this.rawSend('{"t":"ping"}');
      this.socketTimer(pongTimeoutMs, () => {
        if (gen !== this.gen) return;
        if (this.lastRx < sentAt) {
          this.lost(1006, "no pong");
          return;
        }
      });
      this.socketTimer(heartbeatMs, tick);
    };
    this.socketTimer(heartbeatMs, tick);
  }

  /**
   * With a token callback: `auth:refresh` with a fresh token shortly before `exp` (a tenth of the
   * token's life before, between 1 s and `refreshLeadMs`). Should that fail, the socket is
   * replaced with a fresh token once `exp` has passed, without waiting for the server's 4001.
   */
  private scheduleTokenTimers(gen: number): void {
    const exp = this.tokenExp;
    if (exp === undefined) return;
    const now = Date.now();
    if (this.client.tokenIsCallback) {
      const life = Math.max(0, exp - now);
      const lead = Math.min(this.client.options.refreshLeadMs, Math.max(1000, life / 10));
      this.socketTimer(Math.max(0, exp - lead - now), () => void this.refreshToken(gen, exp));
    }
    this.socketTimer(Math.max(0, exp - now) + 1000, () => {
      if (gen !== this.gen || this.tokenExp !== exp) return;
      this.lost(4001, "token expired");
    });
  }

  private async refreshToken(gen: number, exp: number): Promise<void> {
    try {
      const token = await this.client.getToken();
      const next = tokenExpiry(token);
      if (gen !== this.gen || next === undefined || next <= exp) return;
      await this.request("auth:refresh", { token } satisfies RefreshRequest, { klass: "reads" });
      if (gen !== this.gen) return;
      this.tokenExp = next;
      this.scheduleTokenTimers(gen);
    } catch (err) {
      if (gen !== this.gen) return;
      if (err instanceof SwitchboardError && (err.code === "unauthorized" || err.code === "forbidden")) this.report(err);
      else if (Date.now() < exp - 1000) this.socketTimer(1000, () => void this.refreshToken(gen, exp));
    }
  }

  /** Drops the current socket and connects again at once (a document starting over). */
  protected replaceSocket(): void {
    if (this.closedByUser || this.stopped) return;
    this.teardown(1000, "resync");
    this.attempt = 0;
    void this.connect();
  }

  /** Sends raw text on the open socket; false when there is none. */
  protected rawSend(text: string): boolean {
    const ws = this.ws;
    if (!ws || ws.readyState !== OPEN) return false;
    try {
      ws.send(text);
      return true;
    } catch {
      return false;
    }
  }

  /** Checks a frame against `MAX_FRAME_BYTES`, as the protocol asks clients to. */
  protected encode(frame: object): string {
    const text = JSON.stringify(frame);
    if (utf8Length(text) > this.client.options.maxFrameBytes) {
      throw new SwitchboardError("too_large", `frame over ${this.client.options.maxFrameBytes} bytes`);
    }
    return text;
  }

  /**
   * Sends `{t, ref, d}` on the open socket now and calls `onReply` with its reply; `onDown` when
   * the socket goes first. Returns false when no socket is ready.
   */
  protected sendWithReply(t: string, d: unknown, onReply: (frame: ServerFrame) => void, onDown: () => void): boolean {
    if (!this.live) return false;
    const ref = this.nextRef++;
    const text = this.encode(d === undefined ? { t, ref } : { t, ref, d });
    if (!this.rawSend(text)) return false;
    this.replies.set(ref, { gen: this.gen, onReply, onDown });
    return true;
  }

  /** A pacer per rate class; subclasses name theirs with `pacer(klass)`. */
  protected abstract pacerFor(klass: string): Pacer | null;

  /**
   * A request that needs the socket: waits for it to be ready (in order per rate class, paced),
   * sends, and resolves with the reply's `d` or rejects with its error. Rejects with `timeout`
   * after `timeoutMs`, and with `disconnected` if the socket goes after sending (the request is
   * not repeated: the SDK cannot know whether it was applied).
   */
  request<T = unknown>(
    t: string,
    d?: unknown,
    opts: { timeoutMs?: number; klass?: string; onReply?: (d: T) => void } = {},
  ): Promise<T> {
    if (this.closedByUser || this.stopped) return Promise.reject(new SwitchboardError("closed", "the socket is closed"));
    this.start();
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const timer = setTimeout(() => finish(new SwitchboardError("timeout", `no reply to ${t} in time`)), opts.timeoutMs ?? this.client.options.requestTimeoutMs);
      const finish = (err: SwitchboardError | null, value?: unknown) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err) reject(err);
        else resolve(value as T);
      };
      const klass = opts.klass ?? "default";
      const item: Queued = {
        cancelled: () => settled,
        fail: (err) => finish(err),
        send: () => {
          try {
            const sent = this.sendWithReply(
              t,
              d,
              (frame) => {
                if (frame.ok) {
                  // Applied while the reply's frame is handled, before the frames after it in
                  // the same batch: a promise's continuation would run after them and could
                  // overwrite what they say with the reply's older view.
                  opts.onReply?.((frame.d ?? {}) as T);
                  return finish(null, frame.d ?? {});
                }
                const err = fromWire(frame.error);
                // Over the server's rate (a budget shared with the user's other sockets): it
                // was not applied, so wait as told and send it again, first in its class.
                if (err.code === "rate_limited" && !settled) return this.requeue(klass, item, err.retryAfterMs ?? 1000);
                finish(err);
              },
              () => finish(new SwitchboardError("disconnected", `the socket closed before ${t} was answered`)),
            );
            if (!sent) finish(new SwitchboardError("disconnected", "the socket closed"));
          } catch (err) {
            finish(err as SwitchboardError);
          }
        },
      };
      this.enqueue(klass, item);
    });
  }

  /** Puts `item` back at the head of its class and holds the class for `ms`. */
  private requeue(klass: string, item: Queued, ms: number): void {
    const q = this.queues.get(klass);
    if (!q) return;
    q.items.unshift(item);
    if (q.pacer) q.pacer.pause(ms);
    else {
      q.pumping = true;
      this.later(ms, () => {
        q.pumping = false;
        this.pump(klass);
      });
      return;
    }
    this.pump(klass);
  }

  /** Queues `item` behind its class; it is sent once the socket is ready and the pacer allows. */
  protected enqueue(klass: string, item: Queued): void {
    let q = this.queues.get(klass);
    if (!q) this.queues.set(klass, (q = { pacer: this.pacerFor(klass), items: [], pumping: false }));
    q.items.push(item);
    this.pump(klass);
  }

  private pump(klass: string): void {
    const q = this.queues.get(klass);
    if (!q || q.pumping) return;
    while (this.live && q.items.length) {
      const head = q.items[0]!;
      if (head.cancelled()) {
        q.items.shift();
        continue;
      }
      const wait = q.pacer?.delay() ?? 0;
      if (wait > 0) {
        q.pumping = true;
        this.later(wait, () => {
          q.pumping = false;
          this.pump(klass);
        });
        return;
      }
      q.pacer?.take();
      q.items.shift();
      head.send();
    }
  }
}
