//! The op log: an applied op as the document keeps it ([`LoggedOp`]), as storage holds it
//! ([`StoredOp`], not trusted until parsed), and as the live log holds it (with the size of its
//! `operation` frame, which bounds the log by bytes). The live log itself and its bounds are
//! [`Doc`](super::Doc)'s; reading it back after a wake is `restore.rs`.

use crate::core::ot::{Op, MAX_LEN};
use crate::core::protocol;
use serde::Deserialize;
use serde_json::{json, Value};

/// An applied op as the log keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedOp {
    /// The version it was applied at (the document was at `v`, then at `v + 1`).
    pub v: u64,
    /// The op as applied (transformed, normalized).
    pub op: Op,
    /// The submitting client's id.
    pub src: String,
    /// The client's counter.
    pub seq: u64,
}

impl LoggedOp {
    pub(super) fn data(&self) -> Value {
        json!({ "v": self.v, "op": self.op.to_json(), "src": self.src, "seq": self.seq })
    }

    pub(super) fn frame(&self) -> String {
        protocol::event("operation", &self.data())
    }

    /// The row storage keeps for it.
    pub fn stored(&self) -> StoredOp {
        let int = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        StoredOp {
            v: int(self.v),
            op: self.op.to_json().to_string(),
            src: self.src.clone(),
            seq: int(self.seq),
        }
    }
}

/// An op row as storage holds it, not yet trusted.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StoredOp {
    /// Its version.
    pub v: i64,
    /// The op as JSON text.
    pub op: String,
    /// The client id.
    pub src: String,
    /// The client's counter.
    pub seq: i64,
}

impl StoredOp {
    /// The logged op it holds, checked: a version and counter in range and an op that parses
    /// within the limits.
    pub(super) fn parse(&self) -> Result<LoggedOp, String> {
        let number = |n: i64, what: &str| {
            u64::try_from(n)
                .ok()
                .filter(|n| *n <= MAX_LEN)
                .ok_or_else(|| format!("{what} {n} is out of range"))
        };
        let value: Value =
            serde_json::from_str(&self.op).map_err(|e| format!("op {} is not JSON: {e}", self.v))?;
        // No component cap here: a transformed op may have more than a submitted one, and what
        // was stored is loaded as long as it parses, applies and follows its predecessor.
        let op = Op::from_json(&value).map_err(|e| format!("op {}: {e}", self.v))?;
        Ok(LoggedOp {
            v: number(self.v, "version")?,
            op,
            src: self.src.clone(),
            seq: number(self.seq, "seq")?,
        })
    }
}

/// The stored ops just before the snapshot at `snapshot_v` that still parse and run contiguously
/// up to it: not needed to rebuild the text, but kept in the live log so late submits and
/// resumes reach back as far as before the wake.
pub(super) fn history(rows: &[StoredOp], snapshot_v: u64) -> Vec<LoggedOp> {
    let mut kept: Vec<LoggedOp> = Vec::new();
    for row in rows.iter().filter(|r| r.v >= 0 && (r.v as u64) < snapshot_v).rev() {
        let expected = kept.last().map_or(snapshot_v, |o| o.v).checked_sub(1);
        match row.parse() {
            Ok(logged) if Some(logged.v) == expected => kept.push(logged),
            _ => break,
        }
    }
    kept.reverse();
    kept
}

/// An op in the live log, with the size of its `operation` frame.
#[derive(Debug)]
pub(super) struct Logged {
    pub(super) op: LoggedOp,
    pub(super) bytes: usize,
}

impl Logged {
    pub(super) fn new(op: LoggedOp) -> Logged {
        let bytes = op.frame().len();
        Logged { op, bytes }
    }
}
