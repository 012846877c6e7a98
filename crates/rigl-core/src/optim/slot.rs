//! [`SlotOptimizer`]: a module optimizer whose per-parameter state sparse training can reset on
//! the device.
//!
//! A `SlotOptimizer` keeps each
//! parameter's state as flat tensors ("slots": SGD's velocity, Adam's moments) on the
//! parameter's device, so [`SparseOptimizer::reset_slots`] is one masked fill per slot. The
//! update itself is a [`SlotRule`]: [`SgdRule`](super::SgdRule),
//! [`AdamRule`](super::AdamRule) and [`AdamWRule`](super::AdamWRule) compute Burn's
//! SGD, Adam and AdamW operation for operation, so a run gives the same weights bit for bit as
//! with Burn's optimizers.

use super::{SparseOptimizer, WeightDecayScope};
use crate::error::{Result, SparsityError};
use crate::module_path::ModulePath;
use crate::param_context::ParamContext;
use burn::module::{Module, ModuleMapper, Param, ParamId};
use burn::optim::GradientsParams;
use burn::optim::grad_clipping::GradientClipping;
use burn::optim::lr_scheduler::module_lr_scheduler::ModuleLearningRate;
use burn::tensor::{Bool, Bytes, Device, Tensor, TensorData};
use std::collections::HashMap;

/// Metadata key that names the rule of a saved state.
const FORMAT_KEY: &str = "rigl.optimizer";

/// The state of one parameter: flat tensors with one entry per weight, and a step count.
#[derive(Clone, Debug)]
pub struct SlotState {
    /// The slots, flat (row-major over the weight), without autodiff.
    pub slots: Vec<Tensor<1>>,
    /// Steps taken by this parameter.
    pub time: u64,
}

/// One parameter's update: Burn's `Optimizer::step` with the state as slots.
pub trait SlotRule: Clone + Send + Sync {
    /// The name saved with the state; loading a state of another rule is an error.
    const NAME: &'static str;

    /// The new value of `tensor` after a step with `grad` at learning rate `lr`, and the
    /// parameter's new state (`state` is `None` at its first step). All tensors are on the inner
    /// backend; slots are flat and are reshaped to the parameter's shape as needed.
    ///
    /// `decay` says whether the rule's weight decay applies to this parameter (see
    /// [`WeightDecayScope`]).
    fn update<const D: usize>(
        &self,
        lr: f64,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<SlotState>,
        decay: bool,
    ) -> (Tensor<D>, SlotState);
}

/// A module optimizer over a [`SlotRule`] (see the module docs).
#[derive(Clone)]
pub struct SlotOptimizer<R: SlotRule> {
    rule: R,
    clipping: Option<GradientClipping>,
    decay_scope: WeightDecayScope,
    no_decay: Vec<String>,
    states: HashMap<ParamId, SlotState>,
}

impl<R: SlotRule> core::fmt::Debug for SlotOptimizer<R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SlotOptimizer")
            .field("rule", &R::NAME)
            .field("clipping", &self.clipping.is_some())
            .field("decay_scope", &self.decay_scope)
            .field("parameters with state", &self.states.len())
            .finish()
    }
}

impl<R: SlotRule> SlotOptimizer<R> {
    /// An optimizer with no state yet; gradients are clipped first when `clipping` is given.
    pub fn new(rule: R, clipping: Option<GradientClipping>) -> Self {
        Self {
            rule,
            clipping,
            decay_scope: WeightDecayScope::All,
            no_decay: Vec::new(),
            states: HashMap::new(),
        }
    }

    /// The same optimizer with its weight decay applied to the parameters of `scope` only.
    pub fn with_decay_scope(mut self, scope: WeightDecayScope) -> Self {
        self.decay_scope = scope;
        self
    }

    /// Which parameters the weight decay applies to.
    pub fn decay_scope(&self) -> WeightDecayScope {
        self.decay_scope
    }

    /// The same optimizer without weight decay for the parameters matching one of `patterns`
    /// (see [`crate::pattern`]), whatever the scope: the reference gives MobileNet's depthwise
    /// kernels no L2.
    pub fn without_decay_for(mut self, patterns: Vec<String>) -> Self {
        self.no_decay = patterns;
        self
    }

    /// Whether the parameter of rank `rank` at `path` is decayed.
    fn decays(&self, rank: usize, path: &str) -> bool {
        self.decay_scope.decays(rank)
            && !self
                .no_decay
                .iter()
                .any(|p| crate::pattern::matches_param(p, path))
    }

    /// The state of parameter `id`, if it has taken a step.
    pub fn state(&self, id: ParamId) -> Option<&SlotState> {
        self.states.get(&id)
    }
}

impl<R: SlotRule> SparseOptimizer for SlotOptimizer<R> {
    fn step<M: Module>(&mut self, lr: ModuleLearningRate, model: M, grads: GradientsParams) -> M {
        let mut mapper = StepMapper {
            optim: self,
            grads,
            lr,
            path: ModulePath::default(),
        };
        model.map(&mut mapper)
    }

    fn reset_slots(&mut self, resets: &[(ParamId, Tensor<1, Bool>)]) -> Result<usize> {
        let mut edited = 0;
        for (id, reset) in resets {
            let Some(state) = self.states.get_mut(id) else {
                continue;
            };
            if let Some(slot) = state.slots.iter().find(|s| s.dims() != reset.dims()) {
                return Err(SparsityError::OptimizerState(format!(
                    "the reset mask of parameter {id} has {} entries, its state {}",
                    reset.dims()[0],
                    slot.dims()[0]
                )));
            }
            // The slots are moved out, so that each fill can reuse its buffer.
            let slots = core::mem::take(&mut state.slots);
            state.slots = slots
                .into_iter()
                .map(|slot| {
                    let mask = reset.clone().without_autodiff().to_device(&slot.device());
                    slot.mask_fill(mask, 0.0)
                })
                .collect();
            edited += state.slots.len();
        }
        Ok(edited)
    }

    fn init_slots(&mut self, inits: &[(ParamId, Tensor<1, Bool>, Tensor<1>)]) -> Result<usize> {
        let mut edited = 0;
        for (id, positions, values) in inits {
            let Some(state) = self.states.get_mut(id) else {
                continue;
            };
            if let Some(slot) = state
                .slots
                .iter()
                .find(|s| s.dims() != positions.dims() || s.dims() != values.dims())
            {
                return Err(SparsityError::OptimizerState(format!(
                    "the slot values of parameter {id} have {} entries and {} positions, its \
                     state {}",
                    values.dims()[0],
                    positions.dims()[0],
                    slot.dims()[0]
                )));
            }
            let slots = core::mem::take(&mut state.slots);
            state.slots = slots
                .into_iter()
                .map(|slot| {
                    let device = slot.device();
                    let mask = positions.clone().without_autodiff().to_device(&device);
                    let values = values.clone().without_autodiff().to_device(&device);
                    slot.mask_where(mask, values)
                })
                .collect();
            edited += state.slots.len();
        }
        Ok(edited)
    }

    fn flat_state(&self) -> bool {
        true
    }

    fn state_bytes(&self) -> Result<Bytes> {
        let mut ids: Vec<&ParamId> = self.states.keys().collect();
        ids.sort_by_key(|id| id.val());
        let mut tensors = Vec::new();
        let mut writer_scalars = Vec::new();
        for id in ids {
            let state = &self.states[id];
            for (i, slot) in state.slots.iter().enumerate() {
                let (bytes, shape, dtype) = slot.clone().into_data().into_parts();
                tensors.push(burn_pack::Tensor::new(
                    format!("{}.slot{i}", id.val()),
                    dtype,
                    shape,
                    Some(id.val()),
                    bytes,
                ));
            }
            writer_scalars.push((format!("{}.time", id.val()), state.time));
        }
        let mut writer = burn_pack::Writer::new(tensors).with_metadata(FORMAT_KEY, R::NAME);
        for (key, time) in &writer_scalars {
            writer = writer.with_scalar(key, burn_pack::Scalar::UInt(*time));
        }
        writer
            .into_bytes()
            .map_err(|e| SparsityError::OptimizerState(e.to_string()))
    }

    fn with_state_bytes(mut self, bytes: Bytes) -> Result<Self> {
        let err = |e: &dyn ToString| SparsityError::OptimizerState(e.to_string());
        let reader = burn_pack::Reader::from_bytes(bytes).map_err(|e| err(&e))?;
        if reader.metadata().get(FORMAT_KEY).map(String::as_str) != Some(R::NAME) {
            return Err(err(&format!(
                "not the state of a {} optimizer (no `{FORMAT_KEY}` marker naming it)",
                R::NAME
            )));
        }
        let scalars = reader.scalars().clone();
        let device = Device::default();
        let mut slots: HashMap<u64, Vec<(usize, Tensor<1>)>> = HashMap::new();
        for t in reader.into_tensors().map_err(|e| err(&e))? {
            let (name, dtype, shape, id, bytes) = t.into_parts().map_err(|e| err(&e))?;
            let index = id.and_then(|id| {
                name.strip_prefix(&format!("{id}.slot"))
                    .and_then(|i| i.parse::<usize>().ok())
            });
            let (Some(id), Some(index)) = (id, index) else {
                return Err(err(&format!(
                    "state tensor `{name}` is not a parameter's slot"
                )));
            };
            if shape.num_dims() != 1 {
                return Err(err(&format!("state tensor `{name}` is not flat")));
            }
            let data = TensorData::from_bytes(bytes, shape, dtype);
            slots
                .entry(id)
                .or_default()
                .push((index, Tensor::<1>::from_data(data, &device)));
        }
        let mut states = HashMap::new();
        for (id, mut parts) in slots {
            parts.sort_by_key(|(i, _)| *i);
            if parts.iter().enumerate().any(|(k, (i, _))| k != *i) {
                return Err(err(&format!(
                    "the slots of parameter {id} are not numbered 0.."
                )));
            }
            let time = match scalars.get(&format!("{id}.time")) {
                Some(burn_pack::Scalar::UInt(t)) => *t,
                _ => return Err(err(&format!("parameter {id} has no step count"))),
            };
            states.insert(
                ParamId::from(id),
                SlotState {
                    slots: parts.into_iter().map(|(_, t)| t).collect(),
                    time,
                },
            );
        }
        self.states = states;
        Ok(self)
    }
}

/// Applies the rule to every parameter with a gradient, keeping each parameter's autodiff
/// state as Burn's module optimizer does.
struct StepMapper<'a, R: SlotRule> {
    optim: &'a mut SlotOptimizer<R>,
    grads: GradientsParams,
    lr: ModuleLearningRate,
    path: ModulePath,
}

impl<R: SlotRule> ModuleMapper for StepMapper<'_, R> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.enter(name);
    }

    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.exit();
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
        let grad = match &self.optim.clipping {
            Some(c) => c.clip_gradient(grad),
            None => grad,
        };
        let path = self.path.joined();
        let lr = self.lr.lr_from_param(id, Some(path.as_str()));
        let state = self.optim.states.remove(&id).map(|mut s| {
            for slot in &mut s.slots {
                if slot.device() != device {
                    *slot = slot.clone().to_device(&device);
                }
            }
            s
        });
        let decay = self.optim.decays(D, &path);
        let (updated, state) =
            self.optim
                .rule
                .update(lr, tensor.inner(), grad.inner(), state, decay);
        self.optim.states.insert(id, state);
        Param::from_mapped_value(id, context.restore(updated, id), mapper)
    }
}
