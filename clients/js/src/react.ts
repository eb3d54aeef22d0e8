/**
 * React bindings (`@switchboard/client/react`), for React ≥ 18. Hooks share one client from
 * `<SwitchboardProvider client={...}>`; rooms and documents are opened while a component uses
 * them and closed shortly after the last one unmounts. That delay is what makes them safe under
 * StrictMode: its simulated unmount and remount reuse the same socket instead of opening two.
 *
 * `useSwitchboard(url, options)` is the seed apps' `useSocket()` shape (`{socket, connected, emit,
 * on, reconnectAttempts}`) over the Socket.IO facade, for apps moving over with little change.
 */
import { createContext, createElement, useCallback, useContext, useEffect, useRef, useState, type ReactNode } from "react";
import type { Client, ClientStatus } from "./client.js";
import type { Room, SendOptions } from "./room.js";
import type { Doc, Cursor } from "./doc.js";
import type { Me } from "./me.js";
import type { Message, Notification, Presence, SendAck, UserState } from "./types.js";
import { io, type FacadeOptions, type Socket } from "./socket.io.js";

const ClientContext = createContext<Client | null>(null);

/** Makes `client` available to the hooks below it. Create the client once, outside render. */
export function SwitchboardProvider(props: { client: Client; children?: ReactNode }) {
  return createElement(ClientContext.Provider, { value: props.client }, props.children);
}

/** The client of the nearest `SwitchboardProvider`. */
export function useClient(): Client {
  const client = useContext(ClientContext);
  if (!client) throw new Error("wrap your components in <SwitchboardProvider client={createClient(...)}>");
  return client;
}

/** The client's connection status, re-rendering on change. */
export function useConnectionStatus(): ClientStatus {
  const client = useClient();
  const [status, setStatus] = useState(client.status);
  useEffect(() => {
    setStatus(client.status);
    return client.on("status", setStatus);
  }, [client]);
  return status;
}

/** Users of a room or document, so the last one to unmount closes it (a tick later). */
const users = new WeakMap<object, { count: number; timer?: ReturnType<typeof setTimeout> }>();

function retain(channel: Room | Doc): () => void {
  let entry = users.get(channel);
  if (!entry) users.set(channel, (entry = { count: 0 }));
  clearTimeout(entry.timer);
  entry.count++;
  const e = entry;
  return () => {
    if (--e.count > 0) return;
    e.timer = setTimeout(() => {
      if (e.count === 0) {
        users.delete(channel);
        channel.close();
      }
    }, 0);
  };
}

/** The room `id`, open while the component is mounted. */
export function useRoom(id: string): Room {
  const client = useClient();
  const room = client.room(id);
  useEffect(() => {
    const release = retain(room);
    room.join();
    return release;
  }, [room]);
  return room;
}

/** A message in `useMessages`: stored ones have `seq`; your unacknowledged ones are `pending`. */
export type ListedMessage = Message | (Omit<Message, "seq" | "ts"> & { seq?: undefined; ts?: undefined; pending: true });

/**
 * Stored messages in `seq` order, then the pending ones in the order they were sent. Arrival
 * order is not enough: after a reconnect the messages others sent meanwhile are replayed after
 * yours were already listed as pending, yet they come first in the room.
 */
function ordered(list: ListedMessage[]): ListedMessage[] {
  const stored = list.filter((m): m is Message => m.seq !== undefined).sort((a, b) => a.seq - b.seq);
  return [...stored, ...list.filter((m) => m.seq === undefined)];
}

/**
 * The room's messages, in the room's order: the latest history page, then live ones; your own
 * appear at once as `pending` (after the stored ones) and settle with their ack into their
 * `seq`'s place. A `reset` (missed messages that could not be replayed) replaces the list.
 */
export function useMessages(id: string, options: { limit?: number } = {}) {
  const room = useRoom(id);
  const [messages, setMessages] = useState<ListedMessage[]>([]);
  const limit = options.limit ?? 50;
  useEffect(() => {
    let loaded = false;
    const merge = (list: ListedMessage[], m: Message) => {
      const i = list.findIndex((x) => x.id === m.id && (x.seq === undefined || x.seq === m.seq));
      if (i >= 0) return ordered(list.map((x, j) => (j === i ? m : x)));
      return ordered([...list, m]);
    };
    // The latest page once, when the socket first opens (or now, if it is open already); live
    // messages that arrived meanwhile stay after it.
    const load = () => {
      if (loaded) return;
      loaded = true;
      room
        .history({ limit })
        .then((page) => {
          const last = page.length ? page[page.length - 1]!.seq : 0;
          setMessages((prev) => [...page, ...prev.filter((m) => m.seq === undefined || m.seq > last)]);
        })
        .catch(() => {});
    };
    const offs = [
      room.on("open", load),
      room.on("message", (m) => setMessages((prev) => merge(prev, m))),
      room.on("ack", (a: SendAck) =>
        setMessages((prev) =>
          ordered(prev.map((m) => (m.seq === undefined && m.id === a.id ? ({ ...m, seq: a.seq, ts: a.ts, pending: undefined } as unknown as Message) : m))),
        ),
      ),
      room.on("reset", ({ messages: page }) => setMessages((prev) => [...page, ...prev.filter((m) => m.seq === undefined)])),
    ];
    if (room.isOpen) load();
    return () => offs.forEach((off) => off());
  }, [room, limit]);
  const send = useCallback(
    (text: string, opts: SendOptions = {}) => {
      const id = opts.id ?? `m-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
      setMessages((prev) => [...prev, { room: room.id, id, user: room.user ?? "", text, data: opts.data, pending: true }]);
      return room.send(text, { ...opts, id });
    },
    [room],
  );
  return { messages, send };
}

/**
 * Who is typing in the room (it may name you: filter out your own id), and `onType` to call on
 * every keystroke (throttled).
 */
export function useTyping(id: string) {
  const room = useRoom(id);
  const [typing, setTyping] = useState<string[]>(room.typingUsers);
  useEffect(() => room.on("typing", setTyping), [room]);
  const onType = useCallback(() => room.typing(true), [room]);
  const stop = useCallback(() => room.typing(false), [room]);
  return { typing, onType, stop };
}

/**
 * The room's members: `members` (user ids, sorted; in a room of more than
 * `ROOM_MEMBER_LIST_MAX` (100) members the ones loaded so far), `count` (everyone), `more`
 * (whether `loadMore` has more to load) and `loadMore` (the next page).
 */
export function useMembers(id: string): { members: string[]; count: number; more: boolean; loadMore: () => Promise<boolean> } {
  const room = useRoom(id);
  const [members, setMembers] = useState<string[]>(room.members);
  const [count, setCount] = useState<number>(room.memberCount);
  useEffect(() => {
    const offs = [
      room.on("members", (m) => {
        setMembers(m);
        setCount(room.memberCount);
      }),
      room.on("memberCount", setCount),
    ];
    return () => offs.forEach((off) => off());
  }, [room]);
  const loadMore = useCallback(() => room.loadMoreMembers(), [room]);
  return { members, count, more: room.hasMoreMembers, loadMore };
}

function useMe(): Me {
  const client = useClient();
  return client.me();
}

/** Your status and that of `watch` (subscribed while mounted); `setStatus` chooses yours. */
export function usePresence(watch: string[] = []) {
  const me = useMe();
  const [state, setState] = useState<UserState | undefined>(me.state);
  const [statuses, setStatuses] = useState<Record<string, Presence>>({});
  const key = watch.join(",");
  useEffect(() => {
    const offs = [
      me.on("open", (s) => setState(s)),
      me.on("presence", (p) => {
        if (me.state && p.user === me.state.user) setState({ ...me.state });
        else setStatuses((prev) => ({ ...prev, [p.user]: p }));
      }),
    ];
    const list = key ? key.split(",") : [];
    if (list.length) {
      me.subscribe(list)
        // `me.watching` is the newest view (the reply and every later update applied in wire
        // order); the reply's own list may be older than an update of the same batch.
        .then((ps) => setStatuses((prev) => ({ ...prev, ...Object.fromEntries(ps.map((p) => [p.user, me.watching.get(p.user) ?? p])) })))
        .catch(() => {});
    }
    return () => offs.forEach((off) => off());
  }, [me, key]);
  const setStatus = useCallback((status: Presence["status"], activity?: string) => me.setStatus(status, activity), [me]);
  return { me: state, statuses, setStatus };
}

/** The unread count, notifications that arrived while mounted (newest first), and `markRead`. */
export function useNotifications() {
  const me = useMe();
  const [unread, setUnread] = useState(me.unread);
  const [notifications, setNotifications] = useState<Notification[]>([]);
  useEffect(() => {
    setUnread(me.unread);
    const offs = [me.on("unread", setUnread), me.on("notification", (n) => setNotifications((prev) => [n, ...prev]))];
    return () => offs.forEach((off) => off());
  }, [me]);
  const markRead = useCallback((ids: number[] | "all") => me.markRead(ids), [me]);
  return { unread, notifications, markRead };
}

/** A document's text (re-rendering on every change), cursors, and edits in UTF-16 units. */
export function useDocument(id: string) {
  const client = useClient();
  const doc = client.doc(id);
  const [snapshot, setSnapshot] = useState({ text: doc.text, version: doc.version, ready: false, cursors: [] as Cursor[] });
  useEffect(() => {
    const release = retain(doc);
    const update = () => setSnapshot({ text: doc.text, version: doc.version, ready: true, cursors: doc.cursors });
    const offs = [doc.on("change", update), doc.on("open", update), doc.on("reset", update), doc.on("cursor", update), doc.on("cursorLeave", update), doc.on("synced", update)];
    void doc.ready().then(update);
    return () => {
      offs.forEach((off) => off());
      release();
    };
  }, [doc]);
  const replace = useCallback((next: string) => doc.replace(next), [doc]);
  const setCursor = useCallback((anchor: number, head?: number) => doc.setCursor(anchor, head), [doc]);
  return { ...snapshot, doc, replace, setCursor };
}

/**
 * The seed apps' `useSocket()` shape over the Socket.IO facade: `{socket, connected, emit, on,
 * reconnectAttempts}`. One socket per mounted component, StrictMode included.
 */
export function useSwitchboard(url: string, options: FacadeOptions) {
  const held = useRef<{ socket: Socket; timer?: ReturnType<typeof setTimeout> } | null>(null);
  const [socket, setSocket] = useState<Socket | null>(null);
  const [connected, setConnected] = useState(false);
  const attempts = useRef(0);
  useEffect(() => {
    let entry = held.current;
    if (entry?.timer !== undefined) {
      clearTimeout(entry.timer); // StrictMode's remount: keep the socket
      entry.timer = undefined;
    } else {
      entry = held.current = { socket: io(url, options) };
    }
    const s = entry.socket;
    const onConnect = () => {
      attempts.current = 0;
      setConnected(true);
    };
    const onDisconnect = () => setConnected(false);
    const onAttempt = (n: number) => (attempts.current = n);
    s.on("connect", onConnect).on("disconnect", onDisconnect);
    s.io.on("reconnect_attempt", onAttempt);
    setSocket(s);
    setConnected(s.connected);
    const e = entry;
    return () => {
      s.off("connect", onConnect).off("disconnect", onDisconnect);
      s.io.off("reconnect_attempt", onAttempt);
      e.timer = setTimeout(() => {
        held.current = null;
        s.disconnect();
      }, 0);
    };
    // The socket lives as long as the component: like the seed hook, options are read once.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [url]);
  const emit = useCallback((event: string, ...args: unknown[]) => socket?.emit(event, ...args), [socket]);
  const on = useCallback(
    (event: string, handler: (...args: any[]) => void) => {
      if (!socket) return undefined;
      socket.on(event, handler);
      return () => void socket.off(event, handler);
    },
    [socket],
  );
  return { socket, connected, emit, on, reconnectAttempts: attempts.current };
}
