//! `UserObject`: one per user (JWT `sub`). Holds the user's sockets on every device through the
//! Hibernation API, their status, watchers and inbox in SQLite, their one alarm, and a [`User`]
//! rebuilt lazily after every wake. The user object adds to the shell (`edge::shell`) its schema
//! and SQL, its calls to other users' objects (status pushes, watch requests: made once their
//! batch is stored, without holding the borrow, their answers going back into the core), and
//! what its HTTP endpoints (`core::user::endpoint`) need of the shell: loading, the inbox's
//! reads, event streams, and the calls a subscribe waits for.

use super::objects::{fan_out, CALL_CONCURRENCY};
use super::shell::{durable_object, Effects, Inbound, Kind, Load, Loaded, ReaderOf, Shell, Store, WriteOf};
use super::sql::{self, bound, corrupt, read_meta, rows, run, safe_integer, write_meta};
use super::{http, now, sse};
use crate::core::error::LogError;
use crate::core::error::{Error, ErrorCode};
use crate::core::ids::UserId;
use crate::core::time::Timestamp;
use crate::core::user::endpoint::Endpoint;
use crate::core::user::inbox::{Inbox, InboxCounts, InboxWrite, Notification};
use crate::core::user::request::Users;
use crate::core::user::watch::{PresenceUpdate, PushAnswer, UnwatchRequest, WatchPolicy, WatchRequest};
use crate::core::user::{StoredUser, User, UserCall, UserStreamInfo, UserWrite};
use serde::Deserialize;
use serde_json::Value;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use worker::{Response, SqlStorage, SqlStorageValue};

/// The schema's versions, in order (see [`sql::migrate`]).
const MIGRATIONS: &[&str] = &[
    // 1: the first release (5a06e97).
    "CREATE TABLE IF NOT EXISTS notifications (
       id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, read INTEGER NOT NULL, key TEXT UNIQUE, content TEXT NOT NULL
     );
     CREATE TABLE IF NOT EXISTS watchers (user TEXT PRIMARY KEY, active INTEGER NOT NULL);
     CREATE TABLE IF NOT EXISTS watching (user TEXT PRIMARY KEY, rev INTEGER NOT NULL);",
];

/// Ids per `IN (...)`: SQLite in a Durable Object binds at most 100 values per statement.
const IDS_PER_STATEMENT: usize = 100;

/// What a live user object keeps beside its core: the writes staged for the next commit, which
/// the inbox reader commits before its first read (in a cell: the reader has the kind shared).
#[derive(Default)]
pub(crate) struct UserKind {
    staged: RefCell<Vec<UserWrite>>,
    /// A commit the inbox reader made that failed.
    failure: RefCell<Option<Error>>,
}

durable_object!(
    /// A user's Durable Object.
    UserObject,
    UserKind
);

impl Kind for UserKind {
    type Core = User;
    type Batch = Vec<UserWrite>;
    type Memo = ();
    const NAME: &'static str = "user";
    const LABEL: &'static str = "user";
    const MIGRATIONS: &'static [&'static str] = MIGRATIONS;

    fn load(from: Load<'_, Self>) -> Result<Loaded<Self>, Error> {
        let Load { sql, name, config, .. } = from;
        let id = UserId::parse(name).map_err(|_| corrupt("user id"))?;
        let stored = StoredUser {
            presence: match read_meta(sql, "presence")? {
                Some(p) => serde_json::from_str(&p).map_err(|_| corrupt("presence"))?,
                None => Default::default(),
            },
            policy: match read_meta(sql, "policy")? {
                Some(p) => serde_json::from_str(&p).map_err(|_| corrupt("watch policy"))?,
                None => WatchPolicy::default(),
            },
            watchers: read_users(sql, "SELECT user, active AS n FROM watchers", "watcher", |n| n != 0)?,
            watching: read_users(sql, "SELECT user, rev AS n FROM watching", "watched user", |n| {
                n.max(0) as u64
            })?,
            inbox: inbox_counts(sql)?,
        };
        Ok((User::new(id, stored, config.clone()), UserKind::default(), Vec::new()))
    }

    fn stage(&mut self, write: WriteOf<Self>) {
        self.staged.get_mut().push(write);
    }

    fn take_batch(&mut self) -> Option<Vec<UserWrite>> {
        let staged = self.staged.get_mut();
        (!staged.is_empty()).then(|| std::mem::take(staged))
    }

    fn write(sql: &SqlStorage, batch: &Vec<UserWrite>) -> Result<(), Error> {
        batch.iter().try_for_each(|w| write(sql, w))
    }

    /// The inbox as SQLite holds it: it commits what is staged before its first read, so an
    /// input that does not read the inbox leaves its predecessors' writes to the group commit.
    fn read<R>(
        &self,
        user: &mut User,
        store: &Store<'_>,
        f: impl for<'r> FnOnce(&mut User, &ReaderOf<'r, Self>) -> R,
    ) -> R {
        f(user, &SqlInbox { store, kind: self })
    }

    fn read_failure(&self) -> Option<Error> {
        self.failure.borrow_mut().take()
    }

    /// Status pushes to watchers and watch requests to the watched, 16 objects at a time.
    async fn call(shell: &Rc<Shell<Self>>, calls: Vec<UserCall>) {
        let me = match shell.slot().as_ref() {
            Some(live) => live.core.id().clone(),
            None => return,
        };
        for call in calls {
            // `with_core` finds the object rebuilt if it lost its state meanwhile; when it cannot,
            // the answers are dropped: the stored state stays consistent and the next change retries.
            match call {
                UserCall::Push { to, update } => {
                    let answers: Vec<(UserId, Result<PushAnswer, Error>)> =
                        fan_out(&shell.env, to, "presence", &update, CALL_CONCURRENCY).await;
                    shell.with_core(|user| user.pushed(answers));
                }
                UserCall::Watch { users, active, reply } => {
                    let request = WatchRequest { watcher: me.clone(), active };
                    let results: Vec<(UserId, Result<PresenceUpdate, Error>)> =
                        fan_out(&shell.env, users, "watch", &request, CALL_CONCURRENCY).await;
                    shell.with_core(|user| match reply {
                        Some(reply) => user.watched(reply, results),
                        None => user.resumed(results),
                    });
                }
                UserCall::Unwatch(users) => {
                    let request = UnwatchRequest { watcher: me.clone() };
                    let _: Vec<(UserId, Result<serde_json::Value, Error>)> =
                        fan_out(&shell.env, users, "unwatch", &request, CALL_CONCURRENCY).await;
                }
            }
        }
    }

    /// Decoded and answered by the core ([`Endpoint`]); an event stream and a subscribe's calls
    /// are the shell's.
    async fn endpoint(shell: &Rc<Shell<Self>>, mut inbound: Inbound) -> Result<Response, Error> {
        let body = match inbound.req.method() {
            worker::Method::Post => inbound.req.text().await.unwrap_or_default(),
            _ => String::new(),
        };
        match Endpoint::parse(&inbound.path, &body, &inbound.admission)? {
            Endpoint::Events => events(shell, &inbound),
            Endpoint::Subscribe(request) => subscribe(shell, &inbound, request).await,
            Endpoint::Now(request) => {
                change(shell, &inbound, |user, inbox| user.answer(request, now(), inbox))
            }
        }
    }
}

/// Runs `f` on the live user and its inbox; `f` answers with the body and its effects, which
/// are stored before the answer (200) leaves.
fn change(
    shell: &Rc<Shell<UserKind>>,
    inbound: &Inbound,
    f: impl FnOnce(&mut User, &dyn Inbox) -> Result<(Value, Effects<UserKind>), Error>,
) -> Result<Response, Error> {
    let mut slot = shell.slot();
    shell.load(&mut slot, inbound.name.as_deref())?;
    let (answer, effects) = shell.read(&mut slot, None, |user, inbox| f(user, inbox))??;
    shell.apply_now(&mut slot, effects)?;
    http::json(200, &answer)
}

/// `POST /v1/users/me/subscribe`: asks the watched users' objects, then answers as the
/// `presence:subscribe` reply would.
async fn subscribe(
    shell: &Rc<Shell<UserKind>>,
    inbound: &Inbound,
    request: Users,
) -> Result<Response, Error> {
    let policy = inbound.admission.policy()?.clone();
    let (me, wanted) = {
        let mut slot = shell.slot();
        let live = shell.load(&mut slot, inbound.name.as_deref())?;
        let me = live.core.id().clone();
        let (effects, wanted) = live.core.subscribe_over_http(request.users, policy, now());
        // The asking token's policy is stored (and what it no longer allows dropped) even
        // when it refuses this subscribe.
        shell.apply_now(&mut slot, effects)?;
        (me, wanted?)
    };
    // No borrow is held while the other objects answer.
    let results = if wanted.is_empty() {
        Vec::new()
    } else {
        let request = WatchRequest { watcher: me, active: true };
        fan_out(&shell.env, wanted, "watch", &request, CALL_CONCURRENCY).await
    };
    change(shell, inbound, |user, _| Ok(user.subscribed(results)))
}

/// `GET /v1/users/me/events`: a Server-Sent Events stream that gets what the user's sockets
/// get, `user:state` first (see `core::user::streams`).
fn events(shell: &Rc<Shell<UserKind>>, inbound: &Inbound) -> Result<Response, Error> {
    let admission = &inbound.admission;
    let info = UserStreamInfo { id: sql::random_id()?, expires: admission.expires()? };
    let policy = admission.policy()?.clone();
    let id = info.id.clone();
    let mut slot = shell.slot();
    // Drained: what was queued before the stream existed is not for it (`user:state` first).
    let live = shell.drained(&mut slot, inbound.name.as_deref())?;
    live.core.check_capacity()?;
    let (stream, body) = shell.new_stream(&id);
    // Held before the effects are applied: the first one addressed to it is `user:state`.
    live.streams.insert(id.clone(), stream);
    let effects = match live.core.open_stream(info, policy, now()) {
        Ok(effects) => effects,
        Err(e) => {
            live.streams.remove(&id);
            return Err(e);
        }
    };
    shell
        .apply_now(&mut slot, effects)
        .map_err(|_| Error::new(ErrorCode::Internal, "could not open the event stream"))?;
    sse::response(body)
}

/// Applies one storage write.
fn write(sql: &SqlStorage, write: &UserWrite) -> Result<(), Error> {
    match write {
        UserWrite::SavePresence(saved) => serde_json::to_string(&saved)
            .map_err(|_| corrupt("presence"))
            .and_then(|p| write_meta(sql, "presence", &p)),
        UserWrite::SavePolicy(policy) => serde_json::to_string(&policy)
            .map_err(|_| corrupt("policy"))
            .and_then(|p| write_meta(sql, "policy", &p)),
        UserWrite::Inbox(write) => write_inbox(sql, write),
        UserWrite::SaveWatcher { watcher, active } => run(
            sql,
            "INSERT INTO watchers (user, active) VALUES (?, ?) ON CONFLICT(user) DO UPDATE SET active = excluded.active",
            vec![watcher.to_string().into(), SqlStorageValue::from(i64::from(*active))],
        ),
        UserWrite::RemoveWatcher(watcher) => {
            run(sql, "DELETE FROM watchers WHERE user = ?", vec![watcher.to_string().into()])
        }
        UserWrite::SaveWatching { user, rev } => safe_integer(*rev).and_then(|rev| {
            run(
                sql,
                "INSERT INTO watching (user, rev) VALUES (?, ?) ON CONFLICT(user) DO UPDATE SET rev = excluded.rev",
                vec![user.to_string().into(), rev],
            )
        }),
        UserWrite::RemoveWatching(user) => {
            run(sql, "DELETE FROM watching WHERE user = ?", vec![user.to_string().into()])
        }
    }
}

/// Each user `query` selects, with its number `n` (a watcher's `active`, a watched user's `rev`),
/// mapped by `value`; `what` names a row that does not read.
fn read_users<T>(
    sql: &SqlStorage,
    query: &str,
    what: &str,
    value: fn(i64) -> T,
) -> Result<BTreeMap<UserId, T>, Error> {
    #[derive(Deserialize)]
    struct Row {
        user: String,
        n: i64,
    }
    let found: Vec<Row> = rows(sql, query, Vec::new())?;
    found.into_iter().map(|r| Ok((UserId::parse(&r.user).map_err(|_| corrupt(what))?, value(r.n)))).collect()
}

fn inbox_counts(sql: &SqlStorage) -> Result<InboxCounts, Error> {
    #[derive(Deserialize)]
    struct Row {
        total: i64,
        unread: Option<i64>,
        last_id: Option<i64>,
    }
    let found: Vec<Row> = rows(
        sql,
        "SELECT COUNT(*) AS total, SUM(read = 0) AS unread, MAX(id) AS last_id FROM notifications",
        Vec::new(),
    )?;
    let row = found.into_iter().next().ok_or_else(|| corrupt("inbox"))?;
    let positive = |n: Option<i64>| n.unwrap_or(0).max(0) as u64;
    Ok(InboxCounts {
        last_id: positive(row.last_id),
        total: positive(Some(row.total)),
        unread: positive(row.unread),
    })
}

fn write_inbox(sql: &SqlStorage, write: &InboxWrite) -> Result<(), Error> {
    match write {
        InboxWrite::Store(n, key) => {
            let content = serde_json::to_string(&n.content).map_err(|_| corrupt("notification"))?;
            let key = key.clone().map_or(SqlStorageValue::Null, SqlStorageValue::from);
            run(
                sql,
                "INSERT INTO notifications (id, ts, read, key, content) VALUES (?, ?, 0, ?, ?)",
                vec![safe_integer(n.id)?, safe_integer(n.ts.as_millis())?, key, content.into()],
            )
        }
        InboxWrite::MarkRead(ids) => {
            for chunk in ids.chunks(IDS_PER_STATEMENT) {
                let marks = vec!["?"; chunk.len()].join(", ");
                let bindings = chunk.iter().map(|id| bound(*id)).collect();
                run(sql, &format!("UPDATE notifications SET read = 1 WHERE id IN ({marks})"), bindings)?;
            }
            Ok(())
        }
        InboxWrite::MarkAllRead => run(sql, "UPDATE notifications SET read = 1 WHERE read = 0", Vec::new()),
        InboxWrite::Trim(count) => run(
            sql,
            "DELETE FROM notifications WHERE id IN
               (SELECT id FROM notifications ORDER BY read DESC, id ASC LIMIT ?)",
            vec![bound(*count)],
        ),
    }
}

/// The inbox as SQLite holds it, once the staged writes are committed.
struct SqlInbox<'a> {
    store: &'a Store<'a>,
    kind: &'a UserKind,
}

#[derive(Deserialize)]
struct NotificationRow {
    id: i64,
    ts: i64,
    read: i64,
    content: String,
}

impl NotificationRow {
    fn notification(self) -> Result<Notification, LogError> {
        Ok(Notification {
            id: self.id.max(0) as u64,
            ts: Timestamp(self.ts.max(0) as u64),
            read: self.read != 0,
            content: serde_json::from_str(&self.content).map_err(|e| LogError(e.to_string()))?,
        })
    }
}

impl SqlInbox<'_> {
    /// Commits the staged writes (one transaction) so the reads below see them; a failure is
    /// kept for the shell, which drops the live state.
    fn exec<T: for<'de> Deserialize<'de>>(
        &self,
        query: &str,
        bindings: Vec<SqlStorageValue>,
    ) -> Result<Vec<T>, LogError> {
        let staged = std::mem::take(&mut *self.kind.staged.borrow_mut());
        if !staged.is_empty() {
            let sql = self.store.sql.clone();
            if let Err(e) =
                sql::transaction(self.store.state, move || staged.iter().try_for_each(|w| write(&sql, w)))
            {
                *self.kind.failure.borrow_mut() = Some(e.clone());
                return Err(LogError(e.message));
            }
        }
        sql::read(self.store.sql, query, bindings)
    }

    fn query(&self, query: &str, bindings: Vec<SqlStorageValue>) -> Result<Vec<Notification>, LogError> {
        let found: Vec<NotificationRow> = self.exec(query, bindings)?;
        found.into_iter().map(NotificationRow::notification).collect()
    }
}

impl Inbox for SqlInbox<'_> {
    fn page(&self, before: Option<u64>, limit: u32) -> Result<Vec<Notification>, LogError> {
        self.query(
            "SELECT id, ts, read, content FROM notifications WHERE id < ? ORDER BY id DESC LIMIT ?",
            vec![bound(before.unwrap_or(u64::MAX)), SqlStorageValue::from(i64::from(limit))],
        )
    }

    fn by_key(&self, key: &str) -> Result<Option<Notification>, LogError> {
        let found = self.query(
            "SELECT id, ts, read, content FROM notifications WHERE key = ?",
            vec![key.to_owned().into()],
        )?;
        Ok(found.into_iter().next())
    }

    fn count_unread(&self, ids: &[u64]) -> Result<u64, LogError> {
        #[derive(Deserialize)]
        struct Count {
            n: i64,
        }
        let mut total = 0;
        for chunk in ids.chunks(IDS_PER_STATEMENT) {
            let marks = vec!["?"; chunk.len()].join(", ");
            let bindings: Vec<SqlStorageValue> = chunk.iter().map(|id| bound(*id)).collect();
            let q = format!("SELECT COUNT(*) AS n FROM notifications WHERE read = 0 AND id IN ({marks})");
            let found: Vec<Count> = self.exec(&q, bindings)?;
            total += found.first().map_or(0, |c| c.n.max(0) as u64);
        }
        Ok(total)
    }
}
