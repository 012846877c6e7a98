//! Range checks of optimizer hyperparameters, shared by the `Sparse*` configs and the trainer's
//! learning rate.

use crate::error::{Result, SparsityError};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::momentum::MomentumConfig;

/// Which values a hyperparameter may take.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Range {
    /// Finite and `>= 0`.
    NonNegative,
    /// Finite and `> 0`.
    Positive,
    /// In `[0, 1)`.
    UnitOpen,
    /// In `[0, 1]`.
    Unit,
}

impl Range {
    fn holds(self, v: f64) -> bool {
        match self {
            Range::NonNegative => v.is_finite() && v >= 0.0,
            Range::Positive => v.is_finite() && v > 0.0,
            Range::UnitOpen => (0.0..1.0).contains(&v),
            Range::Unit => (0.0..=1.0).contains(&v),
        }
    }

    fn words(self) -> &'static str {
        match self {
            Range::NonNegative => "finite and >= 0",
            Range::Positive => "finite and > 0",
            Range::UnitOpen => "in [0, 1)",
            Range::Unit => "in [0, 1]",
        }
    }
}

/// `value` of setting `name` lies in `range`.
///
/// # Errors
/// [`SparsityError::InvalidOptimizerSetting`] naming the setting otherwise.
pub(crate) fn check(name: &'static str, value: f64, range: Range) -> Result<()> {
    if range.holds(value) {
        Ok(())
    } else {
        Err(SparsityError::InvalidOptimizerSetting {
            name,
            value,
            expected: range.words(),
        })
    }
}

/// The shared optional parts: L2 penalty, momentum and clipping threshold.
pub(crate) fn check_parts(
    weight_decay: Option<&WeightDecayConfig>,
    momentum: Option<&MomentumConfig>,
    clipping: Option<&GradientClippingConfig>,
) -> Result<()> {
    if let Some(d) = weight_decay {
        check("weight_decay", d.penalty as f64, Range::NonNegative)?;
    }
    if let Some(m) = momentum {
        check("momentum", m.momentum, Range::Unit)?;
        check("dampening", m.dampening, Range::Unit)?;
    }
    match clipping {
        Some(GradientClippingConfig::Value(v)) => check("clip_value", *v as f64, Range::Positive),
        Some(GradientClippingConfig::Norm(v)) => check("clip_norm", *v as f64, Range::Positive),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_accept_their_bounds_and_refuse_the_rest() {
        for (range, good, bad) in [
            (
                Range::NonNegative,
                [0.0, 3.0],
                [-1e-9, f64::NAN, f64::INFINITY],
            ),
            (Range::Positive, [1e-12, 5.0], [0.0, -1.0, f64::INFINITY]),
            (Range::UnitOpen, [0.0, 0.999], [1.0, -0.1, f64::NAN]),
            (Range::Unit, [0.0, 1.0], [1.01, -0.1, f64::NAN]),
        ] {
            for v in good {
                assert!(check("x", v, range).is_ok(), "{range:?} {v}");
            }
            for v in bad {
                let e = check("x", v, range).unwrap_err().to_string();
                assert!(e.contains(range.words()) && e.contains("`x`"), "{e}");
            }
        }
    }

    #[test]
    fn sparse_optimizer_configs_name_the_setting_out_of_range() {
        use crate::optim::{SparseAdamConfig, SparseAdamWConfig, SparseSgdConfig};
        let err = |r: crate::Result<()>| r.unwrap_err().to_string();
        assert!(SparseSgdConfig::new().validate().is_ok());
        assert!(SparseAdamConfig::new().validate().is_ok());
        assert!(SparseAdamWConfig::new().validate().is_ok());
        let sgd = |m: MomentumConfig| SparseSgdConfig::new().with_momentum(Some(m)).validate();
        assert!(err(sgd(MomentumConfig::new().with_momentum(1.5))).contains("`momentum` = 1.5"));
        assert!(err(sgd(MomentumConfig::new().with_dampening(-0.5))).contains("`dampening`"));
        let decayed = SparseSgdConfig::new()
            .with_weight_decay(Some(WeightDecayConfig::new(f32::NAN)))
            .validate();
        assert!(err(decayed).contains("`weight_decay` = NaN must be finite and >= 0"));
        let clipped = SparseSgdConfig::new()
            .with_gradient_clipping(Some(GradientClippingConfig::Norm(0.0)))
            .validate();
        assert!(err(clipped).contains("`clip_norm` = 0"));
        let adam = SparseAdamConfig::new();
        assert!(err(adam.clone().with_epsilon(0.0).validate()).contains("`epsilon` = 0 must be"));
        assert!(err(adam.clone().with_beta_1(1.0).validate()).contains("`beta_1` = 1"));
        assert!(err(adam.with_beta_2(-0.1).validate()).contains("`beta_2`"));
        let adamw = SparseAdamWConfig::new();
        assert!(err(adamw.clone().with_weight_decay(-1.0).validate()).contains("`weight_decay`"));
        assert!(err(adamw.with_epsilon(f32::INFINITY).validate()).contains("`epsilon` = inf"));
    }

    #[test]
    #[should_panic(expected = "`epsilon` = -1 must be finite and > 0")]
    fn init_refuses_what_validate_refuses() {
        let _ = crate::optim::SparseAdamConfig::new()
            .with_epsilon(-1.0)
            .init();
    }
}
