//! Rebuilding a document after a wake, from what the shell read from storage ([`StoredDoc`]).
//!
//! Storage is never trusted to be well formed: a row that does not parse, apply or follow its
//! predecessor ends the rebuild there, and the document goes on from the last good version in
//! a new epoch ([`Repair`]) instead of refusing every connect. A rebuild reads only the latest
//! snapshot and the ops after it (plus the contiguous ops just before it, so late submits and
//! resumes reach back as far as before the wake).

use super::effect::{DocEffect, DocWrite, Repair};
use super::log::{history, Logged, StoredOp};
use super::sources::{Applied, Owner, Sources};
use super::Doc;
use crate::core::config::Config;
use crate::core::ids::DocId;
use crate::core::ot::{self, MAX_LEN};
use crate::core::sessions::{SessionLimits, Sessions};
use crate::core::throttle::Budgets;
use std::collections::{BTreeMap, VecDeque};

/// What the shell read from storage.
#[derive(Debug, Clone, Default)]
pub struct StoredDoc {
    /// The document's epoch, when it has one.
    pub epoch: Option<String>,
    /// The latest snapshot's version (0 with none).
    pub snapshot_v: u64,
    /// The latest snapshot's text.
    pub snapshot_text: String,
    /// Logged ops from `snapshot_v` on, in version order.
    pub ops: Vec<StoredOp>,
    /// Remembered sources.
    pub sources: BTreeMap<(Owner, String), Applied>,
}

impl Doc {
    /// Rebuilds the document from storage: the snapshot plus every logged op after it, up to
    /// the first that cannot be loaded. Also returns what the shell must write: a new epoch
    /// (`fresh_epoch`, when storage has none or the log had to be cut), and a repair.
    pub fn restore(
        id: DocId,
        stored: StoredDoc,
        config: Config,
        fresh_epoch: String,
    ) -> (Doc, Vec<DocEffect>) {
        let mut text = stored.snapshot_text;
        let mut version = stored.snapshot_v;
        let mut log = history(&stored.ops, version);
        let mut problem = None;
        let mut last_stored = version;
        for row in &stored.ops {
            // Versions past what clients carry are not real versions: never continue after them.
            if let Some(v) = u64::try_from(row.v).ok().filter(|v| *v < MAX_LEN) {
                last_stored = last_stored.max(v + 1);
            }
            if problem.is_some() || row.v < 0 || (row.v as u64) < version {
                continue;
            }
            let loaded = row.parse().and_then(|logged| {
                if logged.v != version {
                    return Err(format!("the op log jumps from {version} to {}", logged.v));
                }
                let next = ot::apply(&text, &logged.op).map_err(|e| format!("op {}: {e}", logged.v))?;
                Ok((logged, next))
            });
            match loaded {
                Ok((logged, next)) => {
                    text = next;
                    version += 1;
                    log.push(logged);
                }
                Err(why) => problem = Some(why),
            }
        }
        let mut effects = Vec::new();
        let mut sources = Sources::new(stored.sources);
        let mut snapshot_v = stored.snapshot_v;
        let epoch = match (problem, stored.epoch) {
            (Some(reason), _) => {
                // One past anything stored, so no client's version is current after the repair.
                let continued_at = last_stored.max(version).saturating_add(1);
                let repair = Repair { dropped_from: version, continued_at, reason };
                sources.forget_from(repair.dropped_from);
                version = repair.continued_at;
                snapshot_v = version;
                log.clear();
                effects.push(DocEffect::Write(DocWrite::Repair {
                    repair,
                    epoch: fresh_epoch.clone(),
                    text: text.clone(),
                }));
                fresh_epoch
            }
            (None, Some(epoch)) => epoch,
            (None, None) => {
                effects.push(DocEffect::Write(DocWrite::SaveEpoch(fresh_epoch.clone())));
                fresh_epoch
            }
        };
        let repair = effects.iter().find_map(|e| match e {
            DocEffect::Write(DocWrite::Repair { repair, .. }) => Some(repair.clone()),
            _ => None,
        });
        let mut doc = Doc {
            id,
            chars: ot::chars(&text),
            epoch,
            version,
            text,
            log: VecDeque::new(),
            log_bytes: 0,
            sources,
            snapshot_v,
            bytes_since_snapshot: 0,
            repair,
            conns: Sessions::new(SessionLimits::of(&config)),
            config,
            cursors: BTreeMap::new(),
            budgets: Budgets::default(),
            stale_editors: Vec::new(),
        };
        for logged in log {
            let entry = Logged::new(logged);
            doc.bytes_since_snapshot = doc.bytes_since_snapshot.saturating_add(entry.bytes);
            doc.push_log(entry);
        }
        (doc, effects)
    }
}
