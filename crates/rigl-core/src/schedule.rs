//! When masks change and how much: the update schedule and the drop-fraction anneals of the
//! reference implementation.

use serde::{Deserialize, Serialize};

/// How the drop fraction decays over the update window.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DropAnneal {
    /// `alpha` at every update.
    Constant,
    /// `alpha * 0.5 * (1 + cos(pi * min(t, end - begin) / (end - begin)))`, with the ABSOLUTE
    /// step `t`, as the reference computes it (it passes the global step, not `t - begin`).
    #[default]
    Cosine,
    /// `alpha * (1 - (t - begin) / (end - begin))^k` (this one does subtract `begin`).
    ExponentialK(f64),
}

impl core::str::FromStr for DropAnneal {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.to_ascii_lowercase();
        match s.as_str() {
            "constant" => Ok(Self::Constant),
            "cosine" => Ok(Self::Cosine),
            _ => s
                .strip_prefix("exponential_")
                .and_then(|k| k.parse::<f64>().ok())
                .filter(|k| k.is_finite())
                .map(Self::ExponentialK)
                .ok_or_else(|| {
                    format!("unknown drop anneal `{s}`: expected constant, cosine or exponential_K (e.g. exponential_3)")
                }),
        }
    }
}

impl core::fmt::Display for DropAnneal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Constant => f.write_str("constant"),
            Self::Cosine => f.write_str("cosine"),
            Self::ExponentialK(k) => write!(f, "exponential_{k}"),
        }
    }
}

/// The reference's mask-update schedule.
///
/// Step `t` is an update step iff `t >= begin && (end < 0 || t <= end) && last + frequency <= t`,
/// where `last` is the step of the previous update (initially `-frequency`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct UpdateSchedule {
    /// First step at which masks may change.
    pub begin_step: i64,
    /// Last step (inclusive) at which masks may change; negative: never stops.
    pub end_step: i64,
    /// Steps between updates (delta T), at least 1.
    pub frequency: i64,
    /// Initial drop fraction (alpha).
    pub drop_fraction: f64,
    /// How the drop fraction decays.
    pub anneal: DropAnneal,
}

impl UpdateSchedule {
    /// Whether `t` is an update step, given the step of the last update.
    pub fn is_update_step(&self, t: i64, last_update: i64) -> bool {
        t >= self.begin_step
            && (self.end_step < 0 || t <= self.end_step)
            && last_update + self.frequency <= t
    }

    /// The `last_update` value before any update.
    pub fn initial_last_update(&self) -> i64 {
        -self.frequency
    }

    /// The drop fraction at update step `t`.
    pub fn drop_fraction_at(&self, t: i64) -> f64 {
        let alpha = self.drop_fraction;
        let span = (self.end_step - self.begin_step) as f64;
        match self.anneal {
            DropAnneal::Constant => alpha,
            _ if self.end_step < 0 || span <= 0.0 => alpha,
            DropAnneal::Cosine => {
                let x = (t as f64).min(span) / span;
                alpha * 0.5 * (1.0 + (core::f64::consts::PI * x).cos())
            }
            DropAnneal::ExponentialK(k) => {
                let p = ((t - self.begin_step) as f64 / span).clamp(0.0, 1.0);
                alpha * (1.0 - p).powf(k)
            }
        }
    }
}

/// Zhu & Gupta's cubic sparsity ramp: `s_t = s_f * (1 - (1 - p)^3)` with
/// `p = clamp((t - begin) / (end - begin), 0, 1)` (the paper's form; jaxpruner's polynomial
/// schedule uses `t + 1`, we do not).
pub fn gradual_sparsity(final_sparsity: f64, t: i64, begin: i64, end: i64) -> f64 {
    let span = (end - begin) as f64;
    let p = if span <= 0.0 {
        if t >= begin { 1.0 } else { 0.0 }
    } else {
        ((t - begin) as f64 / span).clamp(0.0, 1.0)
    };
    final_sparsity * (1.0 - (1.0 - p).powi(3))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched(begin: i64, end: i64, freq: i64, anneal: DropAnneal) -> UpdateSchedule {
        UpdateSchedule {
            begin_step: begin,
            end_step: end,
            frequency: freq,
            drop_fraction: 0.3,
            anneal,
        }
    }

    #[test]
    fn update_steps_follow_the_reference_rule() {
        let s = sched(10, 50, 20, DropAnneal::Constant);
        let mut last = s.initial_last_update();
        let mut updates = vec![];
        for t in 0..100 {
            if s.is_update_step(t, last) {
                updates.push(t);
                last = t;
            }
        }
        assert_eq!(updates, [10, 30, 50]);
        let never_ends = sched(0, -1, 25, DropAnneal::Constant);
        let mut last = never_ends.initial_last_update();
        let mut n = 0;
        for t in 0..1000 {
            if never_ends.is_update_step(t, last) {
                last = t;
                n += 1;
            }
        }
        assert_eq!(n, 40);
    }

    #[test]
    fn cosine_uses_the_absolute_step() {
        let s = sched(100, 1100, 100, DropAnneal::Cosine);
        // x = min(t, 1000) / 1000 with the absolute t.
        let expect =
            |t: f64| 0.3 * 0.5 * (1.0 + (std::f64::consts::PI * t.min(1000.0) / 1000.0).cos());
        for t in [100, 500, 1000, 1100] {
            assert!((s.drop_fraction_at(t) - expect(t as f64)).abs() < 1e-12);
        }
        assert!((s.drop_fraction_at(0) - 0.3).abs() < 1e-12);
        assert!(s.drop_fraction_at(1000).abs() < 1e-12);
    }

    #[test]
    fn exponential_subtracts_begin() {
        let s = sched(100, 1100, 100, DropAnneal::ExponentialK(2.0));
        assert!((s.drop_fraction_at(100) - 0.3).abs() < 1e-12);
        assert!((s.drop_fraction_at(600) - 0.3 * 0.25).abs() < 1e-12);
        assert!(s.drop_fraction_at(1100).abs() < 1e-12);
        assert_eq!(
            "exponential_3".parse::<DropAnneal>().unwrap(),
            DropAnneal::ExponentialK(3.0)
        );
        assert!("linear".parse::<DropAnneal>().is_err());
    }

    #[test]
    fn gradual_ramp() {
        assert_eq!(gradual_sparsity(0.9, 0, 100, 1100), 0.0);
        assert_eq!(gradual_sparsity(0.9, 100, 100, 1100), 0.0);
        assert!((gradual_sparsity(0.9, 600, 100, 1100) - 0.9 * (1.0 - 0.125)).abs() < 1e-12);
        assert_eq!(gradual_sparsity(0.9, 1100, 100, 1100), 0.9);
        assert_eq!(gradual_sparsity(0.9, 5000, 100, 1100), 0.9);
    }
}
