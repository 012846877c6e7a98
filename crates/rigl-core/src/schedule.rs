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
            // The reference reads the power from the digits of the name, 1 when there are none.
            "exponential" => Ok(Self::ExponentialK(1.0)),
            _ => s
                .strip_prefix("exponential_")
                .and_then(|k| k.parse::<f64>().ok())
                .filter(|k| k.is_finite())
                .map(Self::ExponentialK)
                .ok_or_else(|| {
                    format!("unknown drop anneal `{s}`: expected constant, cosine, exponential (k = 1) or exponential_K (e.g. exponential_3)")
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

    /// The drop fraction at update step `t` (the step the method's update sees: see
    /// [`MaskUpdater::schedule_step`](crate::updater::MaskUpdater::schedule_step)).
    ///
    /// Computed in `f32` as the reference does (its initial drop fraction is a float32 tensor
    /// and TF's decays keep its dtype), then widened: the value is an exact `f32`, so
    /// [`n_prune`](crate::updater::drop_grow::n_prune) recovers it without rounding.
    ///
    /// - constant: `alpha`;
    /// - cosine: TF's `cosine_decay(alpha, t, end - begin)`:
    ///   `alpha * 0.5 * (1 + cos(pi * min(t, end - begin) / (end - begin)))`. With a negative end
    ///   step the span is negative, `min` picks it and the fraction is 1: the drop fraction is 0
    ///   (no connection changes). With `end == begin` the reference divides 0 by 0; this returns
    ///   `alpha` instead.
    /// - exponential_k: `alpha * (1 - (t - begin) / (end - begin))^k`, unclamped, as the
    ///   reference (an end step is required: [`DstConfig::validate`](crate::DstConfig::validate)).
    pub fn drop_fraction_at(&self, t: i64) -> f64 {
        let alpha = self.drop_fraction as f32;
        let span = (self.end_step - self.begin_step) as f32;
        let value = match self.anneal {
            DropAnneal::Constant => alpha,
            _ if self.end_step == self.begin_step => alpha,
            DropAnneal::Cosine => {
                let x = (t as f32).min(span) / span;
                alpha * (0.5 * (1.0 + (core::f32::consts::PI * x).cos()))
            }
            DropAnneal::ExponentialK(k) => {
                let p = (t - self.begin_step) as f32 / span;
                alpha * (1.0 - p).powf(k as f32)
            }
        };
        f64::from(value)
    }
}

/// Zhu & Gupta's cubic sparsity ramp, in `f32` as TF's model_pruning computes it:
/// `s_t = (0 - s_f) * (1 - p)^3 + s_f` with `p = min(1, max(0, (t - begin) / (end - begin)))`
/// (initial sparsity 0, exponent 3; jaxpruner's polynomial schedule uses `t + 1`, we do not).
/// With `end <= begin`, `p` is 1 from `begin` on.
pub fn gradual_sparsity(final_sparsity: f64, t: i64, begin: i64, end: i64) -> f32 {
    let span = (end - begin) as f32;
    let p = if span <= 0.0 {
        if t >= begin { 1.0 } else { 0.0 }
    } else {
        ((t - begin) as f32 / span).clamp(0.0, 1.0)
    };
    let target = final_sparsity as f32;
    (0.0 - target) * (1.0 - p).powi(3) + target
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
        // x = min(t, 1000) / 1000 with the absolute t, in f32.
        let expect = |t: f32| {
            f64::from(
                0.3f32 * (0.5 * (1.0 + (core::f32::consts::PI * t.min(1000.0) / 1000.0).cos())),
            )
        };
        for t in [100, 500, 1000, 1100] {
            assert_eq!(s.drop_fraction_at(t), expect(t as f32), "t = {t}");
        }
        assert_eq!(s.drop_fraction_at(0), f64::from(0.3f32));
        assert!(s.drop_fraction_at(1000).abs() < 1e-8);
    }

    /// The reference's float32 arithmetic: at the MNIST schedule's midpoint (end 50000, step
    /// 25000) cos(pi/2) is -4.371139e-8 in f32, so the drop fraction is 0.14999999, not 0.15,
    /// and a layer of 3540 active weights (MNIST fc2) drops int(530.99997) = 530, where f64
    /// gives 531.
    #[test]
    fn drop_fraction_and_counts_are_float32() {
        let s = sched(0, 50_000, 100, DropAnneal::Cosine);
        let f = s.drop_fraction_at(25_000);
        assert_eq!(f, 0.149_999_991_059_303_28);
        assert_eq!(f as f32, 0.149_999_99_f32);
        assert_eq!(crate::updater::drop_grow::n_prune(3540, f), 530);
        assert_eq!(crate::updater::drop_grow::n_prune(1000, f), 149);
        assert_eq!(crate::updater::drop_grow::n_prune(4704, f), 705);
        // f64 would have said 531 and 150.
        assert_eq!((3540.0 * 0.15f64).floor(), 531.0);
    }

    #[test]
    fn cosine_without_an_end_step_drops_nothing() {
        // The reference's cosine_decay with decay_steps = end - begin < 0: min(t, span) is the
        // span, the completed fraction 1, the decayed value 0.
        for begin in [0, 300] {
            let s = sched(begin, -1, 100, DropAnneal::Cosine);
            for t in [begin, begin + 100, 10_000] {
                assert_eq!(s.drop_fraction_at(t), 0.0, "begin {begin}, t {t}");
            }
        }
        // The constant anneal is unaffected.
        assert_eq!(
            sched(0, -1, 100, DropAnneal::Constant).drop_fraction_at(500),
            f64::from(0.3f32)
        );
    }

    #[test]
    fn exponential_subtracts_begin() {
        let s = sched(100, 1100, 100, DropAnneal::ExponentialK(2.0));
        assert_eq!(s.drop_fraction_at(100), f64::from(0.3f32));
        assert_eq!(s.drop_fraction_at(600), f64::from(0.3f32 * 0.25));
        assert_eq!(s.drop_fraction_at(1100), 0.0);
        assert_eq!(
            "exponential_3".parse::<DropAnneal>().unwrap(),
            DropAnneal::ExponentialK(3.0)
        );
        // Bare `exponential` is k = 1, as the reference reads no digits as 1.
        assert_eq!(
            "exponential".parse::<DropAnneal>().unwrap(),
            DropAnneal::ExponentialK(1.0)
        );
        let linear = sched(0, 1000, 100, "exponential".parse().unwrap());
        assert_eq!(linear.drop_fraction_at(250), f64::from(0.3f32 * 0.75));
        assert!("linear".parse::<DropAnneal>().is_err());
    }

    #[test]
    fn gradual_ramp() {
        assert_eq!(gradual_sparsity(0.9, 0, 100, 1100), 0.0);
        assert_eq!(gradual_sparsity(0.9, 100, 100, 1100), 0.0);
        // p = 0.5: (0 - 0.9) * 0.125 + 0.9 in f32.
        assert_eq!(
            gradual_sparsity(0.9, 600, 100, 1100),
            -0.9f32 * 0.125 + 0.9f32
        );
        assert_eq!(gradual_sparsity(0.9, 1100, 100, 1100), 0.9f32);
        assert_eq!(gradual_sparsity(0.9, 5000, 100, 1100), 0.9f32);
    }
}
