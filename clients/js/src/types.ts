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
  /** Every member in a room of up to `ROOM_MEMBER_LIST_MAX` (100); in a larger room the first that many by id. */
  members: MemberEntry[];
  /** How many users have a socket in the room (the total, also when `members` is partial). */
  memberCount: number;
  /** Only when `members` is partial: the `after` of the next `members:get` page. */
  membersNext?: string;
  typing: string[];
  state: Record<string, StateEntry>;
  recovered?: boolean;
}

/** One member as `room:state`, `members:diff` and `members:get` list it. */
export interface MemberEntry {
  user: string;
}

/** `members:diff`: a large room's coalesced member changes (at most one a second). */
export interface MembersDiff {
  joins: MemberEntry[];
  leaves: MemberEntry[];
  /** The room's `memberCount` now. */
  count: number;
  /** More users changed than a diff lists: `joins` and `leaves` are empty, only `count` is exact. */
  truncated?: boolean;
  /** The room is small again: the complete list, replacing yours. */
  members?: MemberEntry[];
}

/** The reply of `members:get`. */
export interface MembersPage {
  members: MemberEntry[];
  count: number;
  /** Present when more members follow: the `after` of the next page. */
  next?: string;
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

// ---- requests (client → server) ----------------------------------------------------------
// The payload (`d`) of every event a client may send, and per object a map from event name to
// payload (`void`: the event takes none; a `d` sent with it is ignored). `ping` is not here: the
// runtime answers it without waking the object. test/contract.test.mjs checks these against the
// Rust core's definitions (src/core/{room,user,doc}/request.rs, printed by
// examples/wire_requests.rs) both ways: an event, a field or a required one on one side only
// fails it. The SDK builds every payload it sends as one of these, so tsc holds it to them.

/** `auth:refresh`, on every socket: a fresh token before the current one expires. */
export interface RefreshRequest {
  token: string;
}

/** `message:send`. `text` may be empty when `data` is given; `id` makes a resend idempotent. */
export interface SendMessageRequest {
  text: string;
  id?: string;
  data?: unknown;
}

/** `history:get` (needs a `ref`: the page is its reply). */
export interface HistoryRequest {
  before?: number;
  limit?: number;
}

/** `state:set`. */
export interface StateSetRequest {
  key: string;
  value: unknown;
  ifVersion?: number;
}

/** `signal`: to every socket of `to` in the room, or only to `toConn`. */
export interface SignalRequest {
  to: string;
  toConn?: string;
  data?: unknown;
}

/** `broadcast`: to everyone else in the room. */
export interface BroadcastRequest {
  event: string;
  data?: unknown;
}

/** What a room socket accepts. */
export interface RoomRequests {
  "message:send": SendMessageRequest;
  "history:get": HistoryRequest;
  "members:get": MembersGetRequest;
  "typing:start": void;
  "typing:stop": void;
  "state:set": StateSetRequest;
  signal: SignalRequest;
  broadcast: BroadcastRequest;
  "auth:refresh": RefreshRequest;
}

/** `members:get`: a page of members in id order after `after`. */
export interface MembersGetRequest {
  after?: string;
  /** Default and at most `ROOM_MEMBER_LIST_MAX` (100). */
  limit?: number;
}

/** `presence:set`: leaving `activity` out clears it. */
export interface PresenceSetRequest {
  status: Status;
  activity?: string;
}

/** `presence:subscribe` and `presence:unsubscribe`. */
export interface UsersRequest {
  users: string[];
}

/** `notification:list` (newest first). */
export interface NotificationListRequest {
  before?: number;
  limit?: number;
}

/** `notification:read`: `{ids}` or `{all: true}`. */
export interface NotificationReadRequest {
  ids?: number[];
  all?: boolean;
}

/** What the user socket (`/v1/users/me/ws`) accepts. */
export interface UserRequests {
  "presence:active": void;
  "presence:set": PresenceSetRequest;
  "presence:subscribe": UsersRequest;
  "presence:unsubscribe": UsersRequest;
  "notification:list": NotificationListRequest;
  "notification:read": NotificationReadRequest;
  "auth:refresh": RefreshRequest;
}

/** `op:submit`: `op` made against version `v`, identified by `(src, seq)`. */
export interface OpSubmitRequest {
  v: number;
  op: TextOp;
  src: string;
  seq: number;
}

/** `cursor:update`: `{pos, v}` or `{anchor, head, v}`, in code points. */
export interface CursorUpdateRequest {
  pos?: number;
  anchor?: number;
  head?: number;
  v: number;
}

/** `ops:get` (needs a `ref`: the page is its reply). */
export interface OpsGetRequest {
  from: number;
}

/** What a document socket accepts. */
export interface DocRequests {
  "op:submit": OpSubmitRequest;
  "cursor:update": CursorUpdateRequest;
  "ops:get": OpsGetRequest;
  "auth:refresh": RefreshRequest;
}
