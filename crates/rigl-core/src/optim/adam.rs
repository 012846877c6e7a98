//! [`SparseAdam`]: Burn's Adam whose moments sparse training can reset on the device.
//!
//! The update is Burn's [`Adam`](burn::optim::Adam) operation for operation (L2 penalty added
//! to the gradient, bias-corrected moments, optional AMSGrad), so a run gives the same weights
//! bit for bit as with `AdamConfig`; the moments are [`SlotOptimizer`] slots, zeroed at new
//! connections on the parameters' devices.

use super::{SlotOptimizer, SlotRule, SlotState, WeightDecayScope};
use burn::config::Config;
use burn::optim::decay::{WeightDecay, WeightDecayConfig};
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::tensor::Tensor;

/// Adam for sparse training: [`SlotOptimizer`] over [`AdamRule`].
pub type SparseAdam = SlotOptimizer<AdamRule>;

/// Configuration of [`SparseAdam`]: the fields and defaults of Burn's `AdamConfig`.
#[derive(Config, Debug)]
pub struct SparseAdamConfig {
    /// Decay of the first moment.
    #[config(default = 0.9)]
    pub beta_1: f32,
    /// Decay of the second moment.
    #[config(default = 0.999)]
    pub beta_2: f32,
    /// Added to the denominator for numerical stability.
    #[config(default = 1e-5)]
    pub epsilon: f32,
    /// Whether to use the AMSGrad variant.
    #[config(default = false)]
    pub amsgrad: bool,
    /// L2 penalty added to the gradient.
    pub weight_decay: Option<WeightDecayConfig>,
    /// Which parameters the weight decay applies to: all (Burn's behaviour, the default) or the
    /// kernels only (the reference's L2; what `rigl train` uses).
    #[config(default = "WeightDecayScope::All")]
    pub weight_decay_scope: WeightDecayScope,
    /// Gradient clipping, applied first.
    pub grad_clipping: Option<GradientClippingConfig>,
}

impl SparseAdamConfig {
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
        if let Some(d) = &self.weight_decay {
            check("weight_decay", d.penalty as f64, Range::NonNegative)?;
        }
        check_parts(None, None, self.grad_clipping.as_ref())
    }

    /// The optimizer, with no state yet.
    ///
    /// # Panics
    /// If the settings are out of range ([`validate`](Self::validate) says which).
    pub fn init(&self) -> SparseAdam {
        if let Err(e) = self.validate() {
            panic!("{e}");
        }
        let rule = AdamRule {
            beta_1: self.beta_1,
            beta_2: self.beta_2,
            epsilon: self.epsilon,
            amsgrad: self.amsgrad,
            weight_decay: self.weight_decay.as_ref().map(WeightDecay::new),
        };
        SlotOptimizer::new(rule, self.grad_clipping.as_ref().map(|c| c.init()))
            .with_decay_scope(self.weight_decay_scope)
    }
}

/// Burn's `Adam::step`; slots: first moment, second moment, and with AMSGrad the running
/// maximum of the second moment.
#[derive(Clone)]
pub struct AdamRule {
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
    amsgrad: bool,
    weight_decay: Option<WeightDecay>,
}

/// The moments of one parameter in its shape.
pub(crate) struct Moments<const D: usize> {
    pub(crate) time: u64,
    pub(crate) moment_1: Tensor<D>,
    pub(crate) moment_2: Tensor<D>,
    pub(crate) max_moment_2: Option<Tensor<D>>,
}

impl<const D: usize> Moments<D> {
    /// Burn's moment update (shared by Adam and AdamW): from the state, or the first step.
    pub(crate) fn next(
        state: Option<SlotState>,
        grad: &Tensor<D>,
        beta_1: f32,
        beta_2: f32,
        amsgrad: bool,
    ) -> Self {
        let shape = grad.shape();
        match state {
            Some(s) => {
                let mut slots = s.slots.into_iter().map(|t| t.reshape(shape.clone()));
                let (m1, m2) = (slots.next(), slots.next());
                let (Some(m1), Some(m2)) = (m1, m2) else {
                    return Self::next(None, grad, beta_1, beta_2, amsgrad);
                };
                let moment_1 = m1
                    .mul_scalar(beta_1)
                    .add(grad.clone().mul_scalar(1.0 - beta_1));
                let moment_2 = m2
                    .mul_scalar(beta_2)
                    .add(grad.clone().square().mul_scalar(1.0 - beta_2));
                let max_moment_2 = amsgrad.then(|| {
                    slots
                        .next()
                        .unwrap_or_else(|| moment_2.clone())
                        .max_pair(moment_2.clone())
                });
                Self {
                    time: s.time + 1,
                    moment_1,
                    moment_2,
                    max_moment_2,
                }
            }
            None => {
                let moment_1 = grad.clone().mul_scalar(1.0 - beta_1);
                let moment_2 = grad.clone().square().mul_scalar(1.0 - beta_2);
                let max_moment_2 = amsgrad.then(|| moment_2.clone());
                Self {
                    time: 1,
                    moment_1,
                    moment_2,
                    max_moment_2,
                }
            }
        }
    }

    /// The second moment the step divides by (the maximum with AMSGrad).
    pub(crate) fn v(&self) -> &Tensor<D> {
        self.max_moment_2.as_ref().unwrap_or(&self.moment_2)
    }

    /// The state to keep: the moments, flat.
    pub(crate) fn into_state(self) -> SlotState {
        let mut slots = vec![self.moment_1.reshape([-1]), self.moment_2.reshape([-1])];
        if let Some(m) = self.max_moment_2 {
            slots.push(m.reshape([-1]));
        }
        SlotState {
            slots,
            time: self.time,
        }
    }
}

impl SlotRule for AdamRule {
    const NAME: &'static str = "adam";

    fn update<const D: usize>(
        &self,
        lr: f64,
        tensor: Tensor<D>,
        mut grad: Tensor<D>,
        state: Option<SlotState>,
        decay: bool,
    ) -> (Tensor<D>, SlotState) {
        if let Some(weight_decay) = self.weight_decay.as_ref().filter(|_| decay) {
            grad = weight_decay.transform(grad, tensor.clone());
        }
        let moments = Moments::next(state, &grad, self.beta_1, self.beta_2, self.amsgrad);
        let time = moments.time as i32;
        let bias_correction2_sqrt = (1.0 - self.beta_2.powi(time)).sqrt();
        let combined_factor = bias_correction2_sqrt / (1.0 - self.beta_1.powi(time));
        let step = moments.moment_1.clone().mul_scalar(combined_factor).div(
            moments
                .v()
                .clone()
                .sqrt()
                .add_scalar(self.epsilon * bias_correction2_sqrt),
        );
        (tensor - step.mul_scalar(lr), moments.into_state())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::SparseOptimizer;
    use crate::test_utils::{assert_same_steps, weight_bits};
    use burn::optim::AdamConfig;
    use burn::tensor::Device;

    #[test]
    fn equals_burn_adam() {
        let device = Device::default().autodiff();
        for (amsgrad, decay) in [
            (false, None),
            (true, None),
            (false, Some(WeightDecayConfig::new(1e-3))),
        ] {
            let burn = AdamConfig::new()
                .with_amsgrad(amsgrad)
                .with_weight_decay(decay.clone())
                .init();
            let mut ours = SparseAdamConfig::new()
                .with_amsgrad(amsgrad)
                .with_weight_decay(decay.clone())
                .init();
            let b = assert_same_steps(burn, &mut ours, &format!("amsgrad {amsgrad}"), &device);
            let slots = ours.state(b.fc1.weight.id).unwrap().slots.len();
            assert_eq!(slots, if amsgrad { 3 } else { 2 });
            // Saved and restored, the next steps are the same as without the round trip.
            let mut restored = SparseAdamConfig::new()
                .with_amsgrad(amsgrad)
                .with_weight_decay(decay.clone())
                .init()
                .with_state_bytes(ours.state_bytes().unwrap())
                .unwrap();
            let c = SparseOptimizer::step(
                &mut restored,
                0.01.into(),
                b.clone(),
                b.grads(7, 8, &device),
            );
            let g = b.grads(7, 8, &device);
            let b = SparseOptimizer::step(&mut ours, 0.01.into(), b, g);
            assert_eq!(
                weight_bits(&b),
                weight_bits(&c),
                "amsgrad {amsgrad}: resumed"
            );
        }
        // Another rule's state is refused.
        let sgd = crate::optim::SparseSgdConfig::new()
            .init()
            .state_bytes()
            .unwrap();
        let e = SparseAdamConfig::new()
            .init()
            .with_state_bytes(sgd)
            .unwrap_err();
        assert!(e.to_string().contains("adam optimizer"), "{e}");
    }
}
