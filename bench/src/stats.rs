//! Latency samples and their percentiles. Samples are kept whole (a run holds at most a few
//! million), so percentiles are exact rather than bucketed.

/// Latencies in microseconds.
#[derive(Debug, Default, Clone)]
pub struct Samples {
    values: Vec<u64>,
    sorted: bool,
}

impl Samples {
    /// Records one latency.
    pub fn record(&mut self, micros: u64) {
        self.values.push(micros);
        self.sorted = false;
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: Samples) {
        self.values.extend(other.values);
        self.sorted = false;
    }

    /// How many samples.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// The `p`-th percentile (nearest rank, `p` in 0..=100), in microseconds; 0 when empty.
    pub fn percentile(&mut self, p: f64) -> u64 {
        if self.values.is_empty() {
            return 0;
        }
        if !self.sorted {
            self.values.sort_unstable();
            self.sorted = true;
        }
        let rank = ((p / 100.0) * self.values.len() as f64).ceil() as usize;
        self.values[rank.clamp(1, self.values.len()) - 1]
    }

    /// The largest sample; 0 when empty.
    pub fn max(&self) -> u64 {
        self.values.iter().copied().max().unwrap_or(0)
    }

    /// p50, p99 and max in milliseconds, for reports.
    pub fn summary_ms(&mut self) -> (f64, f64, f64) {
        let ms = |us: u64| us as f64 / 1000.0;
        (ms(self.percentile(50.0)), ms(self.percentile(99.0)), ms(self.max()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut s = Samples::default();
        for v in (1..=100).rev() {
            s.record(v);
        }
        assert_eq!(s.percentile(50.0), 50);
        assert_eq!(s.percentile(99.0), 99);
        assert_eq!(s.percentile(100.0), 100);
        assert_eq!(s.percentile(0.0), 1);
        assert_eq!(s.max(), 100);
        s.record(1000);
        assert_eq!(s.percentile(100.0), 1000, "recording after a percentile re-sorts");
    }

    #[test]
    fn empty_and_summary() {
        let mut empty = Samples::default();
        assert_eq!(empty.len(), 0);
        assert_eq!((empty.percentile(99.0), empty.max()), (0, 0));
        let mut a = Samples::default();
        for v in [5, 1, 3] {
            a.record(v);
        }
        assert_eq!((a.len(), a.percentile(50.0)), (3, 3));
        assert_eq!(a.summary_ms(), (0.003, 0.005, 0.005));
    }
}
