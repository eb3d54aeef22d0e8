// The Socket.IO server Switchboard replaces, shaped like the ones our users run: JWT check in
// io.use middleware, a personal room per user, room:join, message:send broadcast to the room with
// socket.to(room).emit, and a /notify route emitting to user rooms. Prints {"port": N}.
import { createServer } from "node:http";
import { createHmac, timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";
import { Server } from "socket.io";

const devVars = readFileSync(new URL("../../../.dev.vars.example", import.meta.url), "utf8");
const SECRET = devVars.match(/^JWT_SECRET="?([^"\n]*)"?$/m)[1];
const SERVER_KEY = devVars.match(/^SERVER_API_KEY="?([^"\n]*)"?$/m)[1];

function verify(token) {
  const [header, claims, signature] = String(token ?? "").split(".");
  if (!signature) return null;
  const expected = createHmac("sha256", SECRET).update(`${header}.${claims}`).digest();
  const given = Buffer.from(signature, "base64url");
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return null;
  const { alg } = JSON.parse(Buffer.from(header, "base64url"));
  const payload = JSON.parse(Buffer.from(claims, "base64url"));
  if (alg !== "HS256" || typeof payload.sub !== "string" || !(payload.exp > Date.now() / 1000)) return null;
  return payload;
}

const http = createServer((req, res) => {
  if (req.method === "POST" && req.url === "/notify") {
    if (req.headers.authorization !== `Bearer ${SERVER_KEY}`) return res.writeHead(401).end();
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      const { users, notification } = JSON.parse(body);
      for (const user of users) io.to(`user:${user}`).emit("notification:new", { ...notification, ts: Date.now() });
      res.writeHead(202, { "content-type": "application/json" }).end(JSON.stringify({ users: users.length }));
    });
    return;
  }
  res.writeHead(404).end();
});

const io = new Server(http, { transports: ["websocket"], serveClient: false });
io.use((socket, next) => {
  const claims = verify(socket.handshake.auth?.token);
  if (!claims) return next(new Error("unauthorized"));
  socket.data.user = claims.sub;
  next();
});
io.on("connection", (socket) => {
  socket.join(`user:${socket.data.user}`);
  socket.on("room:join", (room, ack) => {
    socket.join(String(room));
    if (typeof ack === "function") ack({ ok: true });
  });
  socket.on("message:send", (msg, ack) => {
    const out = { ...msg, user: socket.data.user, ts: Date.now() };
    socket.to(String(msg.room)).emit("message:receive", out);
    if (typeof ack === "function") ack({ ok: true, ts: out.ts });
  });
});

http.listen(0, "127.0.0.1", () => console.log(JSON.stringify({ port: http.address().port })));
