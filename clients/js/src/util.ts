/** Small pure helpers: ids, backoff, pacing, token expiry. */

/** A random id of `bytes` random bytes in hex (crypto.getRandomValues where there is one). */
export function randomId(bytes = 12): string {
  const buf = new Uint8Array(bytes);
  const c = (globalThis as { crypto?: { getRandomValues?: (a: Uint8Array) => Uint8Array } }).crypto;
  if (c?.getRandomValues) c.getRandomValues(buf);
  else for (let i = 0; i < bytes; i++) buf[i] = Math.floor(Math.random() * 256);
  let out = "";
  for (const b of buf) out += b.toString(16).padStart(2, "0");
  return out;
}

/**
 * Exponential backoff with full jitter (the AWS architecture blog's "full jitter"): attempt `n`
 * (0-based) waits a uniformly random time in `[0, min(max, base * 2^n)]`, so a server restart
 * does not bring every client back in the same instant.
 */
export function backoffDelay(attempt: number, baseMs: number, maxMs: number, random: () => number = Math.random): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * ceiling);
}

/**
 * A client-side token bucket mirroring one of the server's rate classes, so the SDK never sends
 * faster than the server accepts. `delay()` says how long to wait for the next token; `take()`
 * spends one. `pause(ms)` empties the bucket for `ms`, used when the server answered
 * `rate_limited` with `retryAfterMs` (another tab of the same user shares the server's bucket).
 */
export class Pacer {
  private tokens: number;
  private last: number;

  constructor(
    readonly ratePerSec: number,
    readonly burst: number,
    private readonly now: () => number = Date.now,
  ) {
    this.tokens = burst;
    this.last = now();
  }

  private refill(): void {
    const t = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((t - this.last) * this.ratePerSec) / 1000);
    this.last = t;
  }

  /** Milliseconds until a token is available (0: now). */
  delay(): number {
    this.refill();
    return this.tokens >= 1 ? 0 : Math.ceil(((1 - this.tokens) * 1000) / this.ratePerSec);
  }

  take(): void {
    this.refill();
    this.tokens -= 1;
  }

  pause(ms: number): void {
    this.refill();
    this.tokens = Math.min(this.tokens, 0) - (ms * this.ratePerSec) / 1000;
  }
}

/**
 * The documented rates of docs/protocol.md, a little under the server's (90 % of the sustained
 * rate, the burst minus two) so clock granularity never makes the client overshoot.
 */
export function pacerFor(ratePerSec: number, burst: number): Pacer {
  return new Pacer(ratePerSec * 0.9, Math.max(1, burst - 2));
}

/** The claims of a JWT, read without verifying it (the server verifies), or undefined. */
export function tokenClaims(jwt: string): Record<string, unknown> | undefined {
  const part = jwt.split(".")[1];
  if (!part) return undefined;
  try {
    const b64 = part.replace(/-/g, "+").replace(/_/g, "/");
    const padded = b64 + "=".repeat((4 - (b64.length % 4)) % 4);
    const claims = JSON.parse(decodeBase64(padded));
    return claims && typeof claims === "object" ? claims : undefined;
  } catch {
    return undefined;
  }
}

/** The `exp` claim of a JWT in milliseconds, or undefined when it cannot be read. */
export function tokenExpiry(jwt: string): number | undefined {
  const exp = tokenClaims(jwt)?.exp;
  return typeof exp === "number" ? exp * 1000 : undefined;
}

function decodeBase64(b64: string): string {
  const g = globalThis as { atob?: (s: string) => string };
  const binary = g.atob ? g.atob(b64) : "";
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return new TextDecoder().decode(bytes);
}

/** UTF-8 length of a string, to check a frame against `MAX_FRAME_BYTES` before sending. */
export function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}

/** Number of Unicode code points (what the server counts in `MAX_TEXT_CHARS`). */
export function codePointLength(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) i++;
    n++;
  }
  return n;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
