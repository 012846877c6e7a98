//! [`SparseTrainer`]: dynamic sparse training in a hand-written Burn training loop.
//!
//! ```no_run
//! # use burn::module::Module;
//! # use burn::nn::{Linear, LinearConfig};
//! # use burn::optim::{GradientsParams, SgdConfig};
//! # use burn::tensor::{Device, Tensor};
//! use rigl_core::{DstConfig, Method, SparseTrainer, SparsityConfig};
//! # fn main() -> Result<(), rigl_core::SparsityError> {
//! # let device = Device::default().autodiff();
//! # let model: Linear = LinearConfig::new(8, 4).init(&device);
//! # let batches: Vec<Tensor<2>> = vec![];
//! let sparsity = SparsityConfig::erk(0.9);
//! let dst = DstConfig::new(Method::Rigl).with_end_step(7500);
//! let (mut model, mut trainer) = SparseTrainer::init(model, &sparsity, dst)?;
//! let mut optim = SgdConfig::new().init();
//! for x in batches {
//!     let loss = model.forward(x).powi_scalar(2).mean();
//!     let grads = GradientsParams::from_grads(loss.backward(), &model);
//!     // Trains (or, on RigL's update steps, updates the mask) and returns the model in the
//!     // gradient mode the next step needs.
//!     model = trainer.step(model, &mut optim, 0.1, grads)?.model;
//! }
//! # Ok(()) }
//! ```
//!
//! # Semantics (the reference's, google-research/rigl)
//! - Update steps follow [`UpdateSchedule`](crate::UpdateSchedule); the drop fraction follows the chosen
//!   [`DropAnneal`](crate::DropAnneal) (cosine uses the absolute step, as the reference does).
//! - RigL (and SNIP) skip the optimizer step on an update iteration: that batch only updates
//!   the mask and the step counter does not advance, so the same step number is seen again and
//!   then trains normally. [`DstConfig::train_on_update_steps`] trains first instead.
//! - SET, SNFS, `static_rezero` and gradual pruning take the optimizer step first, then update
//!   the mask in the same iteration; as in TF, where the optimizer increments the global step
//!   first, that update sees the step counter after the increment, `t + 1`
//!   ([`MaskUpdater::schedule_step`]): with `begin_step = b > 0` the first update follows batch
//!   `b - 1`, and with `end_step % frequency == 0` there is none at `t = end_step`. Gradual
//!   pruning's `last_update` starts at 0 (model_pruning's), the others' at `-frequency`.
//! - `n_prune = int32(f32(n_ones) * f32(drop_fraction))`, the drop-fraction anneals in `f32`,
//!   as the reference computes them; kept connections are excluded from growth; a
//!   connection dropped and regrown in the same update keeps its weight and optimizer state;
//!   new connections start at weight 0 ([`GrowInit::Zeros`]) with every optimizer slot zero.
//! - The optimizer always sees masked gradients (zero at inactive positions), also on steps
//!   where the model runs in [`GradientMode::Dense`] to expose the dense gradient.
//! - `step` takes any [`SparseOptimizer`]: Burn's `ModuleOptimizer` (any Burn optimizer, state
//!   reset through a host round trip of its record) or a [`SlotOptimizer`](crate::optim::SlotOptimizer)
//!   ([`SparseSgd`](crate::optim::SparseSgd), [`SparseAdam`](crate::optim::SparseAdam),
//!   [`SparseAdamW`](crate::optim::SparseAdamW): Burn's update rules, state reset on the device).
//!
//! # Differences from the reference
//! - Ties: the reference adds `N(0, 1e-5)` noise to the drop scores `|m * w|` of the whole layer
//!   and breaks remaining ties by the lower index of TF's layout (HWIO conv kernels); here drops
//!   are chosen among the active connections without noise and ties go to the lower index of
//!   Burn's layout (OIHW), so among equal scores another position of a conv layer may grow.
//! - Random values come from the counter-based generator keyed by `(seed, layer, step)`, not
//!   from TF's stateless ops seeded by Python's per-process string hash.
//! - [`GrowInit::InitialDist`] shuffles the layer's actual initial weights (the reference's
//!   `initial_value` re-samples a random initializer).
//! - Gradual pruning sees the post-increment step (the reference's read of the global step is
//!   not ordered with the increment), ramps each layer to its own planned sparsity in `f32`
//!   (the reference scales the global ramp by `s_i / s` for mapped layers) and keeps nothing at
//!   `k = 0` (where the reference fails).
//! - Cosine with `end == begin` keeps the initial drop fraction (the reference computes 0 / 0);
//!   the exponential anneal without an end step is refused (the reference's grows past 1).
//! - `rigl_acc_scale` sets nothing for parameters whose optimizer has no state yet (an update
//!   before the first optimizer step).
//!
//! # Determinism and data parallelism
//! Every mask decision is a pure function of the weights, of the gradients Burn has already
//! reduced across devices (`GradientsParams` after a multi-device backward, or
//! `ModuleOptimizer::step_multi`'s inputs), and of the counter-based generator keyed by
//! `(seed, parameter path, step)`. There is no other random state, so replicas that apply the
//! same reduced gradients make the same decisions, and a resumed run makes the decisions an
//! uninterrupted run would have made. A test runs two replicas (one restored from the other's
//! checkpoint) that each take the gradient of their own shard, sum them with Burn's
//! `GradientsAccumulator` and step: masks and weights stay bit-identical through every update.
//! Burn's CPU backend has one device, so that test shares it; across GPUs the same holds as long
//! as the devices compute the same reduced gradient and the same elementwise optimizer step.

mod config;
mod grow_init;
mod state;
mod stats;
#[cfg(test)]
mod tests;
mod update;

pub use config::DstConfig;
pub use grow_init::GrowInit;
pub(crate) use state::TrainerSnapshot;
pub use state::TrainerState;
pub use stats::{LayerUpdateStats, StepOutcome, UpdateStats};

use crate::Method;
use crate::config::{MaskInit, SparsityConfig};
use crate::error::{Result, SparsityError};
use crate::layers::KernelParam;
use crate::mask::GradientMode;
use crate::module_path::ModulePath;
use crate::optim::SparseOptimizer;
use crate::plan::SparsityPlan;
use crate::sparsify::{Sparsify, flat_weights};
use crate::updater::MaskUpdater;
use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::optim::lr_scheduler::module_lr_scheduler::ModuleLearningRate;
use burn::tensor::{Bool, Int, Tensor};
use std::collections::HashMap;

/// Drives dynamic sparse training from a hand-written loop (see the module docs).
pub struct SparseTrainer {
    config: DstConfig,
    sparsity: SparsityConfig,
    plan: Option<SparsityPlan>,
    updater: Option<Box<dyn MaskUpdater>>,
    state: TrainerState,
    initial_weights: HashMap<String, Tensor<1>>,
}

impl Clone for SparseTrainer {
    fn clone(&self) -> Self {
        Self {
            config: self.config.clone(),
            sparsity: self.sparsity.clone(),
            plan: self.plan.clone(),
            updater: self.updater.as_ref().map(|u| u.box_clone()),
            state: self.state.clone(),
            initial_weights: self.initial_weights.clone(),
        }
    }
}

impl core::fmt::Debug for SparseTrainer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SparseTrainer")
            .field("config", &self.config)
            .field("state", &self.state)
            .finish()
    }
}

impl SparseTrainer {
    /// Sparsify `model` for `dst.method` and return it, in the gradient mode of the first step,
    /// with the trainer.
    ///
    /// Masks start random with exact counts (`scratch`, `static_rezero`, SET, SNFS, RigL; the
    /// `init` of `sparsity` is honoured) or all ones (SNIP and gradual pruning, which choose
    /// them later); dense training attaches none.
    ///
    /// # Errors
    /// Invalid settings ([`DstConfig::validate`]) and every error of
    /// [`Sparsify::sparsify_with_plan`].
    pub fn init<M: Module>(
        model: M,
        sparsity: &SparsityConfig,
        dst: DstConfig,
    ) -> Result<(M, Self)> {
        validate_pair(&dst, sparsity)?;
        let (model, plan) = match dst.method {
            Method::Dense => (model, None),
            m => {
                let mut cfg = sparsity.clone();
                if m.starts_dense() {
                    cfg.init = MaskInit::Dense;
                }
                let (model, plan) = model.sparsify_with_plan(&cfg)?;
                (model, Some(plan))
            }
        };
        let schedule = dst.schedule();
        let updater = dst.method.updater(&dst);
        let last_update = match &updater {
            Some(u) => u.initial_last_update(&schedule),
            None => schedule.initial_last_update(),
        };
        let trainer = Self {
            updater,
            state: TrainerState {
                step: 0,
                last_update,
                updates: 0,
            },
            config: dst,
            sparsity: sparsity.clone(),
            plan,
            initial_weights: HashMap::new(),
        };
        let mut trainer = trainer;
        if matches!(trainer.config.grow_init, GrowInit::InitialDist(_)) {
            // `initial_dist` draws from the weights the layers start with.
            let layers = model.sparse_layers();
            trainer.initial_weights = flat_weights(&model, layers.iter().map(|l| l.path.as_str()))
                .into_iter()
                .map(|(p, w)| (p, w.without_autodiff()))
                .collect();
        }
        let model = trainer.with_next_mode(model);
        Ok((model, trainer))
    }

    /// The configuration.
    pub fn config(&self) -> &DstConfig {
        &self.config
    }

    /// The sparsity configuration the masks were planned with.
    pub fn sparsity_config(&self) -> &SparsityConfig {
        &self.sparsity
    }

    /// The per-layer plan (`None` for dense training).
    pub fn plan(&self) -> Option<&SparsityPlan> {
        self.plan.as_ref()
    }

    /// The counters.
    pub fn state(&self) -> &TrainerState {
        &self.state
    }

    /// The step counter: optimizer steps taken so far.
    pub fn step_count(&self) -> i64 {
        self.state.step
    }

    /// Whether the next call to [`step`](Self::step) updates masks.
    pub fn is_update_step(&self) -> bool {
        let Some(u) = &self.updater else {
            return false;
        };
        if !u.updates() || (u.one_shot() && self.state.updates > 0) {
            return false;
        }
        if u.every_step() {
            return true;
        }
        self.config
            .schedule()
            .is_update_step(u.schedule_step(self.state.step), self.state.last_update)
    }

    /// The gradient mode the next forward pass must run in.
    pub fn next_gradient_mode(&self) -> GradientMode {
        match &self.updater {
            Some(u) if u.needs_dense_gradient(self.is_update_step()) => GradientMode::Dense,
            _ => GradientMode::Masked,
        }
    }

    fn with_next_mode<M: Module>(&self, model: M) -> M {
        if self.plan.is_none() {
            return model;
        }
        let mode = self.next_gradient_mode();
        match current_mode(&model) {
            Some(m) if m == mode => model,
            _ => model.with_gradient_mode(mode),
        }
    }

    /// One training iteration after the backward pass: the optimizer step and/or the mask
    /// update the schedule calls for (see the module docs), then the model in the gradient
    /// mode the next step needs.
    ///
    /// `grads` must be the gradients of `model` as returned by the previous call (or by
    /// [`init`](Self::init)).
    ///
    /// # Errors
    /// [`SparsityError::InvalidOptimizerSetting`] when the (base) learning rate is negative or
    /// not finite, [`SparsityError::InvalidSetting`] when the model runs in masked-gradient mode on a step
    /// that needs the dense gradient, [`SparsityError::MissingGradient`] when a masked weight
    /// has no gradient while one is needed, selection errors (NaN weights or scores) and
    /// optimizer-state errors.
    pub fn step<M: Module, O: SparseOptimizer>(
        &mut self,
        model: M,
        optim: &mut O,
        lr: impl Into<ModuleLearningRate>,
        mut grads: GradientsParams,
    ) -> Result<StepOutcome<M>> {
        let lr = lr.into();
        crate::optim::check_hyperparameter(
            "learning rate",
            lr.base(),
            crate::optim::Range::NonNegative,
        )?;
        let t = self.state.step;
        let is_update = self.is_update_step();
        let Some(updater) = self.updater.as_mut() else {
            let model = optim.step(lr, model, grads);
            self.state.step += 1;
            return Ok(StepOutcome {
                model,
                trained: true,
                update: None,
            });
        };
        let (trains_first, seen) = (updater.trains_on_update_step(), updater.schedule_step(t));
        let needs_dense = updater.needs_dense_gradient(is_update);
        let layers = model.sparse_layers();
        let mode = current_mode(&model).unwrap_or(GradientMode::Masked);
        if needs_dense && mode != GradientMode::Dense {
            return Err(SparsityError::InvalidSetting(format!(
                "step {t} needs the dense gradient but the model runs in masked-gradient mode: \
                 run the forward pass on the model returned by the previous `step` (or `init`)"
            )));
        }
        let dense = take_gradients(
            &model,
            &layers,
            &mut grads,
            mode == GradientMode::Dense && !updater.straight_through(),
            needs_dense,
        )?;

        for l in &layers {
            if let Some(g) = dense.get(&l.id) {
                updater.observe(&l.path, g);
            }
        }

        let train = !is_update || trains_first || self.config.train_on_update_steps;
        let mut model = if train {
            optim.step(lr, model, grads)
        } else {
            model
        };
        let mut update = None;
        if is_update {
            // `seen` is the step the update sees (t + 1 after the optimizer's increment, or t
            // for RigL and SNIP): see `MaskUpdater::schedule_step`. The updater is taken out
            // while it decides, and always put back.
            let mut updater = self.updater.take().expect("a method with updates");
            let decided = self.update_masks(updater.as_mut(), model, optim, &dense, seen);
            self.updater = Some(updater);
            let (m, stats) = decided?;
            model = m;
            update = Some(stats);
            self.state.last_update = seen;
            self.state.updates += 1;
        }
        if train {
            self.state.step += 1;
        }
        let model = self.with_next_mode(model);
        Ok(StepOutcome {
            model,
            trained: train,
            update,
        })
    }

    /// The state the method keeps between steps (SNFS's moving averages, gradual pruning's
    /// thresholds), by name (empty for dense training).
    pub fn method_state(&self) -> crate::updater::MethodState {
        self.updater.as_ref().map(|u| u.state()).unwrap_or_default()
    }

    /// The initial weights of the masked layers, by parameter path, kept for
    /// [`GrowInit::InitialDist`] (empty otherwise).
    pub fn initial_weights(&self) -> &HashMap<String, Tensor<1>> {
        &self.initial_weights
    }

    /// Everything a checkpoint keeps of the trainer but its tensors.
    pub(crate) fn snapshot(&self) -> TrainerSnapshot {
        TrainerSnapshot {
            config: self.config.clone(),
            sparsity: self.sparsity.clone(),
            plan: self.plan.clone(),
            state: self.state.clone(),
        }
    }

    /// The trainer of a [`snapshot`](Self::snapshot), with its tensors: the method's state
    /// ([`method_state`](Self::method_state)) and the initial weights kept for `initial_dist`
    /// growth, by parameter path.
    ///
    /// # Errors
    /// The method's [`MaskUpdater::load_state`] errors.
    pub(crate) fn from_snapshot(
        snapshot: TrainerSnapshot,
        method_state: crate::updater::MethodState,
        initial_weights: HashMap<String, Tensor<1>>,
    ) -> Result<Self> {
        let TrainerSnapshot {
            config,
            sparsity,
            plan,
            state,
        } = snapshot;
        validate_pair(&config, &sparsity)?;
        let invalid = |m: String| Err(SparsityError::InvalidSetting(m));
        let mut updater = config.method.updater(&config);
        let masked: HashMap<&str, usize> = match (&updater, &plan) {
            (Some(_), None) => {
                return invalid(format!(
                    "method {} needs a sparsity plan, but the checkpoint has none",
                    config.method
                ));
            }
            (None, Some(_)) => {
                return invalid(
                    "dense training has no sparsity plan, but the checkpoint holds one".into(),
                );
            }
            (_, Some(plan)) => {
                for l in &plan.layers {
                    let numel = l
                        .shape
                        .dims
                        .iter()
                        .try_fold(1usize, |n, &d| n.checked_mul(d));
                    if numel.is_none_or(|n| n > isize::MAX as usize) {
                        return invalid(format!(
                            "the plan gives `{}` the shape {:?}, which no tensor has",
                            l.path, l.shape.dims
                        ));
                    }
                    if !(0.0..=1.0).contains(&l.sparsity) {
                        return invalid(format!(
                            "the plan gives `{}` the sparsity {}, outside [0, 1]",
                            l.path, l.sparsity
                        ));
                    }
                    if l.n_active > l.numel() {
                        return invalid(format!(
                            "the plan keeps {} of the {} weights of `{}`",
                            l.n_active,
                            l.numel(),
                            l.path
                        ));
                    }
                }
                plan.layers
                    .iter()
                    .filter(|l| l.masked)
                    .map(|l| (l.path.as_str(), l.numel()))
                    .collect()
            }
            (None, None) => HashMap::new(),
        };
        for (path, t) in &method_state {
            let Some(u) = &updater else { break };
            let Some(&numel) = masked.get(path.as_str()) else {
                return invalid(format!(
                    "the checkpoint holds {} state for `{path}`, which is not a masked layer of its plan",
                    config.method
                ));
            };
            let (found, expected) = (t.dims()[0], u.state_len(numel));
            if found != expected {
                return invalid(format!(
                    "the {} state of `{path}` has {found} values, expected {expected}",
                    config.method
                ));
            }
        }
        for (path, t) in &initial_weights {
            let Some(&numel) = masked.get(path.as_str()) else {
                return invalid(format!(
                    "the checkpoint holds initial weights for `{path}`, which is not a masked layer of its plan"
                ));
            };
            if t.dims()[0] != numel {
                return invalid(format!(
                    "the initial weights of `{path}` have {} values, expected {numel}",
                    t.dims()[0]
                ));
            }
        }
        if matches!(config.grow_init, GrowInit::InitialDist(_))
            && let Some(path) = masked.keys().find(|p| !initial_weights.contains_key(**p))
        {
            return invalid(format!(
                "growth draws from the initial weights, but the checkpoint has none for `{path}`"
            ));
        }
        match &mut updater {
            Some(u) => u.load_state(method_state)?,
            None if !method_state.is_empty() => {
                return Err(SparsityError::InvalidSetting(
                    "dense training keeps no method state, but the checkpoint holds some".into(),
                ));
            }
            None => {}
        }
        Ok(Self {
            updater,
            config,
            sparsity,
            plan,
            state,
            initial_weights,
        })
    }

    /// Check that `model`'s kernels and masks are those of the plan: the same masked paths and
    /// shapes, and as many active weights as the plan gives each layer where the method keeps
    /// that count (between `n_active` and all for SNIP before its shot and gradual pruning).
    ///
    /// # Errors
    /// [`SparsityError::InvalidSetting`] naming the first layer that differs.
    pub(crate) fn check_model<M: Module>(&self, model: &M) -> Result<()> {
        let invalid = |m: String| Err(SparsityError::InvalidSetting(m));
        let kernels = crate::layers::kernel_params(model);
        let Some(plan) = &self.plan else {
            return match kernels.iter().find(|k| k.mask.is_some()) {
                Some(k) => invalid(format!(
                    "dense training attaches no mask, but `{}` has one",
                    k.path
                )),
                None => Ok(()),
            };
        };
        let by_path: HashMap<&str, &KernelParam> =
            kernels.iter().map(|k| (k.path.as_str(), k)).collect();
        let mut checked = Vec::new();
        for l in plan.layers.iter().filter(|l| l.masked) {
            let Some(k) = by_path.get(l.path.as_str()) else {
                return invalid(format!(
                    "the plan masks `{}`, which the model does not have",
                    l.path
                ));
            };
            if k.shape.numel() != l.numel() {
                return invalid(format!(
                    "`{}` has {} weights, the plan {}",
                    l.path,
                    k.shape.numel(),
                    l.numel()
                ));
            }
            let Some(mask) = &k.mask else {
                return invalid(format!("the plan masks `{}`, but it has no mask", l.path));
            };
            checked.push((l, mask.clone()));
        }
        if let Some(k) = kernels
            .iter()
            .find(|k| k.mask.is_some() && !checked.iter().any(|(l, _)| l.path == k.path))
        {
            return invalid(format!(
                "`{}` has a mask, but the plan leaves it dense",
                k.path
            ));
        }
        let counts = count_true(checked.iter().map(|(_, m)| m.clone()).collect());
        for ((l, _), &nnz) in checked.iter().zip(&counts) {
            let (fewest, most) = match &self.updater {
                Some(u) => u.active_bounds(l, self.state.updates),
                None => (l.n_active, l.n_active),
            };
            let fits = (fewest..=most).contains(&nnz);
            if !fits {
                let expected = if fewest == most {
                    fewest.to_string()
                } else {
                    format!("{fewest} to {most}")
                };
                return invalid(format!(
                    "the mask of `{}` has {nnz} active weights, the plan {expected} of {}",
                    l.path,
                    l.numel()
                ));
            }
        }
        // A structured mask at its planned count must keep its structure (before SNIP's shot
        // and while gradual pruning ramps, masks hold more and are not checked).
        for ((l, mask), &nnz) in checked.iter().zip(&counts) {
            if let Some(g) = &l.groups
                && nnz == l.n_active
            {
                let view = crate::mask::bools_to_host(g.to_view(mask.clone()));
                if let Some((group, active)) = g.first_violation(&view) {
                    return Err(SparsityError::StructureViolation {
                        path: l.path.clone(),
                        group,
                        active,
                        expected: g.k,
                    });
                }
            }
        }
        Ok(())
    }

    pub(crate) fn next_mode_for<M: Module>(&self, model: M) -> M {
        self.with_next_mode(model)
    }
}

/// Both configurations' checks, and what they must agree on: a global pruning scope ranks
/// unstructured layers only.
fn validate_pair(dst: &DstConfig, sparsity: &SparsityConfig) -> Result<()> {
    dst.validate()?;
    sparsity.validate()?;
    if dst.pruning_scope.is_global() && sparsity.structure.is_structured() {
        return Err(SparsityError::InvalidSetting(format!(
            "pruning scope {} ranks unstructured layers only; structure {} keeps a count per group",
            dst.pruning_scope, sparsity.structure
        )));
    }
    Ok(())
}

/// The gradient mode of the model's first mask.
fn current_mode<M: Module>(model: &M) -> Option<GradientMode> {
    struct First(Option<GradientMode>, ModulePath);
    impl ModuleVisitor for First {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.1.enter(name);
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.1.exit();
        }
        fn visit_flag(&mut self, flag: &Param<burn::module::Flag>) {
            if self.0.is_none() && self.1.mask_field("dense_grad").is_some() {
                self.0 = Some(if flag.is_enabled() {
                    GradientMode::Dense
                } else {
                    GradientMode::Masked
                });
            }
        }
    }
    let mut v = First(None, ModulePath::default());
    model.visit(&mut v);
    v.0
}

/// Read (and, when the model ran in dense mode, mask) the gradients of the sparse layers.
/// Returns the flat dense gradients when `keep_dense`.
fn take_gradients<M: Module>(
    model: &M,
    layers: &[KernelParam],
    grads: &mut GradientsParams,
    mask_them: bool,
    keep_dense: bool,
) -> Result<HashMap<ParamId, Tensor<1>>> {
    struct Taker<'a> {
        masks: HashMap<ParamId, (&'a str, Tensor<1, Bool>)>,
        grads: &'a mut GradientsParams,
        mask_them: bool,
        keep_dense: bool,
        dense: HashMap<ParamId, Tensor<1>>,
        missing: Option<String>,
    }
    impl ModuleVisitor for Taker<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let Some((path, mask)) = self.masks.get(&param.id) else {
                return;
            };
            let Some(g) = self.grads.remove::<D>(param.id) else {
                if self.keep_dense && self.missing.is_none() {
                    self.missing = Some(path.to_string());
                }
                return;
            };
            let shape = g.shape();
            let flat: Tensor<1> = g.reshape([-1]);
            if self.keep_dense {
                self.dense.insert(param.id, flat.clone());
            }
            let flat = if self.mask_them {
                flat.mask_fill(mask.clone().bool_not(), 0.0)
            } else {
                flat
            };
            self.grads.register::<D>(param.id, flat.reshape(shape));
        }
    }
    if !mask_them && !keep_dense {
        return Ok(HashMap::new());
    }
    let mut taker = Taker {
        masks: layers
            .iter()
            .filter_map(|l| l.mask.clone().map(|m| (l.id, (l.path.as_str(), m))))
            .collect(),
        grads,
        mask_them,
        keep_dense,
        dense: HashMap::new(),
        missing: None,
    };
    model.visit(&mut taker);
    if let Some(path) = taker.missing {
        return Err(SparsityError::MissingGradient { path });
    }
    Ok(taker.dense)
}

/// The number of `true` entries of each tensor, read back in one transfer.
fn count_true(parts: Vec<Tensor<1, Bool>>) -> Vec<usize> {
    if parts.is_empty() {
        return Vec::new();
    }
    let sums: Vec<Tensor<1, Int>> = parts
        .into_iter()
        .map(|p| p.without_autodiff().int().sum())
        .collect();
    crate::mask::counts_to_host(Tensor::cat(sums, 0))
}
