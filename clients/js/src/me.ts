/**
 * The user's own object (`/v1/users/me/ws`): their status on every device, the users they
 * watch, and their notifications. Watch subscriptions are made again after every reconnect (the
 * server keeps them, and subscribing again returns a fresh picture). Where WebSockets are
 * blocked it uses the object's event stream (`/v1/users/me/events`) and HTTP writes instead,
 * with the same API (see `Channel` for when it falls back and comes back).
 */
import { Channel, type ChannelEvents, type StreamSocketConstructor } from "./channel.js";
import type { ClientCore } from "./core.js";
import type {
  Notification,
  NotificationListRequest,
  NotificationReadRequest,
  Presence,
  PresenceSetRequest,
  ServerFrame,
  Status,
  UserState,
  UsersRequest,
} from "./types.js";
import { UserStreamSocket } from "./stream.js";
import { Pacer, pacerFor } from "./util.js";

export interface MeEvents extends ChannelEvents {
  /** The socket opened, with `user:state`. */
  open: UserState;
  /** A watched user's status changed, or your own (from any of your devices). */
  presence: Presence;
  /** A notification arrived. */
  notification: Notification;
  /** The unread count changed. */
  unread: number;
}

/** `presence:active` at most this often. */
const ACTIVE_EVERY_MS = 5_000;

export class Me extends Channel<MeEvents> {
  protected readonly openEvent = "user:state";
  /** `user:state` as of the last (re)connect, updated by your own presence changes. */
  state: UserState | undefined;
  /** Unread notifications. */
  unread = 0;
  /** Watched users' statuses as last heard. */
  readonly watching = new Map<string, Presence>();

  /** All frames on all of a user's sockets share one bucket: 10/s, burst 30. */
  private readonly pacer: Pacer = pacerFor(10, 30);
  private lastActive = 0;

  constructor(
    client: ClientCore,
    private readonly onClose: () => void,
  ) {
    super(client);
  }

  /** Chooses a status (`activity` is optional free text shown with it). */
  setStatus(status: Status, activity?: string): Promise<Presence> {
    const d: PresenceSetRequest = activity === undefined ? { status } : { status, activity };
    return this.request("presence:set", d);
  }

  /** Marks user activity (call it on interaction; sent at most every 5 s). */
  active(): void {
    const now = Date.now();
    if (!this.live || now - this.lastActive < ACTIVE_EVERY_MS) return;
    this.lastActive = now;
    this.request("presence:active", {}).catch(() => {});
  }

  /** Watches `users`' status; resolves with their current statuses. Renewed on reconnect. */
  async subscribe(users: string[]): Promise<Presence[]> {
    for (const u of users) if (!this.watching.has(u)) this.watching.set(u, { user: u, status: "offline", lastSeen: 0 });
    const reply = await this.request<{ presence: Presence[] }>("presence:subscribe", { users } satisfies UsersRequest, {
      onReply: (d) => {
        for (const p of d.presence) this.watching.set(p.user, p);
      },
    });
    // What `watching` holds now, not the reply's view: a `presence:update` that followed the
    // reply in the same batch is newer than it.
    return reply.presence.map((p) => this.watching.get(p.user) ?? p);
  }

  /** Stops watching `users`. */
  async unsubscribe(users: string[]): Promise<void> {
    for (const u of users) this.watching.delete(u);
    await this.request("presence:unsubscribe", { users } satisfies UsersRequest);
  }

  /** An inbox page, newest first. */
  notifications(options: { before?: number; limit?: number } = {}): Promise<{ notifications: Notification[]; unread: number }> {
    return this.request("notification:list", options satisfies NotificationListRequest);
  }

  /** Marks notifications read (`"all"` or ids); resolves with the new unread count. */
  async markRead(ids: number[] | "all"): Promise<number> {
    const reply = await this.request<{ unread: number }>("notification:read", (ids === "all" ? { all: true } : { ids }) satisfies NotificationReadRequest);
    return reply.unread;
  }

  override close(): void {
    super.close();
    this.onClose();
  }

  protected path(): string {
    return "/v1/users/me/ws";
  }

  protected pacerFor(): Pacer {
    return this.pacer;
  }

  protected override fallbackTransport(): StreamSocketConstructor {
    return UserStreamSocket;
  }

  protected handleOpen(d: unknown): void {
    this.state = d as UserState;
    this.setUnread(this.state.unread);
    this.emit("open", this.state);
    const users = [...this.watching.keys()];
    if (users.length) this.subscribe(users).catch((err) => this.report(err));
  }

  protected handleFrame(frame: ServerFrame): void {
    switch (frame.t) {
      case "presence:update": {
        const p = frame.d as Presence;
        if (this.state && p.user === this.state.user) this.state = { ...this.state, ...p };
        else if (this.watching.has(p.user)) this.watching.set(p.user, p);
        this.emit("presence", p);
        return;
      }
      case "notification:new":
        this.emit("notification", frame.d as Notification);
        return;
      case "notification:count":
        this.setUnread((frame.d as { unread: number }).unread);
        return;
    }
  }

  private setUnread(n: number): void {
    if (n === this.unread) return;
    this.unread = n;
    this.emit("unread", n);
  }
}
