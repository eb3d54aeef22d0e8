// Runs the built worker (build/) in workerd through Miniflare, and speaks the protocol over real
// WebSockets. Shared by every suite in this folder.
import { Miniflare } from "miniflare";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { fileURLToPath } from "node:url";
import { dirname, join as joinPath } from "node:path";
import WebSocket from "ws";
import { signHs256 } from "./jwt.mjs";

const root = joinPath(dirname(fileURLToPath(import.meta.url)), "..");
/** `.dev.vars.example`, so tests run with the dev configuration `npm run dev` uses. */
function devVars() {
  const vars = {};
  for (const line of readFileSync(joinPath(root, ".dev.vars.example"), "utf8").split("\n")) {
    const m = line.match(/^([A-Z0-9_]+)=(.*)$/);
    if (m) vars[m[1]] = m[2].trim().replace(/^(["'])(.*)\1$/, "$2");
  }
  return vars;
}

const DEV = devVars();
export const SECRET = DEV.JWT_SECRET;
export const SERVER_KEY = DEV.SERVER_API_KEY;

/** The `[vars]` of wrangler.toml, so tests run with the configuration users deploy. */
function wranglerVars() {
  const toml = readFileSync(joinPath(root, "wrangler.toml"), "utf8");
  const section = toml.split(/^\[vars\]\s*$/m)[1] ?? "";
  const vars = {};
  for (const line of section.split("\n")) {
    if (line.startsWith("[")) break;
    const m = line.match(/^\s*([A-Z0-9_]+)\s*=\s*"(.*)"\s*$/);
    if (m) vars[m[1]] = m[2];
  }
  return vars;
}

/** The demo page, built by scripts/build.sh: wrangler.toml's `[assets]` directory. */
export const ASSETS = joinPath(root, "demo", "dist");

/**
 * Starts the worker; `persist` is a directory for durable object storage (restart tests);
 * `build` another build of it (the previous release's, for the migration fixture). It serves the
 * static assets in front of the worker as `wrangler dev` and a deployment do (wrangler.toml
 * `[assets]`): a request matching no file goes to the worker; `assets: false` leaves them out.
 */
export async function startWorker({ persist, vars = {}, preventEviction = false, build = joinPath(root, "build"), inspectorPort, assets = true } = {}) {
  const object = (className) => ({ className, useSQLite: true, unsafePreventEviction: preventEviction });
  const mf = new Miniflare({
    modules: [
      { type: "ESModule", path: joinPath(build, "index.js") },
      { type: "CompiledWasm", path: joinPath(build, "index_bg.wasm") },
    ],
    modulesRoot: build,
    compatibilityDate: "2026-04-01",
    durableObjects: { ROOMS: object("RoomObject"), USERS: object("UserObject"), DOCS: object("DocumentObject") },
    durableObjectsPersist: persist ?? false,
    ...(assets
      ? { assets: { directory: ASSETS, routerConfig: { has_user_worker: true }, assetConfig: { compatibility_date: "2026-04-01" } } }
      : {}),
    bindings: { ...wranglerVars(), ...DEV, ...vars },
    host: "127.0.0.1",
    port: 0,
    cf: false,
    ...(inspectorPort ? { inspectorPort } : {}),
  });
  const url = await mf.ready;
  const base = url.href.replace(/\/$/, "");
  return { mf, http: base, ws: base.replace(/^http/, "ws"), close: () => mf.dispose() };
}

/** A valid token for `user`, expiring in `ttl` seconds; `extra` adds or overrides claims. */
export function token(user, { ttl = 3600, extra = {}, secret = SECRET, header } = {}) {
  const now = Math.floor(Date.now() / 1000);
  return signHs256({ sub: user, iat: now, exp: now + ttl, ...extra }, secret, header);
}

/** Items that arrive over time; `next` waits for (and consumes) the first one matching. */
export class Inbox {
  constructor(matchString) {
    this.items = [];
    this.waiters = [];
    this.matchString = matchString;
  }

  push(item) {
    this.items.push(item);
    this.waiters = this.waiters.filter((check) => !check());
  }

  next(predicate = () => true, timeoutMs = 5000) {
    const match = typeof predicate === "string" ? this.matchString(predicate) : predicate;
    return new Promise((resolve, reject) => {
      const check = () => {
        const i = this.items.findIndex(match);
        if (i < 0) return false;
        clearTimeout(timer);
        resolve(this.items.splice(i, 1)[0]);
        return true;
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== check);
        reject(new Error(`nothing matched within ${timeoutMs} ms; have ${JSON.stringify(this.items)}`));
      }, timeoutMs);
      if (!check()) this.waiters.push(check);
    });
  }
}

/** A connected client that records every frame and can wait for one. */
export class Client {
  constructor(ws) {
    this.ws = ws;
    this.inbox = new Inbox((t) => (f) => f.t === t);
    this.frames = this.inbox.items;
    this.nextRef = 1;
    this.closed = new Promise((resolve) => ws.on("close", (code, reason) => resolve({ code, reason: reason.toString() })));
    ws.on("message", (data, isBinary) => {
      if (isBinary) return this.inbox.push({ binary: data });
      const parsed = JSON.parse(data.toString());
      // Under load the server batches several envelopes into one array frame.
      if (Array.isArray(parsed)) {
        this.batches = (this.batches ?? 0) + 1;
        for (const frame of parsed) this.inbox.push(frame);
      } else this.inbox.push(parsed);
    });
  }

  /** Resolves with the first unconsumed frame matching `predicate` (a predicate or an event name). */
  next(predicate, timeoutMs) {
    return this.inbox.next(predicate, timeoutMs);
  }

  send(frame) {
    this.ws.send(typeof frame === "string" ? frame : JSON.stringify(frame));
  }

  /** Sends `t` with `d` and a fresh ref; resolves with the matching reply. */
  async request(t, d) {
    const ref = `r${this.nextRef++}`;
    this.send(d === undefined ? { t, ref } : { t, ref, d });
    return this.next((f) => f.t === "reply" && f.ref === ref);
  }

  close() {
    this.ws.close(1000);
    return this.closed;
  }
}

/** Opens a socket; resolves with a Client once open, or rejects with `{status, body}`. */
export function open(url, { protocols, headers } = {}) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, protocols, { headers });
    const client = new Client(ws);
    ws.once("open", () => resolve(client));
    ws.once("unexpected-response", (_req, res) => {
      let body = "";
      res.on("data", (chunk) => (body += chunk));
      res.on("end", () => reject({ status: res.statusCode, body: body ? JSON.parse(body) : null }));
    });
    ws.once("error", (err) => reject(err));
  });
}

/** Joins `room` as `user` with a query-string token and waits for `room:state`. */
export async function join(worker, room, user, query = "") {
  const client = await open(`${worker.ws}/v1/rooms/${room}/ws?token=${token(user)}${query}`);
  client.state = (await client.next("room:state")).d;
  return client;
}

/** Opens `user`'s own socket (`/v1/users/me/ws`) and waits for `user:state`. */
export async function connectUser(worker, user, tokenOptions = {}) {
  const client = await open(`${worker.ws}/v1/users/me/ws?token=${token(user, tokenOptions)}`);
  client.state = (await client.next("user:state")).d;
  return client;
}

/** `fetch` against the worker with a JSON body and the server key unless `auth` says otherwise. */
export async function call(worker, method, path, { body, auth = SERVER_KEY, headers = {} } = {}) {
  const res = await fetch(`${worker.http}${path}`, {
    method,
    headers: { ...(auth ? { authorization: `Bearer ${auth}` } : {}), ...headers },
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Reads a Server-Sent Events response; `next` waits for an event like `Client.next`. */
export async function openEvents(url, headers = {}) {
  const abort = new AbortController();
  const res = await fetch(url, { headers, signal: abort.signal });
  const inbox = new Inbox((name) => (e) => e.event === name);
  const stream = { status: res.status, headers: res.headers, events: inbox.items, close: () => abort.abort() };
  if (res.status !== 200) {
    stream.body = await res.json();
    return stream;
  }
  stream.next = (predicate, timeoutMs) => inbox.next(predicate, timeoutMs);
  (async () => {
    const decoder = new TextDecoder();
    let buffer = "";
    try {
      for await (const chunk of res.body) {
        buffer += decoder.decode(chunk, { stream: true });
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const event = {};
          for (const line of buffer.slice(0, end).split("\n")) {
            if (line.startsWith("event: ")) event.event = line.slice(7);
            else if (line.startsWith("id: ")) event.id = line.slice(4);
            else if (line.startsWith("data: ")) event.data = JSON.parse(line.slice(6));
          }
          buffer = buffer.slice(end + 2);
          if (event.event) inbox.push(event);
        }
      }
    } catch {
      // aborted by close()
    }
  })();
  return stream;
}

/** Runs `scenario(start)`, where each `start(options)` boots workerd on the same storage: a restart. */
export async function withStorage(scenario) {
  const dir = mkdtempSync(joinPath(tmpdir(), "switchboard-"));
  try {
    await scenario((options = {}) => startWorker({ ...options, persist: dir }));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The raw text of an event stream, as it arrives (comments included). */
export async function rawStream(url) {
  const abort = new AbortController();
  const res = await fetch(url, { signal: abort.signal });
  const raw = { status: res.status, text: "", ended: false, close: () => abort.abort() };
  raw.done = (async () => {
    const decoder = new TextDecoder();
    try {
      for await (const chunk of res.body) raw.text += decoder.decode(chunk, { stream: true });
    } catch {
      // aborted
    }
    raw.ended = true;
  })();
  return raw;
}
