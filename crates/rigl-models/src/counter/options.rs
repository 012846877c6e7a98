//! What to count: spatial sizes, the training method and its schedule.

use crate::error::{ModelError, Result};
use rigl_core::{Method, Structure};
use serde::{Deserialize, Serialize};

/// Which spatial sizes the FLOP count uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpatialRule {
    /// The reference's convention: 'same' padding on the input as the reference network
    /// feeds it, zero padding it adds explicitly included. ResNet-50's 7x7 stem is then
    /// counted on a 230x230 input (115x115 outputs) and MobileNet's strided 3x3 convolutions on
    /// inputs one pixel larger. The published tables use this rule.
    #[default]
    Reference,
    /// The output size the Burn module really produces (112x112 for ResNet-50's stem).
    Actual,
}

impl core::str::FromStr for SpatialRule {
    type Err = String;

    fn from_str(s: &str) -> core::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "reference" => Ok(Self::Reference),
            "actual" => Ok(Self::Actual),
            other => Err(format!(
                "unknown spatial rule `{other}`: expected reference or actual"
            )),
        }
    }
}

/// The gradual-pruning schedule, in steps of the base (multiplier 1) run: dense until
/// `begin_step`, then every `delta_t` steps (and at `end_step`) pruned to
/// `s_t = s * (1 - (1 - p)^3)` with `p = (t - begin) / (end - begin)` (the reference's
/// polynomial schedule, not jaxpruner's `t + 1`), at the final sparsity after `end_step`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruningSchedule {
    /// Length of the run.
    pub total_steps: u64,
    /// First pruning step.
    pub begin_step: u64,
    /// Last pruning step (the final sparsity is reached here).
    pub end_step: u64,
}

impl Default for PruningSchedule {
    /// The schedule of the reference's ResNet-50 counting notebook: 32k steps, pruning from
    /// 10k to 25k.
    fn default() -> Self {
        Self {
            total_steps: 32_000,
            begin_step: 10_000,
            end_step: 25_000,
        }
    }
}

/// Options of the training-FLOPs estimate.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainingOptions {
    /// The training method (`static_rezero` and `scratch` cost the same).
    pub method: Method,
    /// Steps between mask updates (RigL) or pruning steps (gradual pruning).
    pub delta_t: u64,
    /// Training-length multiplier (the reference's `training_steps_multiplier`).
    pub multiplier: f64,
    /// The gradual-pruning schedule (used by [`Method::Prune`] only).
    pub pruning: PruningSchedule,
}

impl Default for TrainingOptions {
    fn default() -> Self {
        Self {
            method: Method::Rigl,
            delta_t: 100,
            multiplier: 1.0,
            pruning: PruningSchedule::default(),
        }
    }
}

impl TrainingOptions {
    /// Check the values.
    ///
    /// # Errors
    /// [`ModelError::InvalidCountOption`] for a zero `delta_t`, a multiplier that is not a
    /// positive number, or a pruning schedule with `begin >= end` or no steps.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(ModelError::InvalidCountOption(m));
        if self.delta_t == 0 {
            return bad("delta T must be at least 1 step".into());
        }
        if !(self.multiplier.is_finite() && self.multiplier > 0.0) {
            return bad(format!(
                "the training-length multiplier {} is not a positive number",
                self.multiplier
            ));
        }
        if self.method == Method::Prune {
            let p = self.pruning;
            if p.total_steps == 0 || p.begin_step >= p.end_step {
                return bad(format!(
                    "pruning schedule needs total_steps > 0 and begin_step < end_step (got total {}, begin {}, end {})",
                    p.total_steps, p.begin_step, p.end_step
                ));
            }
        }
        Ok(())
    }
}

/// Options of a count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CountOptions {
    /// Spatial sizes used for conv FLOPs.
    pub spatial: SpatialRule,
    /// The training-FLOPs estimate.
    pub training: TrainingOptions,
    /// The structure of the masks, for their storage ([`super::mask_bits`]); [`super::count`]
    /// takes its sparsity configuration's.
    #[serde(default)]
    pub structure: Structure,
}
