/**
 * Switchboard's client SDK: `createClient({ url, token })`, then `room(id)`, `me()`, `doc(id)`.
 * See README.md for the semantics of reconnects, recovery and the offline outbox.
 */
export { createClient, Client } from "./client.js";
export type { ClientOptions, ClientStatus, ClientEvents } from "./client.js";
export { Room } from "./room.js";
export type { RoomEvents, SendOptions } from "./room.js";
export { Me } from "./me.js";
export type { MeEvents } from "./me.js";
export { Doc } from "./doc.js";
export type { DocEvents, Cursor } from "./doc.js";
export type { ChannelStatus, WebSocketLike, WebSocketConstructor } from "./channel.js";
export { SwitchboardError } from "./errors.js";
export { toCodePoints, toUtf16 } from "./unicode.js";
export { backoffDelay } from "./util.js";
export type * from "./types.js";
