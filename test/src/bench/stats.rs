//! Percentiles of a set of samples (nearest rank on the sorted samples: p50 of 60 samples
//! is the 30th smallest, p99 the 60th, i.e. the largest).

use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub min: f64,
    pub max: f64,
}

/// The value at percentile `p` (0..=100) of `sorted` (ascending, not empty).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    assert!(!sorted.is_empty(), "percentile of no samples");
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Summary {
    /// Panics on an empty set: a figure without samples is a bug of the benchmark.
    pub fn of(samples: &[f64]) -> Summary {
        let mut s = samples.to_vec();
        s.sort_by(f64::total_cmp);
        Summary {
            n: s.len(),
            p50: percentile(&s, 50.0),
            p90: percentile(&s, 90.0),
            p99: percentile(&s, 99.0),
            min: s[0],
            max: s[s.len() - 1],
        }
    }

    /// The JSON fields of a figure (rounded to µs or 1/1000 of a ratio).
    pub fn json(&self) -> Value {
        let r = |v: f64| (v * 1000.0).round() / 1000.0;
        json!({
            "n": self.n,
            "p50": r(self.p50),
            "p90": r(self.p90),
            "p99": r(self.p99),
            "min": r(self.min),
            "max": r(self.max),
        })
    }
}

/// Ratios taken pair by pair: `ours[i] / theirs[i]` (both series measured in the same
/// iteration, one right after the other).
pub fn ratios(ours: &[f64], theirs: &[f64]) -> Vec<f64> {
    assert_eq!(ours.len(), theirs.len(), "paired series differ in length");
    ours.iter().zip(theirs).map(|(a, b)| a / b).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = Summary::of(&v);
        assert_eq!(
            (s.p50, s.p90, s.p99, s.min, s.max),
            (50.0, 90.0, 99.0, 1.0, 100.0)
        );
        let s = Summary::of(&[3.0, 1.0, 2.0]);
        assert_eq!((s.p50, s.p90, s.min, s.max, s.n), (2.0, 3.0, 1.0, 3.0, 3));
        assert_eq!(Summary::of(&[7.0]).p99, 7.0);
    }

    #[test]
    fn pairwise_ratios() {
        assert_eq!(ratios(&[2.0, 9.0], &[4.0, 3.0]), vec![0.5, 3.0]);
    }
}
