/**
 * A room: one socket, its recovery position (`seq`, `epoch`), its outbox, and the room's live
 * picture (members, typing, state). Reconnects resume with `?since=&epoch=`; when the server
 * cannot replay what was missed (`recovered: false`) the room reloads the latest history page and
 * emits `reset` with it, so an app's message list never has a silent gap.
 *
 * The outbox: `send` queues a message with a client id and sends it when the socket is ready, at
 * the documented rate; a message whose ack did not come before the socket went is sent again on
 * the next socket with the same id, and the server's idempotency stores it once. Acks resolve the
 * promises; a timeout rejects but keeps the message queued (its later ack emits `ack`). The outbox
 * lives in memory: a page reload loses what was not sent.
 */
import { Channel, type ChannelEvents, type WebSocketConstructor } from "./channel.js";
import { RoomStreamSocket } from "./stream.js";
import type { ClientCore } from "./core.js";
import { SwitchboardError, fromWire } from "./errors.js";
import type {
  Broadcast,
  BroadcastRequest,
  HistoryRequest,
  MembersDiff,
  MembersGetRequest,
  MembersPage,
  Message,
  RoomState,
  SendAck,
  SendMessageRequest,
  ServerFrame,
  Signal,
  SignalRequest,
  StateEntry,
  StateSetRequest,
  StateUpdate,
} from "./types.js";
import { codePointLength, Pacer, pacerFor, randomId } from "./util.js";

export interface RoomEvents extends ChannelEvents {
  /** The socket opened (first connect and every reconnect), with `room:state`. */
  open: RoomState;
  /** A message from someone else (or your other tabs), in `seq` order, never twice. */
  message: Message;
  /**
   * The members known now (user ids, sorted), on join, leave, `members:diff`, a loaded page and
   * (re)connect. In a room of more than `ROOM_MEMBER_LIST_MAX` (100) members it is a view, not
   * everyone: `memberCount` is the total and `loadMoreMembers()` pages in the rest.
   */
  members: string[];
  /** The number of members (distinct users), when it changes. */
  memberCount: number;
  /**
   * Users typing now (sorted, at most `ROOM_MEMBER_LIST_MAX`), when the list changes; in a large
   * room at most once a second. It may name you (your other tabs; in a large room this socket
   * too): leave `user` out when you show it.
   */
  typing: string[];
  /** A live state key changed. */
  state: StateUpdate;
  signal: Signal;
  broadcast: Broadcast;
  /** Messages may have been missed (recovery impossible): replace the list with `messages`. */
  reset: { messages: Message[]; state: RoomState };
  /** An outbox message was stored (also for those whose `send` promise already timed out). */
  ack: SendAck;
}

export interface SendOptions {
  /** Application data carried with the message. */
  data?: unknown;
  /** The client message id (default: a random one); resends with it are stored once. */
  id?: string;
  /** Reject the promise after this long (the message stays queued). Default `requestTimeoutMs`. */
  timeoutMs?: number;
}

interface OutboxEntry {
  id: string;
  text: string;
  data: unknown;
  /** The socket generation it was last sent on (-1: not on the current one). */
  sentGen: number;
  settled: boolean;
  resolve: (ack: SendAck) => void;
  reject: (err: SwitchboardError) => void;
  timer: ReturnType<typeof setTimeout> | undefined;
}

/** The documented room rates (docs/protocol.md, Room events, Rate limits). */
const RATES: Record<string, [number, number]> = {
  messages: [10, 20],
  typing: [4, 8],
  state: [10, 20],
  signals: [20, 50],
  broadcasts: [5, 10],
  reads: [5, 20],
};

/** `typing()` sends `typing:start` at most this often while it keeps being called. */
const TYPING_RESEND_MS = 2_500;

export class Room extends Channel<RoomEvents> {
  protected readonly openEvent = "room:state";
  /** The latest `seq` received; reconnects resume after it. */
  seq = 0;
  /** The room log's epoch, once known. */
  epoch: string | undefined;
  /** This socket's `connId` (changes on every reconnect). */
  connId: string | undefined;
  /** Members (user ids), typing users and live state as last known. */
  members: string[] = [];
  /** The total number of members (`members` may hold fewer in a large room). */
  memberCount = 0;
  /** Set while `members` is partial: where `loadMoreMembers()` continues. */
  membersNext: string | undefined;
  typingUsers: string[] = [];
  state: Record<string, StateEntry> = {};


  private readonly outbox: OutboxEntry[] = [];
  /** Seqs of our own messages acked beyond `seq` (a gap before them is still to come). */
  private readonly ownAhead = new Set<number>();
  /** The token's user (`sub`), from `room:state`. */
  user: string | undefined;
  private readonly pacers = new Map<string, Pacer>();
  private pumping = false;
  private holdUntil = 0;
  private lastTyping = 0;

  constructor(
    client: ClientCore,
    readonly id: string,
    private readonly onClose: () => void,
  ) {
    super(client);
  }

  /** Opens the socket now (it also opens on the first listener, send or request). */
  join(): this {
    this.start();
    return this;
  }

  override on<K extends keyof RoomEvents>(event: K, fn: (value: RoomEvents[K]) => void): () => void {
    const off = super.on(event, fn);
    this.start();
    return off;
  }

  /** Messages waiting for their ack, in order. */
  get pending(): { id: string; text: string; data: unknown }[] {
    return this.outbox.map(({ id, text, data }) => ({ id, text, data }));
  }

  /**
   * Sends a message; resolves with its `{seq, id, ts}` once stored. Queued while offline and
   * replayed in order on reconnect; rejects with `timeout` (still queued), or with the server's
   * error when it refuses the message for good (`too_large`, `forbidden`, `bad_request`).
   */
  send(text: string, options: SendOptions = {}): Promise<SendAck> {
    this.start();
    const id = options.id ?? randomId(9);
    if (codePointLength(text) > this.client.options.maxTextChars) {
      return Promise.reject(new SwitchboardError("too_large", `text over ${this.client.options.maxTextChars} characters`));
    }
    try {
      this.encode({ t: "message:send", ref: 2 ** 53 - 1, d: { text, id, data: options.data } satisfies SendMessageRequest });
    } catch (err) {
      return Promise.reject(err);
    }
    if (this.status === "closed") return Promise.reject(new SwitchboardError("closed", "the room is closed"));
    return new Promise<SendAck>((resolve, reject) => {
      const entry: OutboxEntry = { id, text, data: options.data, sentGen: -1, settled: false, resolve, reject, timer: undefined };
      entry.timer = setTimeout(() => {
        if (entry.settled) return;
        entry.settled = true;
        reject(new SwitchboardError("timeout", `no ack for message ${id} in time; it stays queued`));
      }, options.timeoutMs ?? this.client.options.requestTimeoutMs);
      this.outbox.push(entry);
      this.lastTyping = 0; // the server ends typing with a message; the next keystroke says so again
      this.pumpOutbox();
    });
  }

  /** Says the user is typing; call it on every keystroke: frames are throttled. */
  typing(active = true): void {
    if (!this.live || this.transport === "stream") return;
    const now = Date.now();
    if (active) {
      if (now - this.lastTyping < TYPING_RESEND_MS) return;
      this.lastTyping = now;
      this.paced("typing", () => this.rawSend('{"t":"typing:start"}'));
    } else if (this.lastTyping) {
      this.lastTyping = 0;
      this.paced("typing", () => this.rawSend('{"t":"typing:stop"}'));
    }
  }

  /** Sets a live state key; `ifVersion` writes only at that version (0: only a new key). */
  setState(key: string, value: unknown, options: { ifVersion?: number; timeoutMs?: number } = {}): Promise<{ version: number }> {
    const d: StateSetRequest = { key, value };
    if (options.ifVersion !== undefined) d.ifVersion = options.ifVersion;
    return this.request("state:set", d, { klass: "state", timeoutMs: options.timeoutMs });
  }

  /** A history page, oldest first: messages with `seq < before` (default the newest), `limit` ≤ 100. */
  async history(options: { before?: number; limit?: number; timeoutMs?: number } = {}): Promise<Message[]> {
    const d: HistoryRequest = {};
    if (options.before !== undefined) d.before = options.before;
    if (options.limit !== undefined) d.limit = options.limit;
    const reply = await this.request<{ messages: Message[] }>("history:get", d, { klass: "reads", timeoutMs: options.timeoutMs });
    return reply.messages;
  }

  /**
   * One page of the room's members in id order after `after` (`members:get`), as the server
   * answers it; `next` is the `after` of the following page. `room.members` is not changed.
   */
  async membersPage(options: { after?: string; limit?: number; timeoutMs?: number } = {}): Promise<MembersPage> {
    const d: MembersGetRequest = {};
    if (options.after !== undefined) d.after = options.after;
    if (options.limit !== undefined) d.limit = options.limit;
    return this.request<MembersPage>("members:get", d, { klass: "reads", timeoutMs: options.timeoutMs });
  }

  /** Whether `members` is partial and `loadMoreMembers()` has more to load. */
  get hasMoreMembers(): boolean {
    return this.membersNext !== undefined;
  }

  /**
   * Loads the next page of members into `members` (a large room's list is partial) and emits
   * `members`; resolves with whether more remain. Does nothing when the list is complete.
   */
  async loadMoreMembers(options: { limit?: number; timeoutMs?: number } = {}): Promise<boolean> {
    const after = this.membersNext;
    if (after === undefined) return false;
    const page = await this.membersPage({ ...options, after });
    // A reconnect meanwhile started the list over: this page belongs to the old one.
    if (this.membersNext !== after) return this.hasMoreMembers;
    this.membersNext = page.next;
    this.setMembers(merge(this.members, page.members.map((m) => m.user)), page.count);
    return this.hasMoreMembers;
  }

  private setMembers(members: string[], count: number): void {
    this.members = members;
    const changed = count !== this.memberCount;
    this.memberCount = count;
    this.emit("members", this.members);
    if (changed) this.emit("memberCount", count);
  }

  private applyDiff(diff: MembersDiff): void {
    if (diff.members) {
      this.membersNext = undefined;
      return this.setMembers(diff.members.map((m) => m.user).sort(), diff.count);
    }
    // A truncated diff lists nobody: the list stays as it was (page again to refresh it), the
    // count is exact. Everyone asking for pages at once would be the storm diffs avoid.
    const leaves = new Set(diff.leaves.map((m) => m.user));
    const kept = this.members.filter((u) => !leaves.has(u));
    this.setMembers(merge(kept, diff.joins.map((m) => m.user)), diff.count);
  }

  /** Relays `data` to `to`'s sockets in this room (or only `toConn`). */
  signal(to: string, data: unknown, options: { toConn?: string } = {}): Promise<{ delivered: number }> {
    const d: SignalRequest = { to, data, ...(options.toConn ? { toConn: options.toConn } : {}) };
    return this.request("signal", d, { klass: "signals" });
  }

  /** Ephemeral fan-out to everyone else in the room (not stored). */
  broadcast(event: string, data?: unknown): Promise<unknown> {
    return this.request("broadcast", { event, data } satisfies BroadcastRequest, { klass: "broadcasts" });
  }

  /** Leaves the room: closes its socket; queued messages reject with `closed`. */
  override close(): void {
    super.close();
    for (const e of this.outbox.splice(0)) this.settle(e, new SwitchboardError("closed", "the room was closed"));
    this.onClose();
  }

  /**
   * Where WebSockets are blocked, the room reads its event stream and sends over HTTP (typing,
   * state, signals and broadcasts are unavailable meanwhile; see `transport`).
   */
  protected override fallbackTransport(): WebSocketConstructor {
    return RoomStreamSocket;
  }

  protected path(): string {
    let q = "";
    if (this.epoch !== undefined) q = `?since=${this.seq}&epoch=${encodeURIComponent(this.epoch)}`;
    return `/v1/rooms/${encodeURIComponent(this.id)}/ws${q}`;
  }

  protected pacerFor(klass: string): Pacer | null {
    let p = this.pacers.get(klass);
    const rate = RATES[klass];
    if (!p && rate) this.pacers.set(klass, (p = pacerFor(rate[0], rate[1])));
    return p ?? null;
  }

  private paced(klass: string, send: () => void): void {
    this.enqueue(klass, { cancelled: () => false, send });
  }

  protected handleOpen(d: unknown): void {
    const state = d as RoomState;
    const recovering = this.epoch !== undefined;
    this.connId = state.connId;
    this.user = state.user;
    this.members = state.members.map((m) => m.user);
    const countChanged = this.memberCount !== (state.memberCount ?? this.members.length);
    this.memberCount = state.memberCount ?? this.members.length;
    this.membersNext = state.membersNext;
    this.typingUsers = state.typing;
    this.state = state.state;
    const lost = recovering && state.recovered === false;
    this.epoch = state.epoch;
    if (!recovering || lost) {
      this.seq = state.seq;
      this.ownAhead.clear();
    }
    this.emit("open", state);
    this.emit("members", this.members);
    if (countChanged) this.emit("memberCount", this.memberCount);
    this.emit("typing", this.typingUsers);
    if (lost) void this.reload(state);
    this.pumpOutbox();
  }

  /** Recovery was impossible: the latest history page replaces whatever the app showed. */
  private async reload(state: RoomState): Promise<void> {
    let messages: Message[] = [];
    try {
      messages = await this.history({ limit: 50 });
    } catch (err) {
      this.report(err as SwitchboardError);
    }
    this.emit("reset", { messages, state });
  }

  protected handleFrame(frame: ServerFrame): void {
    const d = frame.d as Record<string, unknown>;
    switch (frame.t) {
      case "message:receive": {
        const m = d as unknown as Message;
        if (m.seq <= this.seq) return; // replayed twice (a recovery overlapping a live frame)
        this.advance(m.seq);
        if (this.ownAhead.delete(m.seq)) return; // our own, acked on this socket, replayed later
        // Our own message replayed after its ack was lost with the socket: it is stored, and
        // the app has it already (it sent it).
        const mine = this.outbox.find((e) => e.id === m.id && m.user === this.user);
        if (mine) return this.acked(mine, { seq: m.seq, id: m.id, ts: m.ts });
        this.emit("message", m);
        return;
      }
      // A small room: the list is complete, so its length is the count.
      case "member:join": {
        const members = this.members.includes(d.user as string) ? this.members : [...this.members, d.user as string].sort();
        this.setMembers(members, this.membersNext === undefined ? members.length : this.memberCount + 1);
        return;
      }
      case "member:leave": {
        const members = this.members.filter((u) => u !== d.user);
        this.setMembers(members, this.membersNext === undefined ? members.length : Math.max(0, this.memberCount - 1));
        return;
      }
      case "members:diff":
        this.applyDiff(d as unknown as MembersDiff);
        return;
      case "typing:update":
        this.typingUsers = d.users as string[];
        this.emit("typing", this.typingUsers);
        return;
      case "state:update": {
        const u = d as unknown as StateUpdate;
        this.state = { ...this.state, [u.key]: { value: u.value, version: u.version, user: u.user } };
        this.emit("state", u);
        return;
      }
      case "signal":
        this.emit("signal", d as unknown as Signal);
        return;
      case "broadcast":
        this.emit("broadcast", d as unknown as Broadcast);
        return;
    }
  }

  protected override handleDown(): void {
    for (const e of this.outbox) e.sentGen = -1;
    this.lastTyping = 0;
  }

  /** Sends the outbox's unsent entries in order, paced to the message rate. */
  private pumpOutbox(): void {
    if (this.pumping) return;
    const pacer = this.pacerFor("messages")!;
    while (this.live) {
      const entry = this.outbox.find((e) => e.sentGen !== this.gen);
      if (!entry) return;
      const wait = Math.max(pacer.delay(), this.holdUntil - Date.now());
      if (wait > 0) {
        this.pumping = true;
        setTimeout(() => {
          this.pumping = false;
          this.pumpOutbox();
        }, wait);
        return;
      }
      pacer.take();
      const d: SendMessageRequest = { text: entry.text, id: entry.id };
      if (entry.data !== undefined) d.data = entry.data;
      const gen = this.gen;
      const sent = this.sendWithReply("message:send", d, (reply) => this.onSendReply(entry, gen, reply), () => {});
      if (!sent) return;
      entry.sentGen = gen;
    }
  }

  private onSendReply(entry: OutboxEntry, gen: number, reply: ServerFrame): void {
    if (!this.outbox.includes(entry)) return;
    if (reply.ok) return this.acked(entry, reply.d as SendAck);
    const err = fromWire(reply.error);
    if (err.code === "rate_limited" || err.code === "internal") {
      // Shared budgets (other tabs) or a hiccup: wait as told and send it again, in place.
      const wait = err.retryAfterMs ?? 1000;
      this.holdUntil = Date.now() + wait;
      this.pacerFor("messages")!.pause(wait);
      if (entry.sentGen === gen) entry.sentGen = -1;
      this.pumpOutbox();
      return;
    }
    this.outbox.splice(this.outbox.indexOf(entry), 1);
    this.settle(entry, err);
    this.report(err);
  }

  /** Moves the recovery position to `seq`, and past our own acked messages right after it. */
  private advance(seq: number): void {
    this.seq = Math.max(this.seq, seq);
    while (this.ownAhead.delete(this.seq + 1)) this.seq++;
  }

  private acked(entry: OutboxEntry, ack: SendAck): void {
    const i = this.outbox.indexOf(entry);
    if (i < 0) return;
    this.outbox.splice(i, 1);
    if (ack.seq === this.seq + 1) this.advance(ack.seq);
    else if (ack.seq > this.seq) this.ownAhead.add(ack.seq);
    this.settle(entry, null, ack);
    this.emit("ack", ack);
  }

  private settle(entry: OutboxEntry, err: SwitchboardError | null, ack?: SendAck): void {
    clearTimeout(entry.timer);
    if (entry.settled) return;
    entry.settled = true;
    if (err) entry.reject(err);
    else entry.resolve(ack!);
  }
}

/** `a` and `b` as one sorted list without duplicates. */
function merge(a: string[], b: string[]): string[] {
  if (b.length === 0) return a;
  return [...new Set([...a, ...b])].sort();
}
