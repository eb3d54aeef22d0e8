// The same-runtime anchor: a room server written the PartyKit way, as plain JavaScript on the
// runtime Switchboard runs on. A module Worker verifies the HS256 token with WebCrypto and hands
// the upgrade to the room's Durable Object, which accepts with the Hibernation API, keeps the
// sequence number in memory, stores each message with one INSERT, replies to the `ref` and sends
// one serialized frame to every other socket. It speaks Switchboard's frames for what it does and
// has none of the rest: no member events, typing, limits, capabilities or recovery.
import { DurableObject } from "cloudflare:workers";

const encoder = new TextEncoder();
let keyPromise;

function base64url(text) {
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/");
  return Uint8Array.from(atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4)), (c) => c.charCodeAt(0));
}

/** The token's claims when its HS256 signature and `exp` hold, else null. */
async function verify(token, secret) {
  const [header, claims, signature] = String(token ?? "").split(".");
  if (!signature) return null;
  keyPromise ??= crypto.subtle.importKey("raw", encoder.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, [
    "verify",
  ]);
  try {
    const ok = await crypto.subtle.verify("HMAC", await keyPromise, base64url(signature), encoder.encode(`${header}.${claims}`));
    if (!ok || JSON.parse(new TextDecoder().decode(base64url(header))).alg !== "HS256") return null;
    const payload = JSON.parse(new TextDecoder().decode(base64url(claims)));
    return typeof payload.sub === "string" && payload.exp > Date.now() / 1000 ? payload : null;
  } catch {
    return null;
  }
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const match = url.pathname.match(/^\/v1\/rooms\/([A-Za-z0-9_.:-]{1,128})\/ws$/);
    if (!match) return new Response("not found", { status: 404 });
    if (request.headers.get("Upgrade") !== "websocket") return new Response("upgrade required", { status: 426 });
    const claims = await verify(url.searchParams.get("token"), env.JWT_SECRET);
    if (!claims) return new Response("unauthorized", { status: 401 });
    const room = env.ROOMS.get(env.ROOMS.idFromName(match[1]));
    const headers = new Headers(request.headers);
    headers.set("x-user", claims.sub);
    headers.set("x-room", match[1]);
    return room.fetch(new Request(request, { headers }));
  },
};

export class JsRoom extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.sql.exec(
      "CREATE TABLE IF NOT EXISTS messages (seq INTEGER PRIMARY KEY, id TEXT, user TEXT, text TEXT, data TEXT, ts INTEGER)",
    );
    // Read once per wake; in memory after that.
    this.seq = this.sql.exec("SELECT COALESCE(MAX(seq), 0) AS seq FROM messages").one().seq;
  }

  async fetch(request) {
    const user = request.headers.get("x-user");
    const room = request.headers.get("x-room");
    const [client, server] = Object.values(new WebSocketPair());
    this.ctx.acceptWebSocket(server);
    server.serializeAttachment({ user, room });
    server.send(JSON.stringify({ t: "room:state", d: { room, seq: this.seq } }));
    return new Response(null, { status: 101, webSocket: client });
  }

  webSocketMessage(ws, raw) {
    let frame;
    try {
      frame = JSON.parse(raw);
    } catch {
      ws.send(JSON.stringify({ t: "error", error: { code: "bad_request", message: "not JSON" } }));
      return;
    }
    if (frame.t === "ping") return ws.send('{"t":"pong"}');
    if (frame.t !== "message:send") {
      const error = { code: "unknown_event", message: `unknown event ${frame.t}` };
      return ws.send(JSON.stringify(frame.ref === undefined ? { t: "error", error } : { t: "reply", ref: frame.ref, error }));
    }
    const { user, room } = ws.deserializeAttachment();
    const d = frame.d ?? {};
    const seq = ++this.seq;
    const id = typeof d.id === "string" ? d.id : `m${seq}`;
    const ts = Date.now();
    const data = d.data === undefined ? null : JSON.stringify(d.data);
    this.sql.exec("INSERT INTO messages (seq, id, user, text, data, ts) VALUES (?, ?, ?, ?, ?, ?)", seq, id, user, String(d.text ?? ""), data, ts);
    if (frame.ref !== undefined) ws.send(JSON.stringify({ t: "reply", ref: frame.ref, d: { seq, id } }));
    const out = JSON.stringify({ t: "message:receive", d: { room, seq, id, user, text: d.text, data: d.data, ts } });
    for (const other of this.ctx.getWebSockets()) {
      if (other !== ws) {
        try {
          other.send(out);
        } catch {
          // A socket closing at this moment; its close event cleans up.
        }
      }
    }
  }

  webSocketClose(ws, code) {
    // 1005 and 1006 cannot be sent back.
    ws.close(code === 1005 || code === 1006 ? 1000 : code, "closing");
  }
}
