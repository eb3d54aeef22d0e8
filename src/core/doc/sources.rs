//! The duplicate table of a document: per user and client id (`src`), the last applied `seq`
//! and the version it was applied at, so a resubmitted op is acknowledged, never applied twice.
//!
//! `src` is chosen by the client, so it is only trusted within the user who sent it: Alice's
//! entry can be neither advanced nor evicted by another user. Each user keeps at most
//! [`MAX_SOURCES_PER_USER`] entries (their least recently applied goes first), and the table at
//! most [`MAX_SOURCES`] (the least recently applied of anyone goes first, reachable only by
//! many users). Entries stored before sources had users (`user` empty in storage) answer an
//! exact resubmission and nothing else.

use crate::core::ids::UserId;
use std::collections::BTreeMap;

/// Sources one user may have remembered in one document.
pub const MAX_SOURCES_PER_USER: usize = 64;

/// Sources remembered in one document.
pub const MAX_SOURCES: usize = 10_000;

/// Who a source belongs to: a user, or unknown for rows stored before sources had users.
pub type Owner = Option<UserId>;

/// What is remembered of a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// Its last applied counter.
    pub seq: u64,
    /// The version that op was applied at.
    pub v: u64,
}

/// What a submitted `(src, seq)` is, judged before any version check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Never applied: go on.
    New,
    /// Applied already, at this version: acknowledge again.
    Duplicate(u64),
    /// Older than the last applied op of this source.
    Stale(u64),
}

/// The table.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    entries: BTreeMap<(Owner, String), Applied>,
}

impl Sources {
    /// The table as stored.
    pub fn new(entries: BTreeMap<(Owner, String), Applied>) -> Sources {
        let mut sources = Sources { entries };
        while sources.entries.len() > MAX_SOURCES {
            if sources.evict_oldest().is_none() {
                break;
            }
        }
        sources
    }

    /// Entries remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Judges `(src, seq)` from `user`. A legacy entry answers only while its op is at or after
    /// `floor` (the live log's start): it exists for resubmissions across the upgrade, and a
    /// `src` someone squatted before it must not swallow another user's op forever.
    pub fn check(&self, user: &UserId, src: &str, seq: u64, floor: u64) -> Seen {
        let own = self.entries.get(&(Some(user.clone()), src.to_owned()));
        match own {
            Some(a) if seq == a.seq => Seen::Duplicate(a.v),
            Some(a) if seq < a.seq => Seen::Stale(a.seq),
            Some(_) => Seen::New,
            None => match self.entries.get(&(None, src.to_owned())) {
                Some(a) if seq == a.seq && a.v >= floor => Seen::Duplicate(a.v),
                _ => Seen::New,
            },
        }
    }

    /// Records an applied op; returns the entry forgotten to stay in bounds, if any.
    pub fn record(&mut self, user: &UserId, src: &str, applied: Applied) -> Option<(Owner, String)> {
        let owner = Some(user.clone());
        self.entries.insert((owner.clone(), src.to_owned()), applied);
        if self.owned_by(&owner).count() > MAX_SOURCES_PER_USER {
            let oldest = self.owned_by(&owner).min_by_key(|(_, a)| a.v).map(|(key, _)| key.clone())?;
            self.entries.remove(&oldest);
            return Some(oldest);
        }
        if self.entries.len() > MAX_SOURCES {
            return self.evict_oldest();
        }
        None
    }

    /// Forgets every source applied at `v` or later (their ops were dropped by a repair).
    pub fn forget_from(&mut self, v: u64) {
        self.entries.retain(|_, a| a.v < v);
    }

    /// One owner's entries: keys sort by owner first, so they are one range.
    fn owned_by<'a>(&'a self, owner: &'a Owner) -> impl Iterator<Item = (&'a (Owner, String), &'a Applied)> {
        self.entries.range((owner.clone(), String::new())..).take_while(move |((o, _), _)| o == owner)
    }

    fn evict_oldest(&mut self) -> Option<(Owner, String)> {
        let oldest = self.entries.iter().min_by_key(|(_, a)| a.v)?.0.clone();
        self.entries.remove(&oldest);
        Some(oldest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(u: &str) -> UserId {
        UserId::parse(u).unwrap()
    }

    #[test]
    fn another_users_higher_seq_does_not_touch_alices_source() {
        let mut s = Sources::default();
        s.record(&user("alice"), "tab", Applied { seq: 1, v: 0 });
        s.record(&user("mallory"), "tab", Applied { seq: 100, v: 1 });
        assert_eq!(s.check(&user("alice"), "tab", 2, 0), Seen::New);
        assert_eq!(s.check(&user("alice"), "tab", 1, 0), Seen::Duplicate(0));
    }

    #[test]
    fn one_user_flooding_sources_evicts_only_their_own() {
        let mut s = Sources::default();
        s.record(&user("alice"), "tab", Applied { seq: 1, v: 0 });
        for i in 0..(MAX_SOURCES_PER_USER as u64 * 3) {
            let gone = s.record(&user("mallory"), &format!("s{i}"), Applied { seq: 1, v: i + 1 });
            assert!(gone.is_none_or(|(o, _)| o == Some(user("mallory"))));
        }
        assert_eq!(s.check(&user("alice"), "tab", 1, 0), Seen::Duplicate(0));
        assert_eq!(s.len(), MAX_SOURCES_PER_USER + 1);
    }

    #[test]
    fn legacy_sources_answer_only_exact_resubmissions() {
        let mut entries = BTreeMap::new();
        entries.insert((None, "tab".to_owned()), Applied { seq: 5, v: 9 });
        let s = Sources::new(entries);
        assert_eq!(s.check(&user("alice"), "tab", 5, 9), Seen::Duplicate(9));
        assert_eq!(s.check(&user("alice"), "tab", 4, 9), Seen::New);
        assert_eq!(s.check(&user("alice"), "tab", 6, 9), Seen::New);
        assert_eq!(s.check(&user("alice"), "tab", 5, 10), Seen::New, "older than the live log: expired");
    }
}
