//! [`SparseSgd`]: SGD with momentum whose state sparse training can reset on the device.
//!
//! The update is Burn's [`Sgd`](burn::optim::Sgd), operation for operation (weight decay added
//! to the gradient, then momentum with dampening and optional Nesterov, then `w - lr * g`), so a
//! run gives the same weights bit for bit as with `SgdConfig`. What differs is where the
//! momentum lives: one flat tensor per parameter, on the parameter's device, that
//! [`SparseOptimizer::reset_slots`] zeroes at new connections with one masked fill. Burn's
//! module optimizer keeps its state private, and resetting it costs a host round trip of the
//! whole state (see [`crate::optim_state`]).
//!
//! ```no_run
//! # use burn::nn::{Linear, LinearConfig};
//! # use burn::optim::GradientsParams;
//! # use burn::optim::momentum::MomentumConfig;
//! # use burn::tensor::{Device, Tensor};
//! use rigl_core::sgd::SparseSgdConfig;
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

use crate::error::{Result, SparsityError};
use crate::optim_state::SparseOptimizer;
use crate::param_context::ParamContext;
use burn::config::Config;
use burn::module::{Module, ModuleMapper, Param, ParamId};
use burn::optim::GradientsParams;
use burn::optim::decay::{WeightDecay, WeightDecayConfig};
use burn::optim::grad_clipping::{GradientClipping, GradientClippingConfig};
use burn::optim::lr_scheduler::module_lr_scheduler::ModuleLearningRate;
use burn::optim::momentum::MomentumConfig;
use burn::tensor::{Bool, Bytes, Device, Tensor, TensorData};
use std::collections::HashMap;

/// Metadata key and value that mark a [`SparseSgd`] state.
const FORMAT_KEY: &str = "rigl.optimizer";
const FORMAT: &str = "sparse-sgd-1";

/// Configuration of [`SparseSgd`]: the fields of Burn's `SgdConfig`.
#[derive(Config, Debug)]
pub struct SparseSgdConfig {
    /// L2 penalty added to the gradient.
    pub weight_decay: Option<WeightDecayConfig>,
    /// Momentum (with dampening and optional Nesterov).
    pub momentum: Option<MomentumConfig>,
    /// Gradient clipping, applied first.
    pub gradient_clipping: Option<GradientClippingConfig>,
}

impl SparseSgdConfig {
    /// The optimizer, with no state yet.
    pub fn init(&self) -> SparseSgd {
        SparseSgd {
            weight_decay: self.weight_decay.as_ref().map(WeightDecay::new),
            momentum: self.momentum.as_ref().map(|m| Momentum {
                // Burn keeps the factor as f32 and the dampening as f64; so does this.
                momentum: m.momentum as f32,
                dampening: m.dampening,
                nesterov: m.nesterov,
            }),
            clipping: self.gradient_clipping.as_ref().map(|c| c.init()),
            velocity: HashMap::new(),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Momentum {
    momentum: f32,
    dampening: f64,
    nesterov: bool,
}

/// SGD for sparse training (see the module docs).
#[derive(Clone)]
pub struct SparseSgd {
    weight_decay: Option<WeightDecay>,
    momentum: Option<Momentum>,
    clipping: Option<GradientClipping>,
    /// Per parameter, the momentum velocity, flat, without autodiff.
    velocity: HashMap<ParamId, Tensor<1>>,
}

impl core::fmt::Debug for SparseSgd {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SparseSgd")
            .field("momentum", &self.momentum)
            .field("weight_decay", &self.weight_decay.is_some())
            .field("parameters with state", &self.velocity.len())
            .finish()
    }
}

impl SparseSgd {
    /// The momentum velocity of parameter `id`, flat (row-major over the weight), if it has
    /// one yet.
    pub fn velocity(&self, id: ParamId) -> Option<Tensor<1>> {
        self.velocity.get(&id).cloned()
    }

    /// One parameter's update on the inner backend: Burn's `Sgd::step`, same operations in the
    /// same order.
    fn update<const D: usize>(
        &mut self,
        id: ParamId,
        lr: f64,
        tensor: Tensor<D>,
        mut grad: Tensor<D>,
    ) -> Tensor<D> {
        if let Some(decay) = &self.weight_decay {
            grad = decay.transform(grad, tensor.clone());
        }
        if let Some(m) = self.momentum {
            let shape = grad.shape();
            let device = grad.device();
            let velocity = match self.velocity.remove(&id) {
                Some(v) => grad
                    .clone()
                    .mul_scalar(1.0 - m.dampening)
                    .add(v.to_device(&device).reshape(shape).mul_scalar(m.momentum)),
                None => grad.clone(),
            };
            grad = if m.nesterov {
                velocity.clone().mul_scalar(m.momentum).add(grad)
            } else {
                velocity.clone()
            };
            self.velocity.insert(id, velocity.reshape([-1]));
        }
        tensor - grad.mul_scalar(lr)
    }
}

impl SparseOptimizer for SparseSgd {
    fn step<M: Module>(&mut self, lr: ModuleLearningRate, model: M, grads: GradientsParams) -> M {
        let mut mapper = StepMapper {
            sgd: self,
            grads,
            lr,
            path: Vec::new(),
        };
        model.map(&mut mapper)
    }

    fn reset_slots(&mut self, resets: &[(ParamId, Tensor<1, Bool>)]) -> Result<usize> {
        let mut edited = 0;
        for (id, reset) in resets {
            let Some(v) = self.velocity.remove(id) else {
                continue;
            };
            if v.dims() != reset.dims() {
                return Err(SparsityError::OptimizerState(format!(
                    "the reset mask of parameter {id} has {} entries, its velocity {}",
                    reset.dims()[0],
                    v.dims()[0]
                )));
            }
            let reset = reset.clone().without_autodiff().to_device(&v.device());
            self.velocity.insert(*id, v.mask_fill(reset, 0.0));
            edited += 1;
        }
        Ok(edited)
    }

    fn state_bytes(&self) -> Result<Bytes> {
        let mut ids: Vec<&ParamId> = self.velocity.keys().collect();
        ids.sort_by_key(|id| id.val());
        let tensors = ids
            .into_iter()
            .map(|id| {
                let data = self.velocity[id].clone().into_data();
                let (bytes, shape, dtype) = data.into_parts();
                burn_pack::Tensor::new(
                    format!("{}.velocity", id.val()),
                    dtype,
                    shape,
                    Some(id.val()),
                    bytes,
                )
            })
            .collect();
        burn_pack::Writer::new(tensors)
            .with_metadata(FORMAT_KEY, FORMAT)
            .into_bytes()
            .map_err(|e| SparsityError::OptimizerState(e.to_string()))
    }

    fn with_state_bytes(mut self, bytes: Bytes) -> Result<Self> {
        let err = |e: &dyn ToString| SparsityError::OptimizerState(e.to_string());
        let reader = burn_pack::Reader::from_bytes(bytes).map_err(|e| err(&e))?;
        if reader.metadata().get(FORMAT_KEY).map(String::as_str) != Some(FORMAT) {
            return Err(err(&"not the state of a SparseSgd (no format marker)"));
        }
        let device = Device::default();
        let mut velocity = HashMap::new();
        for t in reader.into_tensors().map_err(|e| err(&e))? {
            let (name, dtype, shape, id, bytes) = t.into_parts().map_err(|e| err(&e))?;
            let id = id.ok_or_else(|| err(&format!("state tensor `{name}` has no parameter")))?;
            if shape.num_dims() != 1 {
                return Err(err(&format!("state tensor `{name}` is not flat")));
            }
            let data = TensorData::from_bytes(bytes, shape, dtype);
            velocity.insert(ParamId::from(id), Tensor::<1>::from_data(data, &device));
        }
        self.velocity = velocity;
        Ok(self)
    }
}

/// Applies [`SparseSgd::update`] to every parameter with a gradient, keeping each parameter's
/// autodiff state as Burn's module optimizer does.
struct StepMapper<'a> {
    sgd: &'a mut SparseSgd,
    grads: GradientsParams,
    lr: ModuleLearningRate,
    path: Vec<String>,
}

impl ModuleMapper for StepMapper<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        let Some(grad) = self.grads.remove::<D>(id) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let context = ParamContext::capture(&tensor);
        let device = grad.device();
        let tensor = if tensor.device() != device {
            tensor.to_device(&device)
        } else {
            tensor
        };
        let grad = match &self.sgd.clipping {
            Some(c) => c.clip_gradient(grad),
            None => grad,
        };
        let path = self.path.join(".");
        let lr = self.lr.lr_from_param(id, Some(path.as_str()));
        let updated = self.sgd.update(id, lr, tensor.inner(), grad.inner());
        Param::from_mapped_value(id, context.restore(updated, id), mapper)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mask::{bools_to_host, floats_to_host};
    use crate::test_utils::Mlp;
    use burn::optim::SgdConfig;

    fn device() -> Device {
        Device::default().autodiff()
    }

    fn weights(model: &Mlp) -> Vec<Vec<u32>> {
        [&model.fc1.weight, &model.fc2.weight, &model.fc3.weight]
            .into_iter()
            .map(|w| {
                floats_to_host(w.val().inner().reshape([-1]))
                    .into_iter()
                    .map(f32::to_bits)
                    .collect()
            })
            .chain([&model.fc1.bias, &model.fc3.bias].into_iter().map(|b| {
                floats_to_host(b.as_ref().unwrap().val().inner())
                    .into_iter()
                    .map(f32::to_bits)
                    .collect()
            }))
            .collect()
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
            let start = Mlp::new([6, 10, 8, 3], &device);
            let mut burn = SgdConfig::new()
                .with_momentum(momentum.clone())
                .with_weight_decay(decay.clone())
                .init();
            let mut ours = SparseSgdConfig::new()
                .with_momentum(momentum.clone())
                .with_weight_decay(decay.clone())
                .init();
            let (mut a, mut b) = (start.clone(), start);
            for i in 0..6 {
                let lr = 0.05 + 0.01 * i as f64;
                let ga = a.grads(i, 8, &device);
                a = burn.step(lr, a, ga);
                let gb = b.grads(i, 8, &device);
                b = SparseOptimizer::step(&mut ours, lr.into(), b, gb);
                assert_eq!(weights(&a), weights(&b), "{momentum:?} {decay:?}: step {i}");
            }
            // The next forward still tracks the parameters.
            let g = b.grads(9, 8, &device);
            assert!(g.get::<2>(b.fc1.weight.id).is_some());
        }
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
        assert!(before.iter().all(|v| *v != 0.0));
        let reset: Vec<bool> = (0..before.len()).map(|i| i % 7 == 3).collect();
        let mask =
            Tensor::<1, Bool>::from_data(TensorData::new(reset.clone(), [reset.len()]), &device);
        assert_eq!(sgd.reset_slots(&[(id, mask.clone())]).unwrap(), 1);
        let after = floats_to_host(sgd.velocity(id).unwrap());
        for ((b, a), r) in before.iter().zip(&after).zip(&reset) {
            assert_eq!(*a, if *r { 0.0 } else { *b });
        }
        assert_eq!(bools_to_host(mask).len(), 60);
        // A mask of the wrong length is an error that names the parameter.
        let short = Tensor::<1, Bool>::from_data(TensorData::new(vec![true; 5], [5]), &device);
        let e = sgd.reset_slots(&[(id, short)]).unwrap_err().to_string();
        assert!(e.contains("5 entries"), "{e}");
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
        assert!(e.to_string().contains("SparseSgd"), "{e}");
    }
}
