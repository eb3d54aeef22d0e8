//! Timers as data: a table of deadlines whose earliest entry is the object's one alarm.

use crate::core::time::Timestamp;
use std::collections::{BTreeMap, BTreeSet};

/// Deadlines keyed by `K`; setting a key again moves its deadline.
#[derive(Debug, Clone)]
pub struct Timers<K: Ord + Clone> {
    by_deadline: BTreeSet<(Timestamp, K)>,
    by_key: BTreeMap<K, Timestamp>,
}

impl<K: Ord + Clone> Default for Timers<K> {
    fn default() -> Self {
        Timers { by_deadline: BTreeSet::new(), by_key: BTreeMap::new() }
    }
}

impl<K: Ord + Clone> Timers<K> {
    /// Sets (or moves) `key`'s deadline to `at`.
    pub fn set(&mut self, key: K, at: Timestamp) {
        if let Some(old) = self.by_key.insert(key.clone(), at) {
            self.by_deadline.remove(&(old, key.clone()));
        }
        self.by_deadline.insert((at, key));
    }

    /// Removes `key`'s deadline, if any.
    pub fn cancel(&mut self, key: &K) {
        if let Some(old) = self.by_key.remove(key) {
            self.by_deadline.remove(&(old, key.clone()));
        }
    }

    /// The earliest deadline: when the alarm should fire.
    pub fn next(&self) -> Option<Timestamp> {
        self.by_deadline.first().map(|(at, _)| *at)
    }

    /// Removes and returns every key due at `now`, earliest first.
    pub fn pop_due(&mut self, now: Timestamp) -> Vec<K> {
        let mut due = Vec::new();
        while let Some((at, _)) = self.by_deadline.first() {
            if *at > now {
                break;
            }
            if let Some((_, key)) = self.by_deadline.pop_first() {
                self.by_key.remove(&key);
                due.push(key);
            }
        }
        due
    }
}

/// The earlier of two optional deadlines (an object's own timers and its sessions').
pub fn earliest(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_earliest_deadline_is_next_and_moves_with_updates() {
        let mut t = Timers::default();
        assert_eq!(t.next(), None);
        t.set("a", Timestamp(30));
        t.set("b", Timestamp(10));
        assert_eq!(t.next(), Some(Timestamp(10)));
        t.set("b", Timestamp(50));
        assert_eq!(t.next(), Some(Timestamp(30)));
        t.cancel(&"a");
        assert_eq!(t.next(), Some(Timestamp(50)));
        assert!(t.pop_due(Timestamp(49)).is_empty());
        t.set("c", Timestamp(40));
        assert_eq!(t.pop_due(Timestamp(50)), vec!["c", "b"]);
        assert_eq!(t.next(), None);
        assert!(t.pop_due(Timestamp(u64::MAX)).is_empty(), "popped keys are gone");
    }
}
