//! [`SparseSgd`]: SGD with momentum whose state sparse training can reset on the device.
//!
//! The update is Burn's [`Sgd`](burn::optim::Sgd), operation for operation (weight decay added
//! to the gradient, then momentum with dampening and optional Nesterov, then `w - lr * g`), so a
//! run gives the same weights bit for bit as with `SgdConfig`. What differs is where the
//! momentum lives: one flat tensor per parameter, on the parameter's device (a
//! [`SlotOptimizer`] slot), that
//! [`SparseOptimizer::reset_slots`](super::SparseOptimizer::reset_slots) zeroes at new
//! connections with one masked fill (see the [module docs](super)).
//!
//! ```no_run
//! # use burn::nn::{Linear, LinearConfig};
//! # use burn::optim::GradientsParams;
//! # use burn::optim::momentum::MomentumConfig;
//! # use burn::tensor::{Device, Tensor};
//! use rigl_core::optim::SparseSgdConfig;
//! use rigl_core::{DstConfig, Method, SparseTrainer, SparsityConfig};
//! # fn main() -> Result<(), rigl_core::SparsityError> {
//! # let device = Device::default().autodiff();
//! # let model: Linear = LinearConfig::new(8, 4).init(&device);
//! # let batches: Vec<Tensor<2>> = vec![];
//! let mut optim = SparseSgdConfig::new()
//!     .with_momentum(Some(MomentumConfig::new().with_nesterov(true).with_dampening(0.0)))
//!     .init();
//! let (mut model, mut trainer) =
//!     SparseTrainer::init(model, &SparsityConfig::erk(0.9), DstConfig::new(Method::Rigl))?;
//! for x in batches {
//!     let grads = GradientsParams::from_grads(model.forward(x).sum().backward(), &model);
//!     model = trainer.step(model, &mut optim, 0.1, grads)?.model;
//! }
//! # Ok(()) }
//! ```

use super::{SlotOptimizer, SlotRule, SlotState, WeightDecayScope};
use burn::config::Config;
use burn::module::ParamId;
use burn::optim::decay::{WeightDecay, WeightDecayConfig};
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::momentum::MomentumConfig;
use burn::tensor::Tensor;

/// SGD for sparse training: [`SlotOptimizer`] over [`SgdRule`] (see the module docs).
pub type SparseSgd = SlotOptimizer<SgdRule>;

/// Configuration of [`SparseSgd`]: the fields of Burn's `SgdConfig`.
#[derive(Config, Debug)]
pub struct SparseSgdConfig {
    /// L2 penalty added to the gradient.
    pub weight_decay: Option<WeightDecayConfig>,
    /// Momentum (with dampening and optional Nesterov).
    pub momentum: Option<MomentumConfig>,
    /// Which parameters the weight decay applies to: all (Burn's behaviour, the default) or the
    /// kernels only (the reference's L2; what `rigl train` uses).
    #[config(default = "WeightDecayScope::All")]
    pub weight_decay_scope: WeightDecayScope,
    /// Gradient clipping, applied first.
    pub gradient_clipping: Option<GradientClippingConfig>,
}

impl SparseSgdConfig {
    /// Check the settings: momentum and dampening in `[0, 1]`, weight decay finite and
    /// `>= 0`, clipping thresholds `> 0`.
    ///
    /// # Errors
    /// [`SparsityError::InvalidOptimizerSetting`](crate::SparsityError::InvalidOptimizerSetting)
    /// naming the first setting out of range.
    pub fn validate(&self) -> crate::Result<()> {
        super::hyperparameters::check_parts(
            self.weight_decay.as_ref(),
            self.momentum.as_ref(),
            self.gradient_clipping.as_ref(),
        )
    }

    /// The optimizer, with no state yet.
    ///
    /// # Panics
    /// If the settings are out of range ([`validate`](Self::validate) says which).
    pub fn init(&self) -> SparseSgd {
        if let Err(e) = self.validate() {
            panic!("{e}");
        }
        let rule = SgdRule {
            weight_decay: self.weight_decay.as_ref().map(WeightDecay::new),
            momentum: self.momentum.as_ref().map(|m| Momentum {
                // Burn keeps the factor as f32 and the dampening as f64; so does this.
                momentum: m.momentum as f32,
                dampening: m.dampening,
                nesterov: m.nesterov,
            }),
        };
        SlotOptimizer::new(rule, self.gradient_clipping.as_ref().map(|c| c.init()))
            .with_decay_scope(self.weight_decay_scope)
    }
}

impl SparseSgd {
    /// The momentum velocity of parameter `id`, flat (row-major over the weight), once it has
    /// taken a step with momentum.
    pub fn velocity(&self, id: ParamId) -> Option<Tensor<1>> {
        self.state(id).and_then(|s| s.slots.first().cloned())
    }
}

#[derive(Clone, Copy, Debug)]
struct Momentum {
    momentum: f32,
    dampening: f64,
    nesterov: bool,
}

/// Burn's `Sgd::step` with the momentum velocity as the one slot (none without momentum).
#[derive(Clone)]
pub struct SgdRule {
    weight_decay: Option<WeightDecay>,
    momentum: Option<Momentum>,
}

impl SlotRule for SgdRule {
    const NAME: &'static str = "sgd";

    fn update<const D: usize>(
        &self,
        lr: f64,
        tensor: Tensor<D>,
        mut grad: Tensor<D>,
        state: Option<SlotState>,
        decay: bool,
    ) -> (Tensor<D>, SlotState) {
        let time = state.as_ref().map_or(0, |s| s.time) + 1;
        if let Some(weight_decay) = self.weight_decay.as_ref().filter(|_| decay) {
            grad = weight_decay.transform(grad, tensor.clone());
        }
        let mut slots = Vec::new();
        if let Some(m) = self.momentum {
            let shape = grad.shape();
            let velocity = match state.and_then(|s| s.slots.into_iter().next()) {
                Some(v) => grad
                    .clone()
                    .mul_scalar(1.0 - m.dampening)
                    .add(v.reshape(shape).mul_scalar(m.momentum)),
                None => grad.clone(),
            };
            grad = if m.nesterov {
                velocity.clone().mul_scalar(m.momentum).add(grad)
            } else {
                velocity.clone()
            };
            slots.push(velocity.reshape([-1]));
        }
        (tensor - grad.mul_scalar(lr), SlotState { slots, time })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mask::{bools_to_host, floats_to_host};
    use crate::optim::SparseOptimizer;
    use crate::test_utils::{Mlp, assert_kernel_only_decay, assert_same_steps};
    use burn::optim::SgdConfig;
    use burn::tensor::{Bool, Device, TensorData};

    fn device() -> Device {
        Device::default().autodiff()
    }

    /// Bit for bit the weights of Burn's SGD with the same settings, over several steps.
    #[test]
    fn equals_burn_sgd() {
        let device = device();
        let settings = [
            (None, None),
            (Some(MomentumConfig::new()), None),
            (
                Some(
                    MomentumConfig::new()
                        .with_nesterov(true)
                        .with_dampening(0.0),
                ),
                Some(WeightDecayConfig::new(1e-3)),
            ),
            (
                Some(MomentumConfig::new().with_momentum(0.5).with_dampening(0.3)),
                Some(WeightDecayConfig::new(5e-4)),
            ),
        ];
        for (momentum, decay) in settings {
            let burn = SgdConfig::new()
                .with_momentum(momentum.clone())
                .with_weight_decay(decay.clone())
                .init();
            let mut ours = SparseSgdConfig::new()
                .with_momentum(momentum.clone())
                .with_weight_decay(decay.clone())
                .init();
            let label = format!("{momentum:?} {decay:?}");
            let b = assert_same_steps(burn, &mut ours, &label, &device);
            // The next forward still tracks the parameters.
            let g = b.grads(9, 8, &device);
            assert!(g.get::<2>(b.fc1.weight.id).is_some());
        }
    }

    #[test]
    fn kernel_scope_decays_kernels_only() {
        let device = device();
        let momentum = Some(
            MomentumConfig::new()
                .with_nesterov(true)
                .with_dampening(0.0),
        );
        let decay = Some(WeightDecayConfig::new(0.05));
        let burn = |decay: Option<WeightDecayConfig>| {
            SgdConfig::new()
                .with_momentum(momentum.clone())
                .with_weight_decay(decay)
                .init()
        };
        let mut ours = SparseSgdConfig::new()
            .with_momentum(momentum.clone())
            .with_weight_decay(decay.clone())
            .with_weight_decay_scope(WeightDecayScope::Kernels)
            .init();
        assert_kernel_only_decay(burn(decay.clone()), burn(None), &mut ours, "sgd", &device);
        // Excluding every parameter by pattern: no decay at all, like Burn's without one.
        let mut none = SparseSgdConfig::new()
            .with_momentum(momentum.clone())
            .with_weight_decay(decay)
            .init()
            .without_decay_for(vec!["fc*".into()]);
        assert_same_steps(
            burn(None),
            &mut none,
            "sgd without decay by pattern",
            &device,
        );
    }

    #[test]
    fn reset_zeroes_the_velocity_at_the_positions_only() {
        let device = device();
        let mut model = Mlp::new([6, 10, 8, 3], &device);
        let mut sgd = SparseSgdConfig::new()
            .with_momentum(Some(MomentumConfig::new()))
            .init();
        for i in 0..2 {
            let g = model.grads(i, 8, &device);
            model = SparseOptimizer::step(&mut sgd, 0.1.into(), model, g);
        }
        let id = model.fc1.weight.id;
        let before = floats_to_host(sgd.velocity(id).unwrap());
        let reset: Vec<bool> = (0..before.len()).map(|i| i % 7 == 3).collect();
        assert!(
            reset.iter().zip(&before).any(|(r, v)| *r && *v != 0.0),
            "the test needs velocity to reset"
        );
        let mask =
            Tensor::<1, Bool>::from_data(TensorData::new(reset.clone(), [reset.len()]), &device);
        assert_eq!(sgd.reset_slots(&[(id, mask.clone())]).unwrap(), 1);
        let after = floats_to_host(sgd.velocity(id).unwrap());
        for ((b, a), r) in before.iter().zip(&after).zip(&reset) {
            assert_eq!(a.to_bits(), if *r { 0 } else { b.to_bits() });
        }
        assert_eq!(bools_to_host(mask.clone()).len(), 60);
        // A mask of the wrong length is an error that names the parameter.
        let short = Tensor::<1, Bool>::from_data(TensorData::new(vec![true; 5], [5]), &device);
        let e = sgd.reset_slots(&[(id, short)]).unwrap_err().to_string();
        assert!(e.contains("5 entries"), "{e}");
        // Without momentum there is no slot to reset.
        let mut plain = SparseSgdConfig::new().init();
        let g = model.grads(3, 8, &device);
        let _ = SparseOptimizer::step(&mut plain, 0.1.into(), model, g);
        assert_eq!(plain.reset_slots(&[(id, mask)]).unwrap(), 0);
    }

    #[test]
    fn state_round_trips_and_foreign_bytes_are_errors() {
        let device = device();
        let mut model = Mlp::new([6, 10, 8, 3], &device);
        let config = SparseSgdConfig::new().with_momentum(Some(MomentumConfig::new()));
        let mut sgd = config.init();
        let g = model.grads(0, 8, &device);
        model = SparseOptimizer::step(&mut sgd, 0.1.into(), model, g);
        let restored = config
            .init()
            .with_state_bytes(sgd.state_bytes().unwrap())
            .unwrap();
        for id in [
            model.fc1.weight.id,
            model.fc2.weight.id,
            model.fc3.weight.id,
        ] {
            assert_eq!(
                floats_to_host(restored.velocity(id).unwrap()),
                floats_to_host(sgd.velocity(id).unwrap())
            );
        }
        let burn_state = SgdConfig::new().init().into_bytes().unwrap();
        let e = config.init().with_state_bytes(burn_state).unwrap_err();
        assert!(e.to_string().contains("sgd optimizer"), "{e}");
    }
}
