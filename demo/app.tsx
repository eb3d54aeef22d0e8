// The Switchboard demo page: rooms with history, typing and members; a presence list with your
// own status; a notification bell; a shared text area with remote cursors; the connection status.
// Everything goes through the client SDK and its React hooks (clients/js). Served by the Worker
// at `/` (wrangler.toml `[assets]`), bundled by scripts/build-demo.mjs.
//
// Sign-in: under `npm run dev` any name works (POST /v1/dev/token, on where DEV_TOKENS is set);
// a deployment has no such route, so paste a token minted by your app server instead.
// Query parameters tune the SDK (tests use them to make reconnects quick): reconnectDelayMs,
// reconnectDelayMaxMs, heartbeatMs, pongTimeoutMs, requestTimeoutMs, fallbackAfter.
import { StrictMode, useEffect, useLayoutEffect, useMemo, useRef, useState, type FormEvent } from "react";
import { createRoot } from "react-dom/client";
import { createClient, type Client, type ClientOptions, type Cursor, type Notification, type Presence } from "@switchboard/client";
import {
  SwitchboardProvider,
  useClient,
  useConnectionStatus,
  useDocument,
  useMembers,
  useMessages,
  useNotifications,
  usePresence,
  useTyping,
} from "@switchboard/client/react";

type Status = Presence["status"];
type Session = { mode: "dev"; user: string } | { mode: "token"; user: string; token: string };

const SESSION_KEY = "switchboard-demo-session";
const ROOMS_KEY = "switchboard-demo-rooms";
const STATUSES: Status[] = ["online", "away", "busy"];
/** Room and user ids (docs/protocol.md), for the inputs' `pattern`. */
const ID_PATTERN = "[A-Za-z0-9_.:@\\-]{1,128}";

// ---- sign-in -------------------------------------------------------------------------------

/** A dev token for `user` from `POST /v1/dev/token`; `null` when the route is off (404). */
async function devToken(user: string): Promise<{ token: string; expires: number } | null> {
  const res = await fetch("/v1/dev/token", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ user }),
  });
  if (res.status === 404) return null;
  const body = await res.json();
  if (!res.ok) throw new Error(body?.error?.message ?? `dev token: HTTP ${res.status}`);
  return body;
}

/** The `sub` of a pasted JWT (not verified here: the server does that). */
function subOf(token: string): string | null {
  try {
    const payload = token.split(".")[1]!.replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(payload)).sub ?? null;
  } catch {
    return null;
  }
}

/** A token callback for the SDK: dev tokens are fetched again shortly before they expire. */
function tokenSource(session: Session): ClientOptions["token"] {
  if (session.mode === "token") return session.token;
  let cached: { token: string; expires: number } | null = null;
  return async () => {
    if (!cached || cached.expires - Date.now() < 60_000) {
      const minted = await devToken(session.user);
      if (!minted) throw new Error("dev tokens are off on this server");
      cached = minted;
    }
    return cached.token;
  };
}

/** SDK options from the query string (numbers only; the SDK raises each timing to its floor, so `?heartbeatMs=0` cannot make a reconnect loop). */
function optionsFromQuery(): Partial<ClientOptions> {
  const params = new URLSearchParams(location.search);
  const names = ["reconnectDelayMs", "reconnectDelayMaxMs", "heartbeatMs", "pongTimeoutMs", "requestTimeoutMs", "fallbackAfter"] as const;
  const options: Record<string, number> = {};
  for (const name of names) {
    const value = params.get(name);
    if (value !== null && value !== "" && Number.isFinite(Number(value))) options[name] = Number(value);
  }
  return options as Partial<ClientOptions>;
}

function SignIn({ onSignIn }: { onSignIn: (s: Session) => void }) {
  const [name, setName] = useState("");
  const [token, setToken] = useState("");
  const [devOff, setDevOff] = useState(false);
  const [error, setError] = useState("");
  const signInAs = async (e: FormEvent) => {
    e.preventDefault();
    setError("");
    try {
      const minted = await devToken(name.trim());
      if (!minted) return setDevOff(true);
      onSignIn({ mode: "dev", user: name.trim() });
    } catch (err) {
      setError(String((err as Error).message ?? err));
    }
  };
  const useToken = (e: FormEvent) => {
    e.preventDefault();
    const user = subOf(token.trim());
    if (!user) return setError("that does not look like a JWT with a sub claim");
    onSignIn({ mode: "token", user, token: token.trim() });
  };
  return (
    <div className="signin">
      <h1>
        <span className="logo">⚡</span> Switchboard
      </h1>
      <p className="muted">Rooms, presence, notifications and shared text, live at the edge.</p>
      {!devOff && (
        <form id="signin-form" onSubmit={signInAs}>
          <label htmlFor="signin-name">Sign in as any name (dev server)</label>
          <div className="row">
            <input id="signin-name" autoFocus placeholder="alice" value={name} onChange={(e) => setName(e.target.value)} pattern={ID_PATTERN} required />
            <button type="submit">Sign in</button>
          </div>
        </form>
      )}
      {devOff && <p className="note">This server has no dev sign-in (<code>DEV_TOKENS</code> is off; for <code>npm run dev</code> set <code>DEV_TOKENS="1"</code> in <code>.dev.vars</code>). Paste a token from your app server.</p>}
      <details open={devOff}>
        <summary>…or paste a token</summary>
        <form id="token-form" onSubmit={useToken}>
          <textarea id="signin-token" rows={3} placeholder="eyJhbGciOiJIUzI1NiJ9…" value={token} onChange={(e) => setToken(e.target.value)} required />
          <button type="submit">Use token</button>
        </form>
      </details>
      {error && <p className="error">{error}</p>}
    </div>
  );
}

// ---- small pieces --------------------------------------------------------------------------

function colorOf(user: string): string {
  let h = 0;
  for (const ch of user) h = (h * 31 + ch.codePointAt(0)!) % 360;
  return `hsl(${h} 65% 45%)`;
}

function Avatar({ user, status }: { user: string; status?: Status }) {
  return (
    <span className="avatar" style={{ background: colorOf(user) }} title={user}>
      {user.slice(0, 1).toUpperCase()}
      {status && <span className={`dot ${status}`} />}
    </span>
  );
}

function ConnectionStatus() {
  const status = useConnectionStatus();
  return (
    <span id="connection" className={`pill ${status}`} data-status={status}>
      {status}
    </span>
  );
}

/** The last error while the connection is closed (a refused or expired token, a socket limit). */
function Problem() {
  const client = useClient();
  const status = useConnectionStatus();
  const [error, setError] = useState("");
  useEffect(() => client.on("error", (e) => setError(`${e.code}: ${e.message}`)), [client]);
  if (status !== "closed" || !error) return null;
  return (
    <div className="problem" id="problem">
      Disconnected for good — {error}. Sign out and sign in again.
    </div>
  );
}

function time(ts?: number): string {
  return ts ? new Date(ts).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : "…";
}

// ---- notifications -------------------------------------------------------------------------

function BellIcon() {
  return (
    <svg width="18" height="18" viewBox="0 0 24 24" fill="none" stroke="currentColor" strokeWidth="2" strokeLinecap="round" strokeLinejoin="round" aria-hidden="true">
      <path d="M6 8a6 6 0 0 1 12 0c0 7 3 9 3 9H3s3-2 3-9" />
      <path d="M10.3 21a1.94 1.94 0 0 0 3.4 0" />
    </svg>
  );
}

function Bell({ user }: { user: string }) {
  const client = useClient();
  const { unread, notifications, markRead } = useNotifications();
  const [open, setOpen] = useState(false);
  const [inbox, setInbox] = useState<Notification[]>([]);
  useEffect(() => {
    if (!open) return;
    client.me().notifications({ limit: 20 }).then((page) => setInbox(page.notifications)).catch(() => {});
  }, [open, client, unread]);
  // The inbox page, with anything newer that arrived live.
  const list = useMemo(() => {
    const seen = new Set(inbox.map((n) => n.id));
    return [...notifications.filter((n) => !seen.has(n.id)), ...inbox].sort((a, b) => b.id - a.id);
  }, [inbox, notifications]);
  const curl = `curl -X POST ${location.origin}/v1/notify -H "authorization: Bearer $SERVER_API_KEY" \\\n  -d '{"users":["${user}"],"notification":{"type":"hello","title":"Hi ${user}"}}'`;
  return (
    <div className="bell-wrap">
      <button id="bell" className={unread > 0 ? "bell lit" : "bell"} onClick={() => setOpen(!open)} aria-label={`notifications, ${unread} unread`}>
        <BellIcon />
        {unread > 0 && (
          <span id="unread" className="badge" data-count={unread}>
            {unread}
          </span>
        )}
      </button>
      {open && (
        <div className="dropdown" id="notifications">
          <div className="dropdown-head">
            <strong>Notifications</strong>
            <button className="link" onClick={() => markRead("all").catch(() => {})} disabled={unread === 0}>
              Mark all read
            </button>
          </div>
          {list.length === 0 && <p className="muted">Nothing yet.</p>}
          <ul>
            {list.map((n) => (
              <li key={n.id} className={n.read ? "read" : "unread"}>
                <strong>{n.title ?? n.type}</strong>
                {n.body && <span>{n.body}</span>}
                <small>{time(n.ts)}</small>
              </li>
            ))}
          </ul>
          <details className="hint">
            <summary>Send yourself one</summary>
            <p>App servers notify with the server key (dev: <code>SERVER_API_KEY</code> in <code>.dev.vars</code>):</p>
            <pre>{curl}</pre>
          </details>
        </div>
      )}
    </div>
  );
}

// ---- presence ------------------------------------------------------------------------------

function People({ watch, self }: { watch: string[]; self: string }) {
  const { me, statuses, setStatus } = usePresence(watch);
  const mine = me?.status ?? "online";
  return (
    <section className="panel" id="people">
      <h2>People</h2>
      <div className="me-row">
        <Avatar user={self} status={mine} />
        <span className="name">{self} (you)</span>
        <select id="my-status" value={mine} onChange={(e) => setStatus(e.target.value as Status).catch(() => {})}>
          {STATUSES.map((s) => (
            <option key={s} value={s}>
              {s}
            </option>
          ))}
        </select>
      </div>
      <ul className="people">
        {watch.map((user) => {
          const status = statuses[user]?.status ?? "offline";
          return (
            <li key={user} data-user={user} data-status={status}>
              <Avatar user={user} status={status} />
              <span className="name">{user}</span>
              <span className={`status ${status}`}>{status}</span>
            </li>
          );
        })}
        {watch.length === 0 && <li className="muted">Others appear here once they join a room with you.</li>}
      </ul>
    </section>
  );
}

// ---- rooms ---------------------------------------------------------------------------------

function Rooms({ rooms, current, onSelect, onAdd }: { rooms: string[]; current: string; onSelect: (r: string) => void; onAdd: (r: string) => void }) {
  const [name, setName] = useState("");
  return (
    <section className="panel" id="rooms">
      <h2>Rooms</h2>
      <ul className="rooms">
        {rooms.map((r) => (
          <li key={r}>
            <button className={r === current ? "room active" : "room"} onClick={() => onSelect(r)} data-room={r}>
              # {r}
            </button>
          </li>
        ))}
      </ul>
      <form
        className="row"
        onSubmit={(e) => {
          e.preventDefault();
          if (name.trim()) onAdd(name.trim());
          setName("");
        }}
      >
        <input id="new-room" placeholder="new room" value={name} onChange={(e) => setName(e.target.value)} pattern={ID_PATTERN} />
        <button type="submit">Join</button>
      </form>
    </section>
  );
}

function Members({ room, onSeen }: { room: string; onSeen: (users: string[]) => void }) {
  const { members, count, more, loadMore } = useMembers(room);
  const [loading, setLoading] = useState(false);
  useEffect(() => onSeen(members), [members, onSeen]);
  const showMore = () => {
    setLoading(true);
    loadMore()
      .catch(() => {})
      .finally(() => setLoading(false));
  };
  return (
    <section className="panel" id="members">
      <h2>In #{room}</h2>
      <p className="member-count" data-count={count}>
        {count} {count === 1 ? "member" : "members"}
        {members.length < count ? ` (showing ${members.length})` : ""}
      </p>
      <ul className="people">
        {members.map((u) => (
          <li key={u} data-user={u}>
            <Avatar user={u} />
            <span className="name">{u}</span>
          </li>
        ))}
      </ul>
      {more ? (
        <button type="button" className="load-more" onClick={showMore} disabled={loading}>
          {loading ? "Loading…" : "Show more"}
        </button>
      ) : null}
    </section>
  );
}

function Chat({ room, self, onSeen }: { room: string; self: string; onSeen: (users: string[]) => void }) {
  const { messages, send } = useMessages(room, { limit: 50 });
  const { typing, onType, stop } = useTyping(room);
  const [text, setText] = useState("");
  const list = useRef<HTMLOListElement>(null);
  useEffect(() => onSeen([...new Set(messages.map((m) => m.user))]), [messages, onSeen]);
  useLayoutEffect(() => {
    const el = list.current;
    if (el) el.scrollTop = el.scrollHeight;
  }, [messages.length]);
  const others = typing.filter((u) => u !== self);
  const submit = (e: FormEvent) => {
    e.preventDefault();
    const body = text.trim();
    if (!body) return;
    setText("");
    stop();
    // Queued while offline; a timeout keeps it queued (the list shows it as pending).
    send(body).catch(() => {});
  };
  return (
    <section className="chat" id="chat">
      <header className="chat-head">
        <h2># {room}</h2>
      </header>
      <ol className="messages" id="messages" ref={list}>
        {messages.map((m) => (
          <li key={`${m.user}:${m.id}`} className={`msg${m.user === self ? " mine" : ""}${m.seq === undefined ? " pending" : ""}`} data-id={m.id} data-user={m.user} data-seq={m.seq ?? ""}>
            <Avatar user={m.user} />
            <div className="bubble">
              <div className="meta">
                <strong>{m.user}</strong> <small>{m.seq === undefined ? "sending…" : time(m.ts)}</small>
              </div>
              <div className="text">{m.text}</div>
            </div>
          </li>
        ))}
      </ol>
      <div className="typing" id="typing" data-users={others.join(",")}>
        {others.length === 1 && `${others[0]} is typing…`}
        {others.length > 1 && `${others.join(", ")} are typing…`}
      </div>
      <form className="composer" onSubmit={submit}>
        <input
          id="composer"
          placeholder={`Message #${room}`}
          value={text}
          autoComplete="off"
          onChange={(e) => {
            setText(e.target.value);
            if (e.target.value) onType();
            else stop();
          }}
        />
        <button type="submit">Send</button>
      </form>
    </section>
  );
}

// ---- the shared text area ------------------------------------------------------------------

/** `pos` in `before` moved to `after`, assuming one contiguous change between them. */
function shift(pos: number, before: string, after: string): number {
  let p = 0;
  while (p < before.length && p < after.length && before[p] === after[p]) p++;
  let s = 0;
  while (s < before.length - p && s < after.length - p && before[before.length - 1 - s] === after[after.length - 1 - s]) s++;
  if (pos <= p) return pos;
  if (pos >= before.length - s) return pos + after.length - before.length;
  return after.length - s;
}

/** The text with remote carets and selections drawn where they are, behind the textarea. */
function Mirror({ text, cursors }: { text: string; cursors: Cursor[] }) {
  const marks = cursors
    .map((c) => ({ ...c, from: Math.min(c.anchor, c.head, text.length), to: Math.min(Math.max(c.anchor, c.head), text.length), at: Math.min(c.head, text.length) }))
    .sort((a, b) => a.at - b.at);
  const parts: JSX.Element[] = [];
  const points = [...new Set([0, text.length, ...marks.flatMap((m) => [m.from, m.to, m.at])])].sort((a, b) => a - b);
  for (let i = 0; i < points.length; i++) {
    const at = points[i]!;
    for (const m of marks.filter((m) => m.at === at)) {
      parts.push(
        <span key={`c-${m.conn}`} className="caret" data-user={m.user} style={{ borderColor: colorOf(m.user) }}>
          <span className="caret-label" style={{ background: colorOf(m.user) }}>
            {m.user}
          </span>
        </span>,
      );
    }
    const next = points[i + 1];
    if (next === undefined) break;
    const chunk = text.slice(at, next);
    const selected = marks.find((m) => m.from <= at && next <= m.to && m.from < m.to);
    parts.push(
      selected ? (
        <mark key={`t-${at}`} style={{ background: `color-mix(in srgb, ${colorOf(selected.user)} 25%, transparent)` }}>
          {chunk}
        </mark>
      ) : (
        <span key={`t-${at}`}>{chunk}</span>
      ),
    );
  }
  // A trailing newline needs something after it to take up its line.
  return <div className="mirror" aria-hidden="true">{parts}{"\u200b"}</div>;
}

function SharedText({ id }: { id: string }) {
  const { text, ready, cursors, replace, setCursor, doc } = useDocument(id);
  const area = useRef<HTMLTextAreaElement>(null);
  const mirror = useRef<HTMLDivElement>(null);
  // Remote edits land in the textarea at once (not on React's next render: a keystroke in
  // between would diff the stale value against the new text and undo them), without moving the
  // local caret off its text.
  useEffect(() => {
    const sync = () => {
      const ta = area.current;
      const next = doc.text;
      if (!ta || ta.value === next) return;
      const before = ta.value;
      const [start, end] = [shift(ta.selectionStart, before, next), shift(ta.selectionEnd, before, next)];
      ta.value = next;
      if (document.activeElement === ta) ta.setSelectionRange(start, end);
    };
    const offs = [doc.on("change", sync), doc.on("reset", sync), doc.on("open", sync)];
    sync();
    void doc.ready().then(sync);
    return () => offs.forEach((off) => off());
  }, [doc]);
  const report = () => {
    const ta = area.current;
    if (ta) setCursor(ta.selectionStart, ta.selectionEnd);
  };
  const syncScroll = () => {
    if (area.current && mirror.current) mirror.current.scrollTop = area.current.scrollTop;
  };
  return (
    <section className="panel doc" id="doc">
      <h2>
        Shared notes <small className="muted">{ready ? `v${doc.version}` : "loading…"}</small>
      </h2>
      <div className="editor">
        <div ref={mirror} className="mirror-wrap">
          <Mirror text={text} cursors={cursors} />
        </div>
        <textarea
          id="shared-text"
          ref={area}
          defaultValue={text}
          disabled={!ready || !doc.canWrite}
          spellCheck={false}
          placeholder="Type together…"
          onInput={(e) => {
            replace(e.currentTarget.value);
            report();
          }}
          onSelect={report}
          onScroll={syncScroll}
        />
      </div>
      <p className="muted small">
        {cursors.length ? `Also here: ${[...new Set(cursors.map((c) => c.user))].join(", ")}` : "Open this page in another window to edit together."}
      </p>
    </section>
  );
}

// ---- the page ------------------------------------------------------------------------------

function loadRooms(): string[] {
  try {
    const saved = JSON.parse(localStorage.getItem(ROOMS_KEY) ?? "null");
    if (Array.isArray(saved) && saved.every((r) => typeof r === "string")) return saved;
  } catch {
    // fall through
  }
  return ["general", "random"];
}

function App({ session, onSignOut }: { session: Session; onSignOut: () => void }) {
  const initial = new URLSearchParams(location.search).get("room");
  const [rooms, setRooms] = useState(() => {
    const list = loadRooms();
    return initial && !list.includes(initial) ? [...list, initial] : list;
  });
  const [room, setRoom] = useState(initial ?? rooms[0] ?? "general");
  const [seen, setSeen] = useState<string[]>([]);
  useEffect(() => localStorage.setItem(ROOMS_KEY, JSON.stringify(rooms)), [rooms]);
  // Everyone met in a room (members, authors) joins the presence list and stays on it.
  const onSeen = useMemo(
    () => (users: string[]) =>
      setSeen((prev) => {
        const fresh = users.filter((u) => u !== session.user && !prev.includes(u));
        return fresh.length ? [...prev, ...fresh].sort() : prev;
      }),
    [session.user],
  );
  return (
    <div className="app">
      <header className="top">
        <h1>
          <span className="logo">⚡</span> Switchboard
        </h1>
        <ConnectionStatus />
        <span className="spacer" />
        <Bell user={session.user} />
        <span className="who">
          <Avatar user={session.user} /> <span id="me">{session.user}</span>
        </span>
        <button className="link" onClick={onSignOut}>
          Sign out
        </button>
      </header>
      <Problem />
      <main className="layout">
        <aside className="side">
          <Rooms
            rooms={rooms}
            current={room}
            onSelect={setRoom}
            onAdd={(r) => {
              setRooms((prev) => (prev.includes(r) ? prev : [...prev, r]));
              setRoom(r);
            }}
          />
          <Members room={room} onSeen={onSeen} key={`members-${room}`} />
          <People watch={seen} self={session.user} />
        </aside>
        <Chat room={room} self={session.user} onSeen={onSeen} key={`chat-${room}`} />
        <SharedText id={`notes-${room}`} key={`doc-${room}`} />
      </main>
    </div>
  );
}

/** What the page exposes for debugging and tests: the client and every status it reported. */
declare global {
  interface Window {
    demo?: { client: Client; statuses: string[]; user: string };
  }
}

function Root() {
  const [session, setSession] = useState<Session | null>(() => {
    try {
      return JSON.parse(sessionStorage.getItem(SESSION_KEY) ?? "null");
    } catch {
      return null;
    }
  });
  // One client per session, created before anything renders so no status change is missed.
  const client = useMemo(() => {
    if (!session) return null;
    const c = createClient({ url: location.origin, token: tokenSource(session), ...optionsFromQuery() });
    const statuses: string[] = [c.status];
    c.on("status", (s) => statuses.push(s));
    window.demo = { client: c, statuses, user: session.user };
    return c;
  }, [session]);
  if (!session || !client) {
    return (
      <SignIn
        onSignIn={(s) => {
          sessionStorage.setItem(SESSION_KEY, JSON.stringify(s));
          setSession(s);
        }}
      />
    );
  }
  return (
    <SwitchboardProvider client={client}>
      <App
        session={session}
        onSignOut={() => {
          client.close();
          sessionStorage.removeItem(SESSION_KEY);
          setSession(null);
        }}
      />
    </SwitchboardProvider>
  );
}

createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <Root />
  </StrictMode>,
);
