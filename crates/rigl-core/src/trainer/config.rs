//! [`DstConfig`]: the settings of a dynamic sparse training run, named after the reference's
//! flags.

use super::GrowInit;
use crate::Method;
use crate::error::{Result, SparsityError};
use crate::schedule::{DropAnneal, UpdateSchedule};
use crate::updater::PruningScope;
use burn::config::Config;

/// Configuration of dynamic sparse training, named after the reference's flags.
#[derive(Config, Debug, PartialEq)]
pub struct DstConfig {
    /// The method.
    pub method: Method,
    /// First step at which masks may change (`begin_step`).
    #[config(default = 0)]
    pub begin_step: i64,
    /// Last step (inclusive) at which masks may change (`end_step`); negative: never stops.
    #[config(default = "-1")]
    pub end_step: i64,
    /// Steps between mask updates (`frequency`, delta T).
    #[config(default = 100)]
    pub frequency: i64,
    /// Fraction of active connections dropped (and regrown) per update (`drop_fraction`).
    #[config(default = 0.3)]
    pub drop_fraction: f64,
    /// Anneal of the drop fraction (`drop_fraction_anneal`).
    #[config(default = "DropAnneal::Cosine")]
    pub drop_anneal: DropAnneal,
    /// Weight of new connections (`grow_init`).
    #[config(default = "GrowInit::Zeros")]
    pub grow_init: GrowInit,
    /// Scales the run length: begin and end steps are multiplied by it
    /// (`training_steps_multiplier`; scale learning-rate boundaries with the same factor).
    #[config(default = 1.0)]
    pub training_steps_multiplier: f64,
    /// Take the optimizer step on RigL's (and SNIP's) update iterations too, instead of the
    /// reference behaviour of skipping it.
    #[config(default = false)]
    pub train_on_update_steps: bool,
    /// Allow a connection dropped in an update to be regrown in the same update (the
    /// reference does; some implementations forbid it).
    #[config(default = true)]
    pub allow_regrow: bool,
    /// Decay of SNFS's gradient moving average.
    #[config(default = 0.9)]
    pub snfs_decay: f64,
    /// RigL's `rigl_acc_scale`: every optimizer slot of a new connection starts at
    /// `rigl_acc_scale * dL/d(w*m)` instead of 0 (the reference suggests values between 0 and
    /// `1 / (1 - momentum)`). RigL only.
    #[config(default = 0.0)]
    pub rigl_acc_scale: f64,
    /// Gradual pruning's threshold smoothing (model_pruning's `threshold_decay`, in `[0, 1)`).
    #[config(default = 0.0)]
    pub threshold_decay: f64,
    /// The L2 coefficient on the kernels of the loss being trained (the optimizer's weight
    /// decay). Only SNIP reads it: its score `|g * w|` takes the gradient of the reference's
    /// total loss, cross-entropy plus L2, so `g = dL/dw + lambda * w`. 0: no L2 term.
    #[config(default = 0.0)]
    pub weight_decay: f64,
    /// Which layers SNIP and gradual pruning rank together: each layer on its own (the
    /// reference), or one global ranking (jaxpruner's global pruners; see
    /// [`PruningScope`]).
    #[config(default = "PruningScope::Layer")]
    pub pruning_scope: PruningScope,
}

impl DstConfig {
    /// Check the settings.
    ///
    /// # Errors
    /// [`SparsityError::InvalidSetting`] for a frequency below 1, a drop fraction outside
    /// `[0, 1]`, an end step before the begin step, a non-positive multiplier, an SNFS decay
    /// outside `[0, 1)`, a grow-init divisor that is not positive, a gradient grow init or
    /// `rigl_acc_scale` for another method than RigL, a threshold decay outside `[0, 1)`, a
    /// negative weight decay, an exponential anneal without an end step, or a global pruning
    /// scope for a method other than SNIP, pruning and STE (or with threshold smoothing).
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(SparsityError::InvalidSetting(m));
        if self.frequency < 1 {
            return bad(format!(
                "frequency {} must be at least 1 step",
                self.frequency
            ));
        }
        if !(0.0..=1.0).contains(&self.drop_fraction) {
            return bad(format!(
                "drop fraction {} is outside [0, 1]",
                self.drop_fraction
            ));
        }
        if self.begin_step < 0 {
            return bad(format!("begin step {} is negative", self.begin_step));
        }
        if self.end_step >= 0 && self.end_step < self.begin_step {
            return bad(format!(
                "end step {} is before begin step {}",
                self.end_step, self.begin_step
            ));
        }
        if !(self.training_steps_multiplier.is_finite() && self.training_steps_multiplier > 0.0) {
            return bad(format!(
                "training-steps multiplier {} must be a positive number",
                self.training_steps_multiplier
            ));
        }
        if !(0.0..1.0).contains(&self.snfs_decay) {
            return bad(format!("SNFS decay {} is outside [0, 1)", self.snfs_decay));
        }
        if let DropAnneal::ExponentialK(k) = self.drop_anneal
            && !(k.is_finite() && k >= 0.0)
        {
            return bad(format!("exponential anneal power {k} must be >= 0"));
        }
        let divisor = self.grow_init.divisor();
        if !(divisor.is_finite() && divisor > 0.0) {
            return bad(format!(
                "grow-init divisor {divisor} of `{}` must be a positive number",
                self.grow_init
            ));
        }
        if self.grow_init.uses_gradient() && self.method != Method::Rigl {
            return bad(format!(
                "grow init `{}` takes RigL's dense gradient: method {} has none at its updates",
                self.grow_init, self.method
            ));
        }
        if self.rigl_acc_scale != 0.0
            && !(self.method == Method::Rigl && self.rigl_acc_scale.is_finite())
        {
            return bad(format!(
                "rigl_acc_scale {} needs method rigl and a finite value",
                self.rigl_acc_scale
            ));
        }
        if !(0.0..1.0).contains(&self.threshold_decay) {
            return bad(format!(
                "threshold decay {} is outside [0, 1)",
                self.threshold_decay
            ));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(format!("weight decay {} must be >= 0", self.weight_decay));
        }
        if matches!(self.drop_anneal, DropAnneal::ExponentialK(_)) && self.end_step < 0 {
            return bad(
                "the exponential drop-fraction anneal needs an end step: the reference divides \
                 by end - begin, and without an end the fraction grows past 1"
                    .into(),
            );
        }
        if self.pruning_scope.is_global() {
            if !matches!(self.method, Method::Snip | Method::Prune | Method::Ste) {
                return bad(format!(
                    "pruning scope {} ranks the layers of snip, prune or ste together: method {} keeps per-layer counts",
                    self.pruning_scope, self.method
                ));
            }
            if self.threshold_decay != 0.0 {
                return bad(format!(
                    "threshold decay {} smooths per-layer thresholds: global pruning keeps its top k exactly",
                    self.threshold_decay
                ));
            }
        }
        if self.method == Method::Prune && self.end_step < 0 {
            return bad("gradual pruning needs an end step".into());
        }
        Ok(())
    }

    /// The schedule in force: begin and end steps scaled by the multiplier and truncated, as
    /// the reference's `int(step * training_steps_multiplier)` (the frequency is not scaled).
    pub fn schedule(&self) -> UpdateSchedule {
        let m = self.training_steps_multiplier;
        let scale = |s: i64| (s as f64 * m) as i64;
        UpdateSchedule {
            begin_step: scale(self.begin_step),
            end_step: if self.end_step < 0 {
                self.end_step
            } else {
                scale(self.end_step)
            },
            frequency: self.frequency,
            drop_fraction: self.drop_fraction,
            anneal: self.drop_anneal,
        }
    }
}
