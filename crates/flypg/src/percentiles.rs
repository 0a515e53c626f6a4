//! Percentiles of a set of measured durations.

/// Nearest-rank percentiles over samples in milliseconds.
#[derive(Debug, Clone, Default)]
pub(crate) struct Samples {
    sorted: Vec<f64>,
}

impl Samples {
    pub(crate) fn new(mut values: Vec<f64>) -> Self {
        values.sort_by(f64::total_cmp);
        Samples { sorted: values }
    }

    /// The `p`-th percentile (0 to 100), or 0 when there are no samples.
    pub(crate) fn pct(&self, p: f64) -> f64 {
        if self.sorted.is_empty() {
            return 0.0;
        }
        let rank = ((p / 100.0) * self.sorted.len() as f64).ceil() as usize;
        self.sorted[rank.clamp(1, self.sorted.len()) - 1]
    }

    #[cfg(feature = "bench")]
    pub(crate) fn max(&self) -> f64 {
        self.sorted.last().copied().unwrap_or(0.0)
    }

    /// The samples, smallest first.
    #[cfg(feature = "bench")]
    pub(crate) fn values(&self) -> &[f64] {
        &self.sorted
    }

    pub(crate) fn len(&self) -> usize {
        self.sorted.len()
    }
}

/// A duration in (fractional) milliseconds, the unit of every sample.
pub(crate) fn millis(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Rounds to microsecond precision for printing.
pub(crate) fn round3(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let s = Samples::new((1..=100).map(f64::from).rev().collect());
        assert_eq!(s.pct(50.0), 50.0);
        assert_eq!(s.pct(99.0), 99.0);
        assert_eq!(s.pct(100.0), 100.0);
        assert_eq!(s.pct(0.0), 1.0);
        assert_eq!(s.max(), 100.0);
        assert_eq!(Samples::new(vec![]).pct(50.0), 0.0);
    }
}
