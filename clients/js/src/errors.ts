/**
 * Errors the SDK surfaces. `code` is the server's stable error code (`rate_limited`, `forbidden`,
 * ... see docs/protocol.md) or one of the SDK's own: `timeout` (no reply in time; an outbox
 * message stays queued), `disconnected` (the socket closed before a reply came; only for
 * requests that are not replayed), `closed` (the room, document or client was closed),
 * `refused` (the server refused the socket: a bad token, a missing right, too many sockets, too
 * many strikes; the SDK stops reconnecting), `gave_up` (`maxReconnectAttempts` failed in a row),
 * `connect_failed` (one connect attempt failed; the SDK retries), `not_ready`.
 */
export class SwitchboardError extends Error {
  /** The stable error code. */
  readonly code: string;
  /** For `rate_limited`: milliseconds until the server accepts one more. */
  readonly retryAfterMs?: number;
  /** For `refused`: the close code or HTTP status that refused the socket. */
  readonly closeCode?: number;

  constructor(code: string, message: string, extra: { retryAfterMs?: number; closeCode?: number } = {}) {
    super(message);
    this.name = "SwitchboardError";
    this.code = code;
    if (extra.retryAfterMs !== undefined) this.retryAfterMs = extra.retryAfterMs;
    if (extra.closeCode !== undefined) this.closeCode = extra.closeCode;
  }
}

/** Builds the error of a failed `reply` or an `error` frame. */
export function fromWire(error: { code?: string; message?: string; retryAfterMs?: number } | undefined): SwitchboardError {
  return new SwitchboardError(error?.code ?? "internal", error?.message ?? "unknown error", {
    retryAfterMs: typeof error?.retryAfterMs === "number" ? error.retryAfterMs : undefined,
  });
}
