//! Token buckets: per connection and event class, refilled continuously from `now`.
//!
//! Counting is in milli-tokens so refills are exact integers: a bucket of rate `r`/s gains `r`
//! milli-tokens per millisecond, and one event costs 1,000.

use crate::core::time::Timestamp;

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
}
