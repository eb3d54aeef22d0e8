//! Token buckets: per connection and event class, refilled continuously from `now`.
//!
//! Counting is in milli-tokens so refills are exact integers: a bucket of rate `r`/s gains `r`
//! milli-tokens per millisecond, and one event costs 1,000.

use crate::core::ids::UserId;
use crate::core::time::Timestamp;
use std::collections::BTreeMap;

const COST: u64 = 1000;

/// A sustained rate and the burst allowed on top of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Events per second, sustained.
    pub per_sec: u32,
    /// Events allowed at once from a full bucket.
    pub burst: u32,
}

/// One bucket. Starts full.
#[derive(Debug, Clone)]
pub struct Bucket {
    milli_tokens: u64,
    updated: Timestamp,
}

impl Bucket {
    /// A full bucket for `rate` at `now`.
    pub fn full(rate: Rate, now: Timestamp) -> Bucket {
        Bucket { milli_tokens: u64::from(rate.burst) * COST, updated: now }
    }

    /// Whether the bucket has refilled completely by `now` (it can then be forgotten: a new
    /// full one is the same).
    pub fn is_full(&self, rate: Rate, now: Timestamp) -> bool {
        let elapsed = now.as_millis().saturating_sub(self.updated.as_millis());
        let capacity = u64::from(rate.burst) * COST;
        self.milli_tokens.saturating_add(elapsed.saturating_mul(rate.per_sec.into())) >= capacity
    }

    /// Takes one token, or says how many milliseconds until one is available.
    pub fn take(&mut self, rate: Rate, now: Timestamp) -> Result<(), u64> {
        let elapsed = now.as_millis().saturating_sub(self.updated.as_millis());
        let capacity = u64::from(rate.burst) * COST;
        self.milli_tokens =
            self.milli_tokens.saturating_add(elapsed.saturating_mul(rate.per_sec.into())).min(capacity);
        self.updated = self.updated.max(now);
        if self.milli_tokens >= COST {
            self.milli_tokens -= COST;
            Ok(())
        } else if rate.per_sec == 0 {
            Err(u64::MAX)
        } else {
            Err((COST - self.milli_tokens).div_ceil(rate.per_sec.into()))
        }
    }
}

/// An object's classes of rate-limited events.
pub trait EventClasses: Copy + 'static {
    /// Every class, each at the position its [`EventClasses::index`] names.
    const CLASSES: &'static [Self];

    /// The class's rate.
    fn rate(self) -> Rate;

    /// Its position in [`EventClasses::CLASSES`].
    fn index(self) -> usize;
}

/// Each user's budget in one object: a bucket per class, shared by all the user's sockets (and
/// whatever else they send through), so reconnecting or another tab buys no fresh burst. An entry
/// outlives its user's sockets until it has refilled; then it is the same as a new one and can go.
#[derive(Debug)]
pub struct Budgets<C: EventClasses> {
    by_user: BTreeMap<UserId, Vec<Bucket>>,
    classes: std::marker::PhantomData<C>,
}

impl<C: EventClasses> Default for Budgets<C> {
    fn default() -> Self {
        Budgets { by_user: BTreeMap::new(), classes: std::marker::PhantomData }
    }
}

impl<C: EventClasses> Budgets<C> {
    /// Takes one token of `class` from `user`'s budget, or says how many milliseconds until one
    /// is available.
    pub fn take(&mut self, user: &UserId, class: C, now: Timestamp) -> Result<(), u64> {
        let budget = self
            .by_user
            .entry(user.clone())
            .or_insert_with(|| C::CLASSES.iter().map(|c| Bucket::full(c.rate(), now)).collect());
        match budget.get_mut(class.index()) {
            Some(bucket) => bucket.take(class.rate(), now),
            None => Ok(()),
        }
    }

    /// Forgets the budgets that have refilled, but for users `keep` names (those with sockets).
    pub fn forget_refilled(&mut self, now: Timestamp, keep: impl Fn(&UserId) -> bool) {
        self.by_user.retain(|user, buckets| {
            keep(user) || !C::CLASSES.iter().zip(buckets.iter()).all(|(c, b)| b.is_full(c.rate(), now))
        });
    }

    /// Users with a budget remembered.
    pub fn len(&self) -> usize {
        self.by_user.len()
    }

    /// Whether none is remembered.
    pub fn is_empty(&self) -> bool {
        self.by_user.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_refills_at_the_rate() {
        let rate = Rate { per_sec: 10, burst: 3 };
        let t0 = Timestamp(1_000_000);
        let mut b = Bucket::full(rate, t0);
        assert!(b.take(rate, t0).is_ok());
        assert!(b.take(rate, t0).is_ok());
        assert!(b.take(rate, t0).is_ok());
        assert_eq!(b.take(rate, t0), Err(100), "one token per 100 ms at 10/s");
        assert_eq!(b.take(rate, t0.plus_millis(40)), Err(60));
        assert!(b.take(rate, t0.plus_millis(100)).is_ok());
        assert!(b.take(rate, t0.plus_millis(100)).is_err());
        // A long pause refills to the burst, not beyond.
        let later = t0.plus_millis(60_000);
        for _ in 0..3 {
            assert!(b.take(rate, later).is_ok());
        }
        assert!(b.take(rate, later).is_err());
    }

    #[test]
    fn a_clock_going_backwards_refills_nothing() {
        let rate = Rate { per_sec: 1, burst: 1 };
        let t0 = Timestamp(10_000);
        let mut b = Bucket::full(rate, t0);
        assert!(b.take(rate, t0).is_ok());
        assert!(b.take(rate, Timestamp(5_000)).is_err());
        assert!(b.take(rate, t0.plus_millis(999)).is_err());
        assert!(b.take(rate, t0.plus_millis(1000)).is_ok());
    }

    #[derive(Clone, Copy)]
    enum Two {
        A,
        B,
    }

    impl EventClasses for Two {
        const CLASSES: &'static [Two] = &[Two::A, Two::B];
        fn rate(self) -> Rate {
            Rate { per_sec: 1, burst: 1 }
        }
        fn index(self) -> usize {
            self as usize
        }
    }

    #[test]
    fn budgets_are_per_user_and_class_and_are_forgotten_once_refilled() {
        let t0 = Timestamp(1_000_000);
        let (alice, bob) = (UserId::parse("alice").unwrap(), UserId::parse("bob").unwrap());
        let mut budgets = Budgets::<Two>::default();
        assert!(budgets.take(&alice, Two::A, t0).is_ok());
        assert!(budgets.take(&alice, Two::A, t0).is_err(), "spent");
        assert!(budgets.take(&alice, Two::B, t0).is_ok(), "another class");
        assert!(budgets.take(&bob, Two::A, t0).is_ok(), "another user");
        budgets.forget_refilled(t0, |_| false);
        assert_eq!(budgets.len(), 2, "not refilled yet: kept across a reconnect");
        budgets.forget_refilled(t0.plus_millis(1_000), |u| *u == bob);
        assert_eq!(budgets.len(), 1, "alice refilled and has no socket; bob is kept");
    }
}
