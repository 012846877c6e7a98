//! [`SparseAdamW`]: Burn's AdamW whose moments sparse training can reset on the device.
//!
//! The update is Burn's [`AdamW`](burn::optim::AdamW) operation for operation (bias-corrected
//! moments, optional AMSGrad, decoupled weight decay, optionally cautious), so a run gives the
//! same weights bit for bit as with `AdamWConfig`; the moments are [`SlotOptimizer`] slots,
//! zeroed at new connections on the parameters' devices.

use super::adam::Moments;
use super::{SlotOptimizer, SlotRule, SlotState, WeightDecayScope};
use burn::config::Config;
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::tensor::Tensor;

/// AdamW for sparse training: [`SlotOptimizer`] over [`AdamWRule`].
pub type SparseAdamW = SlotOptimizer<AdamWRule>;

/// Configuration of [`SparseAdamW`]: the fields and defaults of Burn's `AdamWConfig`.
#[derive(Config, Debug)]
pub struct SparseAdamWConfig {
    /// Decay of the first moment.
    #[config(default = 0.9)]
    pub beta_1: f32,
    /// Decay of the second moment.
    #[config(default = 0.999)]
    pub beta_2: f32,
    /// Added to the denominator for numerical stability.
    #[config(default = 1e-5)]
    pub epsilon: f32,
    /// Decoupled weight decay.
    #[config(default = 1e-4)]
    pub weight_decay: f32,
    /// Decay only where it does not oppose the update (cautious weight decay).
    #[config(default = false)]
    pub cautious_weight_decay: bool,
    /// Whether to use the AMSGrad variant.
    #[config(default = false)]
    pub amsgrad: bool,
    /// Which parameters the weight decay applies to: all (Burn's behaviour, the default) or the
    /// kernels only (the reference's L2; what `rigl train` uses).
    #[config(default = "WeightDecayScope::All")]
    pub weight_decay_scope: WeightDecayScope,
    /// Gradient clipping, applied first.
    pub grad_clipping: Option<GradientClippingConfig>,
}

impl SparseAdamWConfig {
    /// Check the settings: `beta_1` and `beta_2` in `[0, 1)`, `epsilon` finite and `> 0`,
    /// weight decay finite and `>= 0`, clipping thresholds `> 0`.
    ///
    /// # Errors
    /// [`SparsityError::InvalidOptimizerSetting`](crate::SparsityError::InvalidOptimizerSetting)
    /// naming the first setting out of range.
    pub fn validate(&self) -> crate::Result<()> {
        use super::hyperparameters::{Range, check, check_parts};
        check("beta_1", self.beta_1 as f64, Range::UnitOpen)?;
        check("beta_2", self.beta_2 as f64, Range::UnitOpen)?;
        check("epsilon", self.epsilon as f64, Range::Positive)?;
        check("weight_decay", self.weight_decay as f64, Range::NonNegative)?;
        check_parts(None, None, self.grad_clipping.as_ref())
    }

    /// The optimizer, with no state yet.
    ///
    /// # Panics
    /// If the settings are out of range ([`validate`](Self::validate) says which).
    pub fn init(&self) -> SparseAdamW {
        if let Err(e) = self.validate() {
            panic!("{e}");
        }
        let rule = AdamWRule {
            beta_1: self.beta_1,
            beta_2: self.beta_2,
            epsilon: self.epsilon,
            weight_decay: self.weight_decay,
            cautious_weight_decay: self.cautious_weight_decay,
            amsgrad: self.amsgrad,
        };
        SlotOptimizer::new(rule, self.grad_clipping.as_ref().map(|c| c.init()))
            .with_decay_scope(self.weight_decay_scope)
    }
}

/// Burn's `AdamW::step`; slots as [`AdamRule`](super::AdamRule)'s.
#[derive(Clone)]
pub struct AdamWRule {
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
    weight_decay: f32,
    cautious_weight_decay: bool,
    amsgrad: bool,
}

impl SlotRule for AdamWRule {
    const NAME: &'static str = "adamw";

    fn update<const D: usize>(
        &self,
        lr: f64,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<SlotState>,
        decay: bool,
    ) -> (Tensor<D>, SlotState) {
        let moments = Moments::next(state, &grad, self.beta_1, self.beta_2, self.amsgrad);
        let time = moments.time as i32;
        let moment_1_corrected = moments
            .moment_1
            .clone()
            .div_scalar(1f32 - self.beta_1.powi(time));
        let moment_2_corrected = moments
            .v()
            .clone()
            .div_scalar(1f32 - self.beta_2.powi(time));
        let raw_delta = moment_1_corrected.div(moment_2_corrected.sqrt().add_scalar(self.epsilon));

        let decay_rate = if decay {
            lr * (self.weight_decay as f64)
        } else {
            0.0
        };
        let decayed = if decay_rate == 0.0 {
            tensor.clone()
        } else if self.cautious_weight_decay {
            let tensor_pos = tensor.clone().greater_equal_scalar(0.0);
            let grad_pos = moments.moment_1.clone().greater_equal_scalar(0.0);
            let differ = tensor_pos.not_equal(grad_pos);
            tensor.clone() - tensor.mul_scalar(decay_rate).mask_fill(differ, 0.0)
        } else {
            tensor.clone().mul_scalar(1.0 - decay_rate)
        };
        (decayed - raw_delta.mul_scalar(lr), moments.into_state())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_utils::{assert_kernel_only_decay, assert_same_steps};
    use burn::optim::AdamWConfig;
    use burn::tensor::Device;

    #[test]
    fn equals_burn_adamw() {
        let device = Device::default().autodiff();
        for (amsgrad, cautious, decay) in [
            (false, false, 1e-4),
            (true, false, 1e-2),
            (false, true, 1e-2),
            (false, false, 0.0),
        ] {
            let burn = AdamWConfig::new()
                .with_amsgrad(amsgrad)
                .with_cautious_weight_decay(cautious)
                .with_weight_decay(decay)
                .init();
            let mut ours = SparseAdamWConfig::new()
                .with_amsgrad(amsgrad)
                .with_cautious_weight_decay(cautious)
                .with_weight_decay(decay)
                .init();
            let label = format!("amsgrad {amsgrad}, cautious {cautious}, decay {decay}");
            assert_same_steps(burn, &mut ours, &label, &device);
        }
    }

    #[test]
    fn kernel_scope_decays_kernels_only() {
        let device = Device::default().autodiff();
        let burn = |decay: f32| AdamWConfig::new().with_weight_decay(decay).init();
        let mut ours = SparseAdamWConfig::new()
            .with_weight_decay(0.5)
            .with_weight_decay_scope(WeightDecayScope::Kernels)
            .init();
        assert_kernel_only_decay(burn(0.5), burn(0.0), &mut ours, "adamw", &device);
    }
}
