/**
 * A collaborative text document: the ShareDB client algorithm of docs/protocol.md over one
 * socket. At most one op is in flight; later local edits compose into a buffer behind it.
 * Remote ops transform the in-flight op and the buffer (`left`) and are transformed against them
 * (`right`) before they apply. Reconnects resume with `?v=&epoch=`: replayed ops may include our
 * own in-flight op (its ack), then the op still in flight is resubmitted with the same `src` and
 * `seq`, which the server applies at most once. After `resumed: false` with edits pending, the
 * document pages through `ops:get` from its version and rebases them; when that history is gone
 * (another epoch, `snapshot_required`) it starts over from the server's text and says so
 * (`reset` with the text that was lost).
 *
 * Positions: the wire counts code points; the methods here that take positions (`insert`,
 * `remove`, `setCursor`) and the cursors they report count UTF-16 units, as a textarea does.
 * `submitOp` takes a wire op (code points).
 */
import { type } from "ot-text-unicode";
import { Channel, type ChannelEvents } from "./channel.js";
import type { ClientCore } from "./core.js";
import { SwitchboardError, fromWire } from "./errors.js";
import type { CursorUpdateRequest, DocSnapshot, OpSubmitRequest, Operation, ServerFrame, TextOp, WireCursor } from "./types.js";
import { Pacer, pacerFor, randomId } from "./util.js";
import { toCodePoints, toUtf16 } from "./unicode.js";

/** A remote cursor, in UTF-16 units of the current `text`. */
export interface Cursor {
  user: string;
  conn: string;
  anchor: number;
  head: number;
}

export interface DocEvents extends ChannelEvents {
  /** The socket opened, with `doc:snapshot` (first connect and every reconnect). */
  open: DocSnapshot;
  /** The text changed: `op` (code points) was applied, from someone else (`remote`) or here. */
  change: { op: TextOp; remote: boolean; text: string };
  /** A remote cursor moved or appeared. */
  cursor: Cursor;
  /** A remote cursor went away (its socket closed). */
  cursorLeave: { user: string; conn: string };
  /** Every local edit is acknowledged. */
  synced: { v: number };
  /** The document started over from the server's text; `lost` is the local text given up, if any. */
  reset: { text: string; v: number; lost?: string };
}

interface Inflight {
  op: TextOp;
  seq: number;
  /** The socket generation it was sent on (-1: not sent on the current one). */
  sentGen: number;
}

interface StoredCursor {
  user: string;
  conn: string;
  anchor: number;
  head: number;
}

const RATES: Record<string, [number, number]> = { ops: [20, 40], cursors: [20, 40], reads: [5, 20] };

export class Doc extends Channel<DocEvents> {
  protected readonly openEvent = "doc:snapshot";
  /** The text as this client sees it (the server's plus pending local edits). */
  text = "";
  /** The latest server version known (ops applied); local pending edits come on top of it. */
  version = 0;
  /** The document's epoch, once known. */
  epoch: string | undefined;
  /** Whether this socket may submit ops. */
  canWrite = false;
  /** The client's op source, the same across reconnects. */
  readonly src = randomId(8);

  private loaded = false;
  private seq = 0;
  private inflight: Inflight | null = null;
  private buffer: TextOp | null = null;
  private catchingUp = false;
  private held: Operation[] = [];
  private snapshot: DocSnapshot | null = null;
  private readonly cursorMap = new Map<string, StoredCursor>();
  private wantedCursor: { anchor: number; head: number } | null = null;
  private flushTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly pacers = new Map<string, Pacer>();
  private readyWaiters: (() => void)[] = [];

  constructor(
    client: ClientCore,
    readonly id: string,
    private readonly onClose: () => void,
  ) {
    super(client);
  }

  /** Resolves once the text has loaded. */
  ready(): Promise<this> {
    if (this.loaded) return Promise.resolve(this);
    return new Promise((resolve) => this.readyWaiters.push(() => resolve(this)));
  }

  /** Whether local edits wait for their ack. */
  get pending(): boolean {
    return this.inflight !== null || this.buffer !== null;
  }

  /** Resolves once every local edit so far is acknowledged. */
  whenSynced(): Promise<void> {
    if (!this.pending) return Promise.resolve();
    return new Promise((resolve) => {
      const off = this.on("synced", () => {
        off();
        resolve();
      });
    });
  }

  /** Remote cursors, in UTF-16 units of `text`. */
  get cursors(): Cursor[] {
    return [...this.cursorMap.values()].map((c) => this.toCursor(c));
  }

  /** Inserts `str` at UTF-16 index `index`. */
  insert(index: number, str: string): void {
    this.submitOp([toCodePoints(this.text, index), str]);
  }

  /** Removes `length` UTF-16 units at `index`. */
  remove(index: number, length: number): void {
    const from = toCodePoints(this.text, index);
    const to = toCodePoints(this.text, index + length);
    if (to > from) this.submitOp([from, { d: to - from }]);
  }

  /** Makes the text `next` with one op (a textarea's `input` event: pass its whole value). */
  replace(next: string): void {
    const prev = this.text;
    if (prev === next) return;
    let start = 0;
    const max = Math.min(prev.length, next.length);
    while (start < max && prev.charCodeAt(start) === next.charCodeAt(start)) start++;
    let end = 0;
    while (end < max - start && prev.charCodeAt(prev.length - 1 - end) === next.charCodeAt(next.length - 1 - end)) end++;
    // Never cut a surrogate pair.
    if (start > 0 && isHigh(prev.charCodeAt(start - 1))) start--;
    if (end > 0 && isLow(prev.charCodeAt(prev.length - end))) end--;
    const from = toCodePoints(prev, start);
    const deleted = toCodePoints(prev, prev.length - end) - from;
    const inserted = next.slice(start, next.length - end);
    const op: TextOp = [from];
    if (deleted > 0) op.push({ d: deleted });
    if (inserted) op.push(inserted);
    this.submitOp(op);
  }

  /** Applies a wire op (code points) locally and sends it. Throws if it does not fit the text. */
  submitOp(op: TextOp): void {
    if (!this.loaded) throw new SwitchboardError("not_ready", "the document has not loaded yet (await doc.ready())");
    if (!this.canWrite) throw new SwitchboardError("forbidden", "this token may not write to the document");
    const norm = type.normalize(op);
    if (norm.length === 0) return;
    const next = type.apply(this.text, norm); // throws on an op that does not fit
    this.text = next;
    this.buffer = this.buffer ? type.compose(this.buffer, norm) : norm;
    this.moveCursors(norm, true);
    this.emit("change", { op: norm, remote: false, text: this.text });
    this.flush();
  }

  /** Shows this client's caret (or selection) to the others, in UTF-16 units of `text`. */
  setCursor(anchor: number, head: number = anchor): void {
    this.wantedCursor = { anchor: toCodePoints(this.text, anchor), head: toCodePoints(this.text, head) };
    this.flush();
  }

  override close(): void {
    super.close();
    clearTimeout(this.flushTimer);
    this.onClose();
  }

  protected path(): string {
    const q = this.loaded && this.epoch !== undefined ? `?v=${this.version}&epoch=${encodeURIComponent(this.epoch)}` : "";
    return `/v1/docs/${encodeURIComponent(this.id)}/ws${q}`;
  }

  protected pacerFor(klass: string): Pacer | null {
    let p = this.pacers.get(klass);
    const rate = RATES[klass];
    if (!p && rate) this.pacers.set(klass, (p = pacerFor(rate[0], rate[1])));
    return p ?? null;
  }

  protected handleOpen(d: unknown): void {
    const snap = d as DocSnapshot;
    this.snapshot = snap;
    this.canWrite = snap.canWrite;
    if (!this.loaded) {
      this.startOver(snap);
      this.loaded = true;
      this.emit("open", snap);
      for (const w of this.readyWaiters.splice(0)) w();
      return;
    }
    this.emit("open", snap);
    if (snap.resumed) {
      this.setCursors(snap.cursors);
      this.flush();
    } else if (!this.pending) {
      this.startOver(snap);
      this.emit("reset", { text: this.text, v: this.version });
    } else if (snap.epoch === this.epoch) {
      void this.catchUp();
    } else {
      this.giveUp(snap);
    }
  }

  protected handleFrame(frame: ServerFrame): void {
    switch (frame.t) {
      case "operation": {
        const o = frame.d as Operation;
        if (this.catchingUp) this.held.push(o);
        else {
          try {
            this.applyRemote(o);
          } catch (err) {
            // An op that does not fit our text means we diverged: start over from the server.
            this.resync(new SwitchboardError("internal", `a remote op did not apply: ${String(err)}`));
          }
        }
        return;
      }
      case "cursor:update": {
        const c = frame.d as WireCursor;
        if (c.pos === null) {
          this.cursorMap.delete(c.conn);
          this.emit("cursorLeave", { user: c.user, conn: c.conn });
          return;
        }
        const stored = this.fromWire(c);
        this.cursorMap.set(c.conn, stored);
        this.emit("cursor", this.toCursor(stored));
        return;
      }
    }
  }

  protected override handleDown(): void {
    if (this.inflight) this.inflight.sentGen = -1;
    this.catchingUp = false;
    this.held = [];
    this.cursorMap.clear();
  }

  /** The server's text replaces everything here (nothing pending, or pending given up). */
  private startOver(snap: DocSnapshot): void {
    this.text = snap.text;
    this.version = snap.v;
    this.epoch = snap.epoch;
    this.inflight = null;
    this.buffer = null;
    this.setCursors(snap.cursors);
  }

  private giveUp(snap: DocSnapshot): void {
    const lost = this.text;
    this.startOver(snap);
    for (const o of this.held.splice(0)) this.applyRemote(o);
    this.report(new SwitchboardError("snapshot_required", "the document's history since our version is gone; local edits were dropped"));
    this.emit("reset", { text: this.text, v: this.version, lost });
  }

  /** An op from the server: our own in-flight op is its ack; others transform ours and apply. */
  private applyRemote(o: Operation): void {
    if (o.v < this.version) return; // already applied (replay overlapping a page)
    if (this.inflight && o.src === this.src && o.seq === this.inflight.seq) {
      this.acked(o.v);
      return;
    }
    let remote = o.op;
    if (this.inflight) {
      const mine = type.transform(this.inflight.op, remote, "left");
      remote = type.transform(remote, this.inflight.op, "right");
      this.inflight.op = mine;
    }
    if (this.buffer) {
      const mine = type.transform(this.buffer, remote, "left");
      remote = type.transform(remote, this.buffer, "right");
      this.buffer = mine;
    }
    this.text = type.apply(this.text, remote);
    this.version = o.v + 1;
    this.moveCursors(remote, false);
    this.emit("change", { op: remote, remote: true, text: this.text });
  }

  private acked(v: number): void {
    this.inflight = null;
    this.version = v + 1;
    if (!this.buffer) this.emit("synced", { v: this.version });
    this.flush();
  }

  /** Sends the next op (and the wanted cursor) when the socket, the pacer and the protocol allow. */
  private flush(): void {
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    if (!this.live || this.catchingUp) return;
    if (!this.inflight && this.buffer) {
      this.inflight = { op: this.buffer, seq: ++this.seq, sentGen: -1 };
      this.buffer = null;
    }
    if (this.inflight && this.inflight.sentGen !== this.gen) {
      const pacer = this.pacerFor("ops")!;
      const wait = pacer.delay();
      if (wait > 0) {
        this.flushTimer = setTimeout(() => this.flush(), wait);
        return;
      }
      pacer.take();
      const sent = this.inflight;
      const gen = this.gen;
      const ok = this.sendWithReply(
        "op:submit",
        { v: this.version, op: sent.op, src: this.src, seq: sent.seq } satisfies OpSubmitRequest,
        (reply) => this.onSubmitReply(sent, gen, reply),
        () => {},
      );
      if (ok) sent.sentGen = gen;
      return;
    }
    // Cursors go only while nothing is pending: a position must refer to a server version.
    if (!this.pending && this.wantedCursor) {
      const pacer = this.pacerFor("cursors")!;
      const wait = pacer.delay();
      if (wait > 0) {
        this.flushTimer = setTimeout(() => this.flush(), wait);
        return;
      }
      pacer.take();
      const { anchor, head } = this.wantedCursor;
      this.wantedCursor = null;
      const d: CursorUpdateRequest = anchor === head ? { pos: head, v: this.version } : { anchor, head, v: this.version };
      this.sendWithReply("cursor:update", d, () => {}, () => {});
    }
  }

  private onSubmitReply(sent: Inflight, gen: number, reply: ServerFrame): void {
    if (this.inflight !== sent) return;
    if (reply.ok) return this.acked((reply.d as { v: number }).v);
    const err = fromWire(reply.error);
    if (err.code === "rate_limited" || err.code === "internal") {
      if (sent.sentGen === gen) sent.sentGen = -1;
      this.pacerFor("ops")!.pause(err.retryAfterMs ?? 1000);
      this.flush();
      return;
    }
    if (err.code === "snapshot_required") {
      if (sent.sentGen === gen) sent.sentGen = -1;
      void this.catchUp();
      return;
    }
    // forbidden, bad_request, too_large, bad_version: this edit cannot be applied.
    this.resync(err);
  }

  /**
   * Starts over from the server's text: reconnects without a version (so the snapshot replaces
   * everything), reporting `err` and emitting `reset` with the local text that was dropped.
   */
  private resync(err: SwitchboardError): void {
    this.report(err);
    const lost = this.text;
    this.inflight = null;
    this.buffer = null;
    this.loaded = false;
    this.once("open", (snap) => this.emit("reset", { text: snap.text, v: snap.v, lost }));
    this.replaceSocket();
  }

  /**
   * Rebases pending edits over the ops since `version`, read with `ops:get`; live `operation`s
   * that arrive meanwhile wait and apply after (those already covered are skipped by version).
   */
  private async catchUp(): Promise<void> {
    if (this.catchingUp) return;
    this.catchingUp = true;
    const gen = this.gen;
    try {
      let from = this.version;
      for (;;) {
        const page = await this.request<{ ops: Operation[]; next: number; v: number }>("ops:get", { from }, { klass: "reads" });
        if (gen !== this.gen) return;
        for (const o of page.ops) this.applyRemote(o);
        if (page.next >= page.v || page.next <= from) break;
        from = page.next;
      }
    } catch (err) {
      if (gen !== this.gen) return;
      if (err instanceof SwitchboardError && err.code === "snapshot_required" && this.snapshot) {
        this.catchingUp = false;
        return this.giveUp(this.snapshot);
      }
      this.catchingUp = false;
      this.report(err as SwitchboardError);
      return;
    }
    this.catchingUp = false;
    for (const o of this.held.splice(0)) this.applyRemote(o);
    if (this.inflight) this.inflight.sentGen = -1;
    this.flush();
  }

  private setCursors(list: WireCursor[]): void {
    this.cursorMap.clear();
    for (const c of list) if (c.pos !== null) this.cursorMap.set(c.conn, this.fromWire(c));
  }

  /** A server cursor (at the server's version) moved over our pending edits. */
  private fromWire(c: WireCursor): StoredCursor {
    let anchor = c.anchor ?? c.pos ?? 0;
    let head = c.head ?? c.pos ?? 0;
    for (const op of [this.inflight?.op, this.buffer]) {
      if (!op) continue;
      anchor = type.transformPosition(anchor, op);
      head = type.transformPosition(head, op);
    }
    return { user: c.user, conn: c.conn, anchor, head };
  }

  private moveCursors(op: TextOp, _local: boolean): void {
    for (const c of this.cursorMap.values()) {
      c.anchor = type.transformPosition(c.anchor, op);
      c.head = type.transformPosition(c.head, op);
    }
  }

  private toCursor(c: StoredCursor): Cursor {
    return { user: c.user, conn: c.conn, anchor: toUtf16(this.text, c.anchor), head: toUtf16(this.text, c.head) };
  }
}

const isHigh = (c: number) => c >= 0xd800 && c <= 0xdbff;
const isLow = (c: number) => c >= 0xdc00 && c <= 0xdfff;
