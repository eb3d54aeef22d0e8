// Minimal HS256 JWT signing for dev tokens and tests (including deliberately bad tokens).
import { createHmac } from "node:crypto";

export const b64url = (value) =>
  Buffer.from(typeof value === "string" ? value : JSON.stringify(value)).toString("base64url");

/** Signs `claims` with `secret`; `header` may be overridden to craft bad tokens. */
export function signHs256(claims, secret, header = { alg: "HS256", typ: "JWT" }) {
  const body = `${b64url(header)}.${b64url(claims)}`;
  const signature = createHmac("sha256", secret).update(body).digest("base64url");
  return `${body}.${signature}`;
}
