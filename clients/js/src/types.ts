/**
 * The wire types of docs/protocol.md, one interface per frame payload. test/contract.test.mjs
 * checks them against every frame the built worker sends: an undeclared field, or a required one
 * missing, fails it, so these cannot drift from the server.
 */
import type { TextOp } from "ot-text-unicode";

export type { TextOp };

/** An envelope as the server sends it. Batches (JSON arrays) are unpacked before this. */
export interface ServerFrame {
  t: string;
  ref?: string | number;
  ok?: boolean;
  d?: unknown;
  error?: WireError;
}

export interface WireError {
  code: string;
  message: string;
  retryAfterMs?: number;
}

// ---- rooms -------------------------------------------------------------------------------

/** A stored message, as `message:receive` and history pages carry it. */
export interface Message {
  room: string;
  seq: number;
  id: string;
  user: string;
  text: string;
  data?: unknown;
  ts: number;
}

export interface StateEntry {
  value: unknown;
  version: number;
  user: string;
}

/** `room:state`, the first frame on every room socket. */
export interface RoomState {
  room: string;
  connId: string;
  user: string;
  seq: number;
  epoch: string;
  members: { user: string }[];
  typing: string[];
  state: Record<string, StateEntry>;
  recovered?: boolean;
}

/** The ack of `message:send`. */
export interface SendAck {
  seq: number;
  id: string;
  ts: number;
  duplicate?: boolean;
}

/** `state:update`. */
export interface StateUpdate {
  key: string;
  value: unknown;
  version: number;
  user: string;
}

/** `signal` as received. */
export interface Signal {
  from: string;
  fromConn: string;
  data: unknown;
}

/** `broadcast` as received. */
export interface Broadcast {
  event: string;
  data: unknown;
  from: string;
  fromConn: string;
}

// ---- user sockets ------------------------------------------------------------------------

export type Status = "online" | "away" | "busy" | "offline";

/** `user:state`, the first frame on the user socket. */
export interface UserState {
  user: string;
  connId: string;
  status: Status;
  lastSeen: number;
  activity?: string;
  unread: number;
}

/** `presence:update` and the entries of a `presence:subscribe` reply. */
export interface Presence {
  user: string;
  status: Status;
  lastSeen: number;
  activity?: string;
}

export interface Notification {
  id: number;
  ts: number;
  read: boolean;
  type: string;
  title?: string;
  body?: string;
  data?: unknown;
}

// ---- documents ---------------------------------------------------------------------------

/** `cursor:update` as received; `{user, conn, pos: null}` (no `v`) when that socket closed. */
export interface WireCursor {
  user: string;
  conn: string;
  v?: number;
  pos?: number | null;
  anchor?: number;
  head?: number;
}

/** `doc:snapshot`, the first frame on a document socket (after replayed operations). */
export interface DocSnapshot {
  doc: string;
  v: number;
  epoch: string;
  text: string;
  connId: string;
  user: string;
  canWrite: boolean;
  cursors: WireCursor[];
  resumed?: boolean;
}

/** `operation`, and the entries of an `ops:get` page. */
export interface Operation {
  v: number;
  op: TextOp;
  src: string;
  seq: number;
}
