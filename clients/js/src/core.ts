/**
 * What the SDK's parts share without importing each other: what a channel needs from its client
 * (`ClientCore`), the client's resolved options, and the socket types both take. Types only; not
 * part of the public API beyond what `index.ts` re-exports.
 */
import type { SwitchboardError } from "./errors.js";

/** A channel's connection status. `idle`: not opened yet. */
export type ChannelStatus = "idle" | "connecting" | "open" | "reconnecting" | "offline" | "closed";

/** The part of the WebSocket API the SDK uses (browsers' and `ws`'s both fit). */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

/** What an event-stream transport is told besides the URL and protocols. */
export interface StreamOptions {
  /** The server's `SSE_KEEPALIVE_MS`. */
  keepaliveMs?: number;
}

/** An event-stream transport: made like a WebSocket, plus `StreamOptions`. */
export type StreamSocketConstructor = new (url: string, protocols: string[], options: StreamOptions) => WebSocketLike;

export interface ResolvedOptions {
  reconnectDelayMs: number;
  reconnectDelayMaxMs: number;
  heartbeatMs: number;
  pongTimeoutMs: number;
  requestTimeoutMs: number;
  refreshLeadMs: number;
  maxFrameBytes: number;
  maxTextChars: number;
  maxReconnectAttempts: number;
  fallbackAfter: number;
  fallbackProbeMs: number;
  sseKeepaliveMs: number;
  openTimeoutMs: number;
}

/** What channels need from their client. Not part of the public API. */
export interface ClientCore {
  readonly options: ResolvedOptions;
  readonly wsBase: string;
  readonly httpBase: string;
  readonly WebSocket: WebSocketConstructor;
  readonly tokenIsCallback: boolean;
  readonly offline: boolean;
  readonly random: () => number;
  getToken(): Promise<string>;
  statusChanged(): void;
  reportError(error: SwitchboardError): void;
}
