//! Time as data. The core never reads a clock: every handler is handed `now`.

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch, as the edge's `Date.now()` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// Milliseconds since the Unix epoch.
    pub fn as_millis(self) -> u64 {
        self.0
    }

    /// Whole seconds since the Unix epoch (JWT claims are in seconds).
    pub fn as_secs(self) -> i64 {
        i64::try_from(self.0 / 1000).unwrap_or(i64::MAX)
    }

    /// This instant plus `ms` milliseconds, saturating.
    pub fn plus_millis(self, ms: u64) -> Timestamp {
        Timestamp(self.0.saturating_add(ms))
    }
}
