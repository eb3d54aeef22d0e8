//! `DocumentObject`: one per document, the single writer that orders its edits. Holds the
//! editors' sockets through the Hibernation API, the op log, the remembered sources and
//! periodic snapshots in SQLite, its one alarm (token expiry), and a [`Doc`] rebuilt lazily
//! after every wake from the latest snapshot plus the ops after it. Everything else is the
//! shell's (`edge::shell`): the document adds its schema, its SQL, `ops:get` reads, its snapshot
//! and a repair's report in its stats.

use super::http;
use super::shell::{durable_object, Effects, Inbound, Kind, Load, Loaded, ReaderOf, Shell, Store, WriteOf};
use super::sql::{self, corrupt, random_id, read_meta, rows, run, safe_integer, write_meta};
use crate::core::doc::{
    ops_page, Applied, Doc, DocCall, DocEffect, DocWrite, LoggedOp, Owner, Repair, StoredDoc, StoredOp,
};
use crate::core::error::{Error, ErrorCode};
use crate::core::ids::{DocId, UserId};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::rc::Rc;
use worker::{Response, SqlStorage};

/// The schema's versions, in order (see [`sql::migrate`]).
const MIGRATIONS: &[&str] = &[
    // 1: the first release (5a06e97).
    "CREATE TABLE IF NOT EXISTS ops (v INTEGER PRIMARY KEY, op TEXT NOT NULL, src TEXT NOT NULL, seq INTEGER NOT NULL);
     CREATE TABLE IF NOT EXISTS sources (src TEXT PRIMARY KEY, seq INTEGER NOT NULL, v INTEGER NOT NULL);",
    // 2: sources belong to a user, so no one can advance or evict another's; rows from before
    // keep an empty user (they answer exact resubmissions only).
    "CREATE TABLE sources_by_user (user TEXT NOT NULL, src TEXT NOT NULL, seq INTEGER NOT NULL, v INTEGER NOT NULL, PRIMARY KEY (user, src));
     INSERT INTO sources_by_user (user, src, seq, v) SELECT '', src, seq, v FROM sources;
     DROP TABLE sources;
     ALTER TABLE sources_by_user RENAME TO sources;",
    // 3: each op's size in bytes, so byte-bounded reads sum a column instead of measuring text.
    "ALTER TABLE ops ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0;
     UPDATE ops SET bytes = length(CAST(op AS BLOB));",
];

/// What a live document keeps beside its core: the writes staged for the next commit.
#[derive(Default)]
pub(crate) struct DocKind {
    staged: Vec<DocWrite>,
}

durable_object!(
    /// A collaborative document's Durable Object.
    DocumentObject,
    DocKind
);

impl Kind for DocKind {
    type Core = Doc;
    type Batch = Vec<DocWrite>;
    type Memo = ();
    const NAME: &'static str = "doc";
    const LABEL: &'static str = "document";
    const MIGRATIONS: &'static [&'static str] = MIGRATIONS;

    fn load(from: Load<'_, Self>) -> Result<Loaded<Self>, Error> {
        let Load { sql, name, config, .. } = from;
        let id = DocId::parse(name).map_err(|_| corrupt("document id"))?;
        let snapshot_v = read_meta(sql, "snapshot_v")?.and_then(|v| v.parse().ok()).unwrap_or(0);
        let limits = &config.limits;
        let mut ops = read_history(sql, snapshot_v, limits.doc_log_retain, limits.recovery_max_bytes)?;
        ops.extend(read_ops(sql, snapshot_v, None, None)?);
        let stored = StoredDoc {
            epoch: read_meta(sql, "epoch")?,
            snapshot_v,
            snapshot_text: read_meta(sql, "snapshot_text")?.unwrap_or_default(),
            ops,
            sources: read_sources(sql)?,
        };
        let (doc, effects) = Doc::restore(id, stored, config.clone(), random_id()?.to_string());
        Ok((doc, DocKind::default(), effects))
    }

    fn stage(&mut self, write: WriteOf<Self>) {
        self.staged.push(write);
    }

    fn take_batch(&mut self) -> Option<Vec<DocWrite>> {
        (!self.staged.is_empty()).then(|| std::mem::take(&mut self.staged))
    }

    fn write(sql: &SqlStorage, batch: &Vec<DocWrite>) -> Result<(), Error> {
        batch.iter().try_for_each(|w| write(sql, w))
    }

    /// A frame reads nothing: older ops are read by `DocCall::ReadOps` after the commit.
    fn read<R>(
        &self,
        core: &mut Doc,
        _: &Store<'_>,
        f: impl for<'r> FnOnce(&mut Doc, &ReaderOf<'r, Self>) -> R,
    ) -> R {
        f(core, &())
    }

    /// `ops:get` pages older than the live log, read once their batch is stored.
    async fn call(shell: &Rc<Shell<Self>>, calls: Vec<DocCall>) {
        let mut slot = shell.slot();
        let Ok(live) = shell.load(&mut slot, None) else { return };
        let mut effects: Effects<Self> = Vec::new();
        for DocCall::ReadOps { to, reply_to, from, until, max_bytes } in calls {
            let frame = match read_ops(&live.sql, from, Some(until), Some(max_bytes)) {
                Ok(rows) => ops_page(&reply_to, from, until, max_bytes, &rows),
                Err(e) => crate::core::protocol::error_frame(&e),
            };
            effects.push(DocEffect::Send { to, frame });
        }
        shell.apply(&mut slot, None, effects);
    }

    /// The repair a wake made, if any, as it was stored.
    fn stats(sql: &SqlStorage, stats: &mut Map<String, Value>) -> Result<(), Error> {
        let repair = read_meta(sql, "repair")?.and_then(|r| serde_json::from_str::<Value>(&r).ok());
        stats.insert("repair".into(), repair.unwrap_or(Value::Null));
        Ok(())
    }

    /// `GET /snapshot`, drained: an answer never shows an edit that could still fail to be stored.
    async fn endpoint(shell: &Rc<Shell<Self>>, inbound: Inbound) -> Result<Response, Error> {
        if inbound.path != "/snapshot" {
            return Err(Error::new(ErrorCode::NotFound, "no such document endpoint"));
        }
        let mut slot = shell.slot();
        let live = shell.drained(&mut slot, inbound.name.as_deref())?;
        http::json(200, &live.core.snapshot())
    }
}

/// Applies one storage write.
fn write(sql: &SqlStorage, write: &DocWrite) -> Result<(), Error> {
    match write {
        DocWrite::AppendOp(op) => append_op(sql, op),
        DocWrite::SaveSource { user, src, applied, forget } => {
            save_source(sql, &Some(user.clone()), src, *applied, forget.clone())
        }
        DocWrite::SaveEpoch(epoch) => write_meta(sql, "epoch", epoch),
        DocWrite::Repair { repair, epoch, text } => save_repair(sql, repair, epoch, text),
        DocWrite::SaveSnapshot { v, text, compact_before } => {
            write_meta(sql, "snapshot_text", text)?;
            write_meta(sql, "snapshot_v", &v.to_string())?;
            run(sql, "DELETE FROM ops WHERE v < ?", vec![safe_integer(*compact_before)?])
        }
    }
}

fn append_op(sql: &SqlStorage, op: &LoggedOp) -> Result<(), Error> {
    run(
        sql,
        "INSERT INTO ops (v, op, src, seq, bytes) VALUES (?, ?, ?, ?, length(CAST(?2 AS BLOB)))",
        vec![
            safe_integer(op.v)?,
            op.op.to_json().to_string().into(),
            op.src.clone().into(),
            safe_integer(op.seq)?,
        ],
    )
}

fn save_source(
    sql: &SqlStorage,
    user: &Owner,
    src: &str,
    applied: Applied,
    forget: Option<(Owner, String)>,
) -> Result<(), Error> {
    let owner = |o: &Owner| o.as_ref().map_or_else(String::new, |u| u.as_str().to_owned());
    run(
        sql,
        "INSERT INTO sources (user, src, seq, v) VALUES (?, ?, ?, ?)
         ON CONFLICT(user, src) DO UPDATE SET seq = excluded.seq, v = excluded.v",
        vec![owner(user).into(), src.to_owned().into(), safe_integer(applied.seq)?, safe_integer(applied.v)?],
    )?;
    match forget {
        Some((who, gone)) => {
            run(sql, "DELETE FROM sources WHERE user = ? AND src = ?", vec![owner(&who).into(), gone.into()])
        }
        None => Ok(()),
    }
}

/// Stores what a repair decided and logs it: the text at the last good version becomes the
/// snapshot at a version no client has seen, the log goes, and so do the dropped ops' sources.
fn save_repair(sql: &SqlStorage, repair: &Repair, epoch: &str, text: &str) -> Result<(), Error> {
    worker::console_error!(
        "document repaired: ops from version {} dropped, continuing at {}: {}",
        repair.dropped_from,
        repair.continued_at,
        repair.reason
    );
    let report = serde_json::json!({
        "droppedFrom": repair.dropped_from,
        "continuedAt": repair.continued_at,
        "reason": repair.reason,
        "epoch": epoch,
    });
    write_meta(sql, "snapshot_text", text)?;
    write_meta(sql, "snapshot_v", &repair.continued_at.to_string())?;
    write_meta(sql, "epoch", epoch)?;
    write_meta(sql, "repair", &report.to_string())?;
    run(sql, "DELETE FROM ops", Vec::new())?;
    run(sql, "DELETE FROM sources WHERE v >= ?", vec![safe_integer(repair.dropped_from)?])
}

/// Logged ops from version `from` on, below `until`, and at most about `max_bytes` of op text
/// (the first row always comes, however large), unparsed: the core decides what they are.
fn read_ops(
    sql: &SqlStorage,
    from: u64,
    until: Option<u64>,
    max_bytes: Option<usize>,
) -> Result<Vec<StoredOp>, Error> {
    let until = until.map_or(sql::bound(u64::MAX), sql::bound);
    let max_bytes = sql::bound(max_bytes.map_or(u64::MAX, |b| b as u64));
    rows(
        sql,
        "SELECT v, op, src, seq FROM (
           SELECT v, op, src, seq, SUM(bytes) OVER (ORDER BY v) - bytes AS before
           FROM ops WHERE v >= ? AND v < ?
         ) WHERE before < ? ORDER BY v",
        vec![sql::bound(from), until, max_bytes],
    )
}

/// The newest logged ops below the snapshot at `snapshot_v`: at most `retain` of them and about
/// `max_bytes`, in version order. A rebuild keeps them as history for late submits and resumes.
fn read_history(
    sql: &SqlStorage,
    snapshot_v: u64,
    retain: u64,
    max_bytes: usize,
) -> Result<Vec<StoredOp>, Error> {
    rows(
        sql,
        "SELECT v, op, src, seq FROM (
           SELECT v, op, src, seq, SUM(bytes) OVER (ORDER BY v DESC) AS newer
           FROM ops WHERE v >= ? AND v < ?
         ) WHERE newer <= ? ORDER BY v",
        vec![
            sql::bound(snapshot_v.saturating_sub(retain)),
            sql::bound(snapshot_v),
            sql::bound(max_bytes as u64),
        ],
    )
}

fn read_sources(sql: &SqlStorage) -> Result<BTreeMap<(Owner, String), Applied>, Error> {
    #[derive(Deserialize)]
    struct Row {
        user: String,
        src: String,
        seq: i64,
        v: i64,
    }
    let found: Vec<Row> = rows(sql, "SELECT user, src, seq, v FROM sources", Vec::new())?;
    // A row that does not read is skipped (and so forgotten), never a reason to refuse a load.
    Ok(found
        .into_iter()
        .filter_map(|r| {
            let owner = match r.user.as_str() {
                "" => None,
                user => Some(UserId::parse(user).ok()?),
            };
            let applied = Applied { seq: u64::try_from(r.seq).ok()?, v: u64::try_from(r.v).ok()? };
            Some(((owner, r.src), applied))
        })
        .collect())
}
