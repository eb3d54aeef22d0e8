// A small Socket.IO server shaped like the seed's "Server Implementation", for the two-stacks
// test: JWT auth middleware on the handshake's `auth.token`, a personal room per user, and the
// handlers those apps have (room:join / room:leave, message:send, typing:start / typing:stop).
// Messages go to the room's other sockets (the sender added its own optimistically); typing
// updates carry the room's list of typing user ids. Not the benchmark peer (bench/ keeps its own).
import { createServer } from "node:http";
import { createHmac, timingSafeEqual } from "node:crypto";
import { Server } from "socket.io";

/** HS256 verification of the kind `jsonwebtoken.verify` does for these apps: signature and `exp`. */
export function verifyHs256(token, secret) {
  const parts = String(token ?? "").split(".");
  if (parts.length !== 3) throw new Error("malformed token");
  const [header, payload, signature] = parts;
  if (JSON.parse(Buffer.from(header, "base64url")).alg !== "HS256") throw new Error("unexpected alg");
  const expected = createHmac("sha256", secret).update(`${header}.${payload}`).digest();
  const given = Buffer.from(signature, "base64url");
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) throw new Error("bad signature");
  const claims = JSON.parse(Buffer.from(payload, "base64url"));
  if (typeof claims.exp === "number" && claims.exp * 1000 < Date.now()) throw new Error("expired");
  return claims;
}

/** Starts the server on 127.0.0.1 (a free port); resolves with `{ url, port, io, close }`. */
export async function startSeedServer({ secret, port = 0 } = {}) {
  const httpServer = createServer();
  const io = new Server(httpServer, {
    cors: { origin: true, credentials: true },
    transports: ["websocket", "polling"],
    pingTimeout: 60000,
    pingInterval: 25000,
  });
  /** roomId -> user ids typing there. */
  const typing = new Map();
  const typingIn = (roomId) => {
    let set = typing.get(roomId);
    if (!set) typing.set(roomId, (set = new Set()));
    return set;
  };

  io.use((socket, next) => {
    try {
      const payload = verifyHs256(socket.handshake.auth?.token, secret);
      socket.data.userId = payload.sub ?? payload.userId;
      next();
    } catch {
      next(new Error("Authentication failed"));
    }
  });

  io.on("connection", (socket) => {
    const userId = socket.data.userId;
    socket.join(`user:${userId}`);

    const setTyping = (roomId, on) => {
      const set = typingIn(roomId);
      if (on === set.has(userId)) return;
      if (on) set.add(userId);
      else set.delete(userId);
      socket.to(roomId).emit("typing:update", [...set].sort(), roomId);
    };

    socket.on("room:join", (roomId, ack) => {
      if (typeof roomId !== "string" || !roomId) return ack?.({ ok: false, error: "room id required" });
      socket.join(roomId);
      ack?.({ ok: true, roomId });
    });

    socket.on("room:leave", (roomId, ack) => {
      socket.leave(roomId);
      setTyping(roomId, false);
      ack?.({ ok: true, roomId });
    });

    socket.on("message:send", (message, ack) => {
      const { id, text, roomId } = message ?? {};
      if (typeof roomId !== "string" || typeof text !== "string") return ack?.({ ok: false, error: "bad message" });
      const stored = { id, text, roomId, userId, timestamp: new Date().toISOString() };
      setTyping(roomId, false);
      socket.to(roomId).emit("message:receive", stored);
      ack?.({ ok: true, ...stored });
    });

    socket.on("typing:start", ({ roomId } = {}) => setTyping(roomId, true));
    socket.on("typing:stop", ({ roomId } = {}) => setTyping(roomId, false));

    socket.on("disconnecting", () => {
      for (const roomId of socket.rooms) if (typing.get(roomId)?.has(userId)) setTyping(roomId, false);
    });
  });

  await new Promise((resolve) => httpServer.listen(port, "127.0.0.1", resolve));
  const actual = httpServer.address().port;
  return {
    io,
    port: actual,
    url: `http://127.0.0.1:${actual}`,
    close: () => new Promise((resolve) => io.close(() => resolve())),
  };
}
