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
//! - Update steps follow [`UpdateSchedule`]; the drop fraction follows the chosen
//!   [`DropAnneal`] (cosine uses the absolute step, as the reference does).
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
//!   reset through a host round trip of its record) or a [`SlotOptimizer`](crate::SlotOptimizer)
//!   ([`SparseSgd`](crate::SparseSgd), [`SparseAdam`](crate::SparseAdam),
//!   [`SparseAdamW`](crate::SparseAdamW): Burn's update rules, state reset on the device).
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

use crate::config::{MaskInit, SparsityConfig};
use crate::error::{Result, SparsityError};
use crate::layers::KernelParam;
use crate::mask::{GradientMode, SparseMask};
use crate::optim_state::SparseOptimizer;
use crate::param_context::ParamContext;
use crate::plan::SparsityPlan;
use crate::schedule::{DropAnneal, UpdateSchedule};
use crate::sparsify::{Sparsify, flat_weights};
use crate::updater::{LayerSlot, MaskUpdater, Method, UpdateContext, UpdateInput};
use burn::config::Config;
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::optim::lr_scheduler::module_lr_scheduler::ModuleLearningRate;
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use rigl_kernels::{Philox, stream_id};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Weight given to new connections: the reference's `grow_init` options. The `_X` suffix of a
/// name is a divisor (default 1), read as the reference's `extract_number` does
/// (`random_normal_2`, `random_normal_.5`).
///
/// Random values come from the counter-based generator keyed by `(seed, layer, step)` (the
/// reference's stateless generators are keyed by Python's per-process string hash, so no run
/// reproduces another's values bit for bit). They are drawn at every new connection of the
/// update (and, for `static_rezero`, at every re-zeroed weight).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum GrowInit {
    /// Zero (`zeros`, the reference's default).
    #[default]
    Zeros,
    /// `initial_dist_X`: a random permutation of the layer's initial weights (the values it had
    /// when training started, kept by the trainer), divided by X.
    InitialDist(f64),
    /// `random_normal_X`: `N(0, std(W)) / X`, with `std(W)` the population standard deviation of
    /// all stored weights of the layer (active and inactive, as the reference's
    /// `reduce_std(weights)` of the raw variable).
    RandomNormal(f64),
    /// `random_uniform_X`: `U(-mean|W|, mean|W|) / X`, the mean over all stored weights.
    RandomUniform(f64),
    /// `grad_scale_X` (RigL only): the dense gradient `dL/d(w*m)` divided by X.
    GradScale(f64),
    /// `grad_sign_X` (RigL only): `sign(dL/d(w*m)) / X`.
    GradSign(f64),
}

impl GrowInit {
    /// The divisor X (1 for `zeros`).
    pub fn divisor(&self) -> f64 {
        match *self {
            Self::Zeros => 1.0,
            Self::InitialDist(x)
            | Self::RandomNormal(x)
            | Self::RandomUniform(x)
            | Self::GradScale(x)
            | Self::GradSign(x) => x,
        }
    }

    /// Whether the values are the dense gradient's (RigL's options).
    pub fn uses_gradient(&self) -> bool {
        matches!(self, Self::GradScale(_) | Self::GradSign(_))
    }
}

impl core::str::FromStr for GrowInit {
    type Err = String;

    fn from_str(s: &str) -> core::result::Result<Self, String> {
        let s = s.to_ascii_lowercase();
        if s == "zeros" {
            return Ok(Self::Zeros);
        }
        type Make = fn(f64) -> GrowInit;
        let options: [(&str, Make); 5] = [
            ("initial_dist", Self::InitialDist),
            ("random_normal", Self::RandomNormal),
            ("random_uniform", Self::RandomUniform),
            ("grad_scale", Self::GradScale),
            ("grad_sign", Self::GradSign),
        ];
        let unknown = || {
            format!(
                "unknown grow init `{s}`: expected zeros, initial_dist[_X], random_normal[_X], \
                 random_uniform[_X], grad_scale[_X] or grad_sign[_X] (X a divisor, e.g. random_normal_2)"
            )
        };
        let (name, make) = options
            .iter()
            .find(|(name, _)| s.starts_with(name))
            .ok_or_else(unknown)?;
        // The reference's extract_number: the number after the last `_`, 1 without one.
        let rest = &s[name.len()..];
        let divisor = match rest.strip_prefix('_') {
            None if rest.is_empty() => 1.0,
            Some(x) if !x.is_empty() && x.chars().all(|c| c.is_ascii_digit() || c == '.') => {
                x.parse::<f64>().map_err(|_| unknown())?
            }
            _ => return Err(unknown()),
        };
        Ok(make(divisor))
    }
}

impl core::fmt::Display for GrowInit {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let name = match self {
            Self::Zeros => return f.write_str("zeros"),
            Self::InitialDist(_) => "initial_dist",
            Self::RandomNormal(_) => "random_normal",
            Self::RandomUniform(_) => "random_uniform",
            Self::GradScale(_) => "grad_scale",
            Self::GradSign(_) => "grad_sign",
        };
        write!(f, "{name}_{}", self.divisor())
    }
}

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
}

impl DstConfig {
    /// Check the settings.
    ///
    /// # Errors
    /// [`SparsityError::InvalidSetting`] for a frequency below 1, a drop fraction outside
    /// `[0, 1]`, an end step before the begin step, a non-positive multiplier, an SNFS decay
    /// outside `[0, 1)`, a grow-init divisor that is not positive, a gradient grow init or
    /// `rigl_acc_scale` for another method than RigL, a threshold decay outside `[0, 1)`, a
    /// negative weight decay, or an exponential anneal without an end step.
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

/// Counters of a sparse training run (all of its state but tensors).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// The step counter (optimizer steps taken).
    pub step: i64,
    /// The step the last mask update saw ([`MaskUpdater::schedule_step`]).
    pub last_update: i64,
    /// Mask updates so far.
    pub updates: u64,
    /// Gradual pruning's smoothed magnitude threshold of each layer at its last update, by
    /// parameter path (model_pruning's `threshold` variables; absent: 0).
    #[serde(default)]
    pub thresholds: std::collections::BTreeMap<String, f32>,
}

/// One layer of an [`UpdateStats`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerUpdateStats {
    /// Parameter path.
    pub path: String,
    /// Active connections after the update.
    pub active: usize,
    /// Connections switched on (or, for `static_rezero`, re-zeroed).
    pub reset: usize,
    /// Connections switched off.
    pub dropped: usize,
}

/// What a mask update did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UpdateStats {
    /// Step of the update.
    pub step: i64,
    /// Drop fraction used.
    pub drop_fraction: f64,
    /// Per layer.
    pub layers: Vec<LayerUpdateStats>,
}

impl UpdateStats {
    /// Fraction of active connections that are new (reset) after this update.
    pub fn changed_fraction(&self) -> f64 {
        let active: usize = self.layers.iter().map(|l| l.active).sum();
        let reset: usize = self.layers.iter().map(|l| l.reset).sum();
        if active == 0 {
            0.0
        } else {
            reset as f64 / active as f64
        }
    }
}

/// The result of [`SparseTrainer::step`].
pub struct StepOutcome<M> {
    /// The model, in the gradient mode the next step needs.
    pub model: M,
    /// Whether the optimizer step was taken.
    pub trained: bool,
    /// The mask update made at this step, if any.
    pub update: Option<UpdateStats>,
}

/// Drives dynamic sparse training from a hand-written loop (see the module docs).
pub struct SparseTrainer {
    config: DstConfig,
    sparsity: SparsityConfig,
    plan: Option<SparsityPlan>,
    updater: Option<Box<dyn MaskUpdater>>,
    state: TrainerState,
    averages: HashMap<String, Tensor<1>>,
    initial_weights: HashMap<String, Tensor<1>>,
}

impl Clone for SparseTrainer {
    fn clone(&self) -> Self {
        Self::from_parts(
            self.config.clone(),
            self.sparsity.clone(),
            self.plan.clone(),
            self.state.clone(),
            self.averages.clone(),
            self.initial_weights.clone(),
        )
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
        dst.validate()?;
        sparsity.validate()?;
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
        let updater = dst.method.updater();
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
                thresholds: Default::default(),
            },
            config: dst,
            sparsity: sparsity.clone(),
            plan,
            averages: HashMap::new(),
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
    /// [`SparsityError::InvalidSetting`] when the model runs in masked-gradient mode on a step
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
        let Some(updater) = &self.updater else {
            let model = optim.step(lr, model, grads);
            self.state.step += 1;
            return Ok(StepOutcome {
                model,
                trained: true,
                update: None,
            });
        };
        let t = self.state.step;
        let is_update = self.is_update_step();
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
            mode == GradientMode::Dense,
            needs_dense,
        )?;

        if self.config.method == Method::Snfs {
            let decay = self.config.snfs_decay;
            for l in &layers {
                if let Some(g) = dense.get(&l.id) {
                    let avg = match self.averages.remove(&l.path) {
                        Some(a) => a.mul_scalar(decay) + g.clone().mul_scalar(1.0 - decay),
                        None => g.clone().mul_scalar(1.0 - decay),
                    };
                    self.averages.insert(l.path.clone(), avg);
                }
            }
        }

        let train =
            !is_update || updater.trains_on_update_step() || self.config.train_on_update_steps;
        let mut model = if train {
            optim.step(lr, model, grads)
        } else {
            model
        };
        let mut update = None;
        if is_update {
            // The step the update sees (t + 1 after the optimizer's increment, or t for RigL and
            // SNIP): see `MaskUpdater::schedule_step`.
            let seen = updater.schedule_step(t);
            let (m, stats, thresholds) = self.update_masks(model, optim, &dense, seen)?;
            model = m;
            update = Some(stats);
            self.state.thresholds.extend(thresholds);
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

    fn update_masks<M: Module, O: SparseOptimizer>(
        &self,
        model: M,
        optim: &mut O,
        dense: &HashMap<ParamId, Tensor<1>>,
        t: i64,
    ) -> Result<(M, UpdateStats, Thresholds)> {
        let updater = self.updater.as_ref().expect("updates need an updater");
        let schedule = self.config.schedule();
        let ctx = UpdateContext {
            step: t,
            drop_fraction: schedule.drop_fraction_at(t),
            seed: self.sparsity.seed,
            allow_regrow: self.config.allow_regrow,
            begin_step: schedule.begin_step,
            end_step: schedule.end_step,
            threshold_decay: self.config.threshold_decay,
            weight_decay: self.config.weight_decay,
        };
        let layers = model.sparse_layers();
        let (input, ids) = self.update_input(&model, &layers, dense)?;
        if input.is_empty() {
            return Ok((
                model,
                UpdateStats {
                    step: t,
                    drop_fraction: ctx.drop_fraction,
                    layers: Vec::new(),
                },
                Vec::new(),
            ));
        }
        let decision = updater.update(&ctx, &input)?;
        let thresholds: Thresholds = match &decision.thresholds {
            Some(t) => input
                .layers
                .iter()
                .map(|l| l.path.clone())
                .zip(t.iter().copied())
                .collect(),
            None => Vec::new(),
        };

        // Per-layer counts of the decision: from the updater when it counted them, otherwise
        // from the masks, read back in one transfer.
        let counts: Vec<usize> = match &decision.changes {
            Some(changes) => changes
                .iter()
                .flat_map(|c| [c.active, c.reset, c.dropped])
                .collect(),
            None => {
                let dropped = input
                    .mask
                    .clone()
                    .bool_and(decision.mask.clone().bool_not());
                let mut parts = Vec::with_capacity(3 * input.layers.len());
                for s in &input.layers {
                    for t in [&decision.mask, &decision.reset, &dropped] {
                        parts.push(t.clone().narrow(0, s.offset, s.len));
                    }
                }
                count_true(parts)
            }
        };
        let mut new_masks = HashMap::new();
        let mut resets = HashMap::new();
        let mut slot_resets = Vec::new();
        let mut stats = Vec::with_capacity(input.layers.len());
        for ((s, id), c) in input.layers.iter().zip(&ids).zip(counts.chunks_exact(3)) {
            let (active, reset, dropped) = (c[0], c[1], c[2]);
            stats.push(LayerUpdateStats {
                path: s.path.clone(),
                active,
                reset,
                dropped,
            });
            if reset > 0 {
                let r = decision.reset.clone().narrow(0, s.offset, s.len);
                slot_resets.push((*id, r.clone()));
                resets.insert(s.path.clone(), r);
            }
            if dropped > 0 || active != s.n_active {
                new_masks.insert(
                    s.path.clone(),
                    decision.mask.clone().narrow(0, s.offset, s.len),
                );
            }
        }
        let mut mapper = UpdateMapper {
            path: Vec::new(),
            masks: new_masks,
            resets,
            grow_init: self.config.grow_init,
            seed: self.sparsity.seed,
            step: t,
            gradients: dense,
            initial_weights: &self.initial_weights,
        };
        let model = model.map(&mut mapper);
        let acc_scale = self.config.rigl_acc_scale;
        if acc_scale != 0.0 {
            // RigL's rigl_acc_scale: the slots of new connections start at
            // acc_scale * dL/d(w*m).
            let inits: Vec<_> = slot_resets
                .iter()
                .map(|(id, r)| {
                    let g = dense.get(id).cloned().ok_or_else(|| {
                        SparsityError::InvalidSetting(
                            "rigl_acc_scale needs the dense gradient of every updated layer".into(),
                        )
                    })?;
                    Ok((*id, r.clone(), g.without_autodiff().mul_scalar(acc_scale)))
                })
                .collect::<Result<_>>()?;
            optim.init_slots(&inits)?;
        } else {
            optim.reset_slots(&slot_resets)?;
        }
        Ok((
            model,
            UpdateStats {
                step: t,
                drop_fraction: ctx.drop_fraction,
                layers: stats,
            },
            thresholds,
        ))
    }

    /// The flat buffers of an update: every masked layer's weights, mask, dense gradient and
    /// moving average, concatenated on the model's device; and the layers' parameter ids.
    fn update_input<M: Module>(
        &self,
        model: &M,
        layers: &[KernelParam],
        dense: &HashMap<ParamId, Tensor<1>>,
    ) -> Result<(UpdateInput, Vec<ParamId>)> {
        let plan = self.plan.as_ref().expect("updates need a plan");
        let layers: Vec<(&KernelParam, Tensor<1, Bool>)> = layers
            .iter()
            .filter_map(|l| l.mask.clone().map(|m| (l, m)))
            .collect();
        let mut weights = flat_weights(model, layers.iter().map(|(l, _)| l.path.as_str()));
        let n_active = count_true(layers.iter().map(|(_, m)| m.clone()).collect());
        let mut slots = Vec::with_capacity(layers.len());
        let mut w = Vec::with_capacity(layers.len());
        let mut offset = 0;
        for ((l, mask), n_active) in layers.iter().zip(n_active) {
            let weight = weights
                .remove(&l.path)
                .ok_or_else(|| SparsityError::UnknownLayer {
                    path: l.path.clone(),
                })?;
            let len = mask.dims()[0];
            let planned = plan.layer(&l.path);
            slots.push(LayerSlot {
                path: l.path.clone(),
                offset,
                len,
                n_active,
                target_active: planned.map(|p| p.n_active).unwrap_or(n_active),
                target_sparsity: planned
                    .map(|p| p.sparsity)
                    .unwrap_or(1.0 - n_active as f64 / len.max(1) as f64),
                threshold: self.state.thresholds.get(&l.path).copied().unwrap_or(0.0),
            });
            w.push(weight);
            offset += len;
        }
        let ids = layers.iter().map(|(l, _)| l.id).collect();
        if slots.is_empty() {
            let device = Device::default();
            let input = UpdateInput {
                layers: slots,
                weights: Tensor::zeros([0], &device),
                mask: Tensor::zeros([0], &device),
                dense_grad: None,
                average: None,
            };
            return Ok((input, ids));
        }
        let cat = |parts: Option<Vec<Tensor<1>>>| {
            parts.map(|p| Tensor::cat(p.into_iter().map(Tensor::without_autodiff).collect(), 0))
        };
        let dense_grad = cat(layers
            .iter()
            .map(|(l, _)| dense.get(&l.id).cloned())
            .collect());
        let average = cat(layers
            .iter()
            .map(|(l, _)| self.averages.get(&l.path).cloned())
            .collect());
        let input = UpdateInput {
            layers: slots,
            weights: Tensor::cat(w, 0),
            mask: Tensor::cat(
                layers
                    .into_iter()
                    .map(|(_, m)| m.without_autodiff())
                    .collect(),
                0,
            ),
            dense_grad,
            average,
        };
        Ok((input, ids))
    }

    /// SNFS's gradient moving averages, by parameter path.
    pub fn averages(&self) -> &HashMap<String, Tensor<1>> {
        &self.averages
    }

    /// The initial weights of the masked layers, by parameter path, kept for
    /// [`GrowInit::InitialDist`] (empty otherwise).
    pub fn initial_weights(&self) -> &HashMap<String, Tensor<1>> {
        &self.initial_weights
    }

    pub(crate) fn parts(
        &self,
    ) -> (
        &DstConfig,
        &SparsityConfig,
        Option<&SparsityPlan>,
        &TrainerState,
    ) {
        (
            &self.config,
            &self.sparsity,
            self.plan.as_ref(),
            &self.state,
        )
    }

    pub(crate) fn from_parts(
        config: DstConfig,
        sparsity: SparsityConfig,
        plan: Option<SparsityPlan>,
        state: TrainerState,
        averages: HashMap<String, Tensor<1>>,
        initial_weights: HashMap<String, Tensor<1>>,
    ) -> Self {
        Self {
            updater: config.method.updater(),
            config,
            sparsity,
            plan,
            state,
            averages,
            initial_weights,
        }
    }

    pub(crate) fn next_mode_for<M: Module>(&self, model: M) -> M {
        self.with_next_mode(model)
    }
}

/// The gradient mode of the model's first mask.
fn current_mode<M: Module>(model: &M) -> Option<GradientMode> {
    struct First(Option<GradientMode>, Vec<String>);
    impl ModuleVisitor for First {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.1.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.1.pop();
        }
        fn visit_flag(&mut self, flag: &Param<burn::module::Flag>) {
            let n = self.1.len();
            if self.0.is_none()
                && n >= 2
                && self.1[n - 2] == SparseMask::NAME
                && self.1[n - 1] == "dense_grad"
            {
                self.0 = Some(if flag.is_enabled() {
                    GradientMode::Dense
                } else {
                    GradientMode::Masked
                });
            }
        }
    }
    let mut v = First(None, Vec::new());
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

/// Per-layer magnitude thresholds of an update, by parameter path.
type Thresholds = Vec<(String, f32)>;

/// Writes new masks and sets the weights at new connections to the grow initialisation.
struct UpdateMapper<'a> {
    path: Vec<String>,
    masks: HashMap<String, Tensor<1, Bool>>,
    resets: HashMap<String, Tensor<1, Bool>>,
    grow_init: GrowInit,
    seed: u64,
    step: i64,
    gradients: &'a HashMap<ParamId, Tensor<1>>,
    initial_weights: &'a HashMap<String, Tensor<1>>,
}

impl UpdateMapper<'_> {
    /// The grow values of the layer at `path` (flat, `n` of them), from its stored weights
    /// `weights` (flat, inner backend) and its dense gradient `gradient`; `None` for zeros.
    fn grow_values(
        &self,
        path: &str,
        weights: &Tensor<1>,
        gradient: Option<&Tensor<1>>,
    ) -> Option<Tensor<1>> {
        let device = weights.device();
        let n = weights.dims()[0];
        let divisor = self.grow_init.divisor();
        let upload = |v: Vec<f32>| Tensor::<1>::from_data(TensorData::new(v, [n]), &device);
        let gradient = || {
            gradient
                .cloned()
                .expect("validated: gradient grow inits are RigL's, which has the dense gradient")
                .without_autodiff()
                .to_device(&device)
        };
        let values = match self.grow_init {
            GrowInit::Zeros => return None,
            GrowInit::RandomNormal(_) => {
                // reduce_std: the population deviation of every stored weight of the layer.
                let std = weights.clone().var_bias(0).sqrt();
                upload(normal_samples(self.seed, path, self.step, n, 1.0)) * std.expand([n])
            }
            GrowInit::RandomUniform(_) => {
                let mean = weights.clone().abs().mean();
                upload(uniform_samples(self.seed, path, self.step, n)) * mean.expand([n])
            }
            GrowInit::InitialDist(_) => {
                let initial = self
                    .initial_weights
                    .get(path)
                    .map(|t| crate::mask::floats_to_host(t.clone()))
                    .unwrap_or_else(|| crate::mask::floats_to_host(weights.clone()));
                upload(shuffled(self.seed, path, self.step, initial))
            }
            GrowInit::GradScale(_) => gradient(),
            GrowInit::GradSign(_) => gradient().sign(),
        };
        Some(if divisor == 1.0 {
            values
        } else {
            values.div_scalar(divisor as f32)
        })
    }
}

impl ModuleMapper for UpdateMapper<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let path = self.path.join(".");
        let Some(reset) = self.resets.remove(&path) else {
            return param;
        };
        let id = param.id;
        let gradient = self.gradients.get(&id).cloned();
        param.map(move |t| {
            let shape = t.shape();
            let reset = reset.reshape(shape.clone());
            let context = ParamContext::capture(&t);
            let inner = t.inner();
            let flat: Tensor<1> = inner.clone().reshape([-1]);
            let updated = match self.grow_values(&path, &flat, gradient.as_ref()) {
                None => inner.mask_fill(reset, 0.0),
                Some(values) => inner.mask_where(reset, values.reshape(shape)),
            };
            context.restore(updated, id)
        })
    }

    fn map_bool<const D: usize>(
        &mut self,
        param: Param<Tensor<D, Bool>>,
    ) -> Param<Tensor<D, Bool>> {
        let n = self.path.len();
        if D != 1 || n < 3 || self.path[n - 2] != SparseMask::NAME || self.path[n - 1] != "mask" {
            return param;
        }
        let weight = self.path[..n - 2].join(".");
        let Some(values) = self.masks.remove(&weight) else {
            return param;
        };
        param.map(|t| values.reshape(t.shape()))
    }
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
    Tensor::cat(sums, 0)
        .into_data()
        .convert::<i64>()
        .try_into_vec::<i64>()
        .expect("counts convert to i64")
        .into_iter()
        .map(|c| c as usize)
        .collect()
}

/// The stream of the grow initialisation of the layer at `path` (apart from its selection
/// streams).
fn grow_stream(path: &str) -> u32 {
    stream_id(path) ^ 0x9E37_79B9
}

/// Standard normal samples (times `std`) by Box-Muller over the counter-based generator.
fn normal_samples(seed: u64, path: &str, step: i64, n: usize, std: f64) -> Vec<f32> {
    let g = Philox::new(seed);
    let stream = grow_stream(path);
    (0..n as u64)
        .map(|i| {
            let u1 = ((g.u32(stream, (step + 1) as u32, 2 * i) >> 8) as f64 + 1.0) / 16_777_217.0;
            let u2 = (g.u32(stream, (step + 1) as u32, 2 * i + 1) >> 8) as f64 / 16_777_216.0;
            ((-2.0 * u1.ln()).sqrt() * (2.0 * core::f64::consts::PI * u2).cos() * std) as f32
        })
        .collect()
}

/// Uniform samples in `[-1, 1)` over the counter-based generator (`-m + u * 2m` for `m = 1`, as
/// TF's `random_uniform(minval=-m, maxval=m)`).
fn uniform_samples(seed: u64, path: &str, step: i64, n: usize) -> Vec<f32> {
    let g = Philox::new(seed);
    let stream = grow_stream(path) ^ 0x5555;
    (0..n as u64)
        .map(|i| -1.0 + 2.0 * g.uniform(stream, (step + 1) as u32, i))
        .collect()
}

/// A random permutation of `values` (Fisher-Yates over the counter-based generator), the
/// reference's `random_shuffle` of the initial weights.
fn shuffled(seed: u64, path: &str, step: i64, mut values: Vec<f32>) -> Vec<f32> {
    let g = Philox::new(seed);
    let stream = grow_stream(path) ^ 0xAAAA;
    for i in (1..values.len()).rev() {
        let r = ((g.u32(stream, (step + 1) as u32, 2 * i as u64) as u64) << 32)
            | g.u32(stream, (step + 1) as u32, 2 * i as u64 + 1) as u64;
        values.swap(i, (r % (i as u64 + 1)) as usize);
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mask::{bools_to_host, floats_to_host};
    use crate::sparsify::read_weights;
    use crate::test_utils::{Mlp, masks};
    use burn::optim::ModuleOptimizer;
    use burn::optim::momentum::MomentumConfig;
    use burn::optim::{AdamConfig, AdamWConfig, SgdConfig};
    use burn::tensor::Device;
    use proptest::prelude::*;

    fn device() -> Device {
        Device::default().autodiff()
    }

    fn sgd() -> ModuleOptimizer {
        SgdConfig::new()
            .with_momentum(Some(
                MomentumConfig::new()
                    .with_nesterov(true)
                    .with_dampening(0.0),
            ))
            .init()
    }

    fn nnz(model: &Mlp) -> Vec<usize> {
        masks(model)
            .iter()
            .map(|m| m.iter().filter(|&&b| b).count())
            .collect()
    }

    /// Optimizer state tensors by (param id, name).
    fn optim_state(optim: &ModuleOptimizer) -> HashMap<(u64, String), Vec<f32>> {
        let reader = burn_pack::Reader::from_bytes(optim.into_bytes().unwrap()).unwrap();
        reader
            .into_tensors()
            .unwrap()
            .into_iter()
            .map(|t| {
                let (name, dtype, shape, id, bytes) = t.into_parts().unwrap();
                let data = TensorData::from_bytes(bytes, shape, dtype);
                let values = data.convert::<f32>().try_into_vec::<f32>().unwrap();
                ((id.unwrap_or(0), name), values)
            })
            .collect()
    }

    /// Run `steps` calls of `step` on batches 0.., returning the model and the update stats.
    fn run(
        model: Mlp,
        trainer: &mut SparseTrainer,
        optim: &mut ModuleOptimizer,
        calls: u32,
        mut each: impl FnMut(&Mlp, &StepOutcome<Mlp>, &SparseTrainer),
    ) -> Mlp {
        let device = device();
        let mut model = model;
        for i in 0..calls {
            let grads = model.grads(i, 8, &device);
            let out = trainer.step(model, optim, 0.05, grads).unwrap();
            each(&out.model, &out, trainer);
            model = out.model;
        }
        model
    }

    #[test]
    fn config_errors_name_the_problem() {
        let c = DstConfig::new(Method::Rigl);
        assert!(c.validate().is_ok());
        for (bad, needle) in [
            (c.clone().with_frequency(0), "frequency"),
            (c.clone().with_drop_fraction(1.5), "drop fraction"),
            (c.clone().with_drop_fraction(-0.1), "drop fraction"),
            (
                c.clone().with_begin_step(10).with_end_step(5),
                "before begin",
            ),
            (c.clone().with_training_steps_multiplier(0.0), "multiplier"),
            (DstConfig::new(Method::Prune), "end step"),
        ] {
            let e = bad.validate().unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        }
        let s = c
            .with_begin_step(10)
            .with_end_step(100)
            .with_training_steps_multiplier(5.0)
            .schedule();
        assert_eq!((s.begin_step, s.end_step, s.frequency), (50, 500, 100));
    }

    #[test]
    fn rigl_update_step_trains_nothing_and_does_not_advance() {
        let device = device();
        let model = Mlp::new([6, 10, 8, 3], &device);
        let dst = DstConfig::new(Method::Rigl)
            .with_frequency(3)
            .with_end_step(100);
        let (model, mut trainer) =
            SparseTrainer::init(model, &SparsityConfig::uniform(0.7), dst).unwrap();
        assert_eq!(
            trainer.next_gradient_mode(),
            GradientMode::Dense,
            "step 0 is an update step"
        );
        let mut optim = sgd();
        let before = read_weights(&model, ["fc2.weight"].into_iter());
        let grads = model.grads(0, 8, &device);
        let out = trainer.step(model, &mut optim, 0.05, grads).unwrap();
        assert!(!out.trained);
        assert!(out.update.is_some());
        assert_eq!(
            trainer.step_count(),
            0,
            "the update iteration does not advance the step"
        );
        let after = read_weights(&out.model, ["fc2.weight"].into_iter());
        // Only new connections changed (to zero); nothing was trained.
        let new = &out.update.as_ref().unwrap().layers[1];
        let changed = before["fc2.weight"]
            .iter()
            .zip(&after["fc2.weight"])
            .filter(|(a, b)| a != b)
            .count();
        assert!(changed <= new.reset);
        assert_eq!(trainer.next_gradient_mode(), GradientMode::Masked);
        // The same step number is seen again and trains.
        let grads = out.model.grads(1, 8, &device);
        let out = trainer.step(out.model, &mut optim, 0.05, grads).unwrap();
        assert!(out.trained && out.update.is_none());
        assert_eq!(trainer.step_count(), 1);
        // Training on update steps is the documented alternative.
        let (model, mut trainer) = SparseTrainer::init(
            Mlp::new([6, 10, 8, 3], &device),
            &SparsityConfig::uniform(0.7),
            DstConfig::new(Method::Rigl)
                .with_frequency(3)
                .with_train_on_update_steps(true),
        )
        .unwrap();
        let grads = model.grads(0, 8, &device);
        let out = trainer.step(model, &mut optim, 0.05, grads).unwrap();
        assert!(out.trained && out.update.is_some());
        assert_eq!(trainer.step_count(), 1);
    }

    #[test]
    fn masks_change_only_on_update_steps_and_not_after_end() {
        let device = device();
        // (method, begin, the steps the updates see, the calls (batches) they follow).
        // SET and SNFS see the step after the optimizer's increment (t + 1); RigL sees t and
        // its update iterations do not advance the counter.
        for (method, begin, seen, calls) in [
            (Method::Set, 0, vec![1, 5, 9], vec![0, 4, 8]),
            (Method::Snfs, 0, vec![1, 5, 9], vec![0, 4, 8]),
            (Method::Rigl, 0, vec![0, 4, 8, 12], vec![0, 5, 10, 15]),
            (Method::Set, 6, vec![6, 10], vec![5, 9]),
            (Method::StaticRezero, 6, vec![6, 10], vec![5, 9]),
            (Method::Rigl, 6, vec![6, 10], vec![6, 11]),
        ] {
            let dst = DstConfig::new(method)
                .with_begin_step(begin)
                .with_frequency(4)
                .with_end_step(12)
                .with_drop_fraction(0.5)
                .with_drop_anneal(DropAnneal::Constant);
            let (model, mut trainer) = SparseTrainer::init(
                Mlp::new([6, 12, 10, 3], &device),
                &SparsityConfig::uniform(0.6),
                dst,
            )
            .unwrap();
            let mut optim = sgd();
            let mut prev = masks(&model);
            let (mut update_steps, mut update_calls, mut call) = (vec![], vec![], 0);
            run(model, &mut trainer, &mut optim, 30, |m, out, _| {
                let now = masks(m);
                match &out.update {
                    Some(u) => {
                        update_steps.push(u.step);
                        update_calls.push(call);
                    }
                    None => assert_eq!(now, prev, "{method}: mask changed outside an update"),
                }
                prev = now;
                call += 1;
            });
            assert_eq!(update_steps, seen, "{method} from {begin}: steps seen");
            assert_eq!(update_calls, calls, "{method} from {begin}: batches");
        }
    }

    #[test]
    fn drop_fraction_zero_changes_nothing() {
        let device = device();
        for method in [
            Method::Set,
            Method::Rigl,
            Method::Snfs,
            Method::StaticRezero,
        ] {
            let dst = DstConfig::new(method)
                .with_frequency(2)
                .with_drop_fraction(0.0);
            let (model, mut trainer) = SparseTrainer::init(
                Mlp::new([5, 9, 7, 3], &device),
                &SparsityConfig::uniform(0.5),
                dst,
            )
            .unwrap();
            let start = masks(&model);
            let mut optim = sgd();
            let model = run(model, &mut trainer, &mut optim, 8, |_, out, _| {
                if let Some(u) = &out.update {
                    assert!(u.layers.iter().all(|l| l.reset == 0 && l.dropped == 0));
                }
            });
            assert_eq!(masks(&model), start, "{method}");
        }
    }

    #[test]
    fn set_growth_is_reproducible_for_a_seed() {
        let device = device();
        let base = Mlp::new([6, 12, 10, 3], &device);
        let go = |seed: u64| {
            let model = base.clone();
            let sparsity = SparsityConfig::uniform(0.6).with_seed(seed);
            let dst = DstConfig::new(Method::Set).with_frequency(2);
            let (model, mut trainer) = SparseTrainer::init(model, &sparsity, dst).unwrap();
            let mut optim = sgd();
            masks(&run(model, &mut trainer, &mut optim, 7, |_, _, _| {}))
        };
        let a = go(3);
        assert_eq!(a, go(3));
        assert_ne!(a, go(4));
    }

    #[test]
    fn snfs_average_follows_the_ema() {
        let device = device();
        let dst = DstConfig::new(Method::Snfs).with_frequency(1000);
        let (mut model, mut trainer) = SparseTrainer::init(
            Mlp::new([4, 6, 5, 3], &device),
            &SparsityConfig::uniform(0.5),
            dst,
        )
        .unwrap();
        assert_eq!(trainer.next_gradient_mode(), GradientMode::Dense);
        let mut optim = sgd();
        let mut expect: Option<Vec<f32>> = None;
        for i in 0..3 {
            let grads = model.grads(i, 8, &device);
            let g = floats_to_host(grads.get::<2>(model.fc2.weight.id).unwrap());
            expect = Some(match expect {
                None => g.iter().map(|g| 0.1 * g).collect(),
                Some(e) => e.iter().zip(&g).map(|(e, g)| 0.9 * e + 0.1 * g).collect(),
            });
            model = trainer.step(model, &mut optim, 0.05, grads).unwrap().model;
        }
        let avg = floats_to_host(trainer.averages()["fc2.weight"].clone());
        for (a, e) in avg.iter().zip(expect.unwrap()) {
            assert!((a - e).abs() <= 1e-6 * (1.0 + e.abs()), "{a} vs {e}");
        }
    }

    /// SNFS with begin step 2: the update follows batch 1 (it sees step 2), drops the smallest
    /// |w| of the weights after that batch's optimizer step and grows at the largest |EMA of the
    /// dense gradient| outside the kept connections.
    #[test]
    fn snfs_grows_from_the_gradient_average_after_the_optimizer_step() {
        let device = device();
        let dst = DstConfig::new(Method::Snfs)
            .with_begin_step(2)
            .with_frequency(100)
            .with_drop_fraction(0.5)
            .with_drop_anneal(DropAnneal::Constant);
        let (mut model, mut trainer) = SparseTrainer::init(
            Mlp::new([4, 6, 5, 3], &device),
            &SparsityConfig::uniform(0.5),
            dst,
        )
        .unwrap();
        let mut optim = sgd();
        for i in 0..2 {
            let old = bools_to_host(model.mask("fc2.weight").unwrap());
            let grads = model.grads(i, 8, &device);
            let out = trainer.step(model, &mut optim, 0.05, grads).unwrap();
            model = out.model;
            assert_eq!(out.update.is_some(), i == 1, "batch {i}");
            if i == 0 {
                continue;
            }
            assert_eq!(out.update.unwrap().step, 2);
            let avg = floats_to_host(trainer.averages()["fc2.weight"].clone());
            let w = floats_to_host(model.fc2.weight.base().reshape([-1]));
            let active: Vec<usize> = (0..old.len()).filter(|&j| old[j]).collect();
            let prune = crate::updater::drop_grow::n_prune(active.len(), 0.5);
            let top = |mut idx: Vec<usize>, score: &dyn Fn(usize) -> f32, k: usize| {
                idx.sort_by(|&a, &b| score(b).total_cmp(&score(a)).then(a.cmp(&b)));
                idx.truncate(k);
                idx
            };
            let kept = top(active.clone(), &|j| w[j].abs(), active.len() - prune);
            let others: Vec<usize> = (0..old.len()).filter(|j| !kept.contains(j)).collect();
            let grown = top(others, &|j| avg[j].abs(), prune);
            let mut expect = vec![false; old.len()];
            for j in kept.into_iter().chain(grown) {
                expect[j] = true;
            }
            assert_eq!(bools_to_host(model.mask("fc2.weight").unwrap()), expect);
        }
    }

    #[test]
    fn snip_keeps_top_connection_sensitivity_once() {
        let device = device();
        let sparsity = SparsityConfig::uniform(0.75);
        let (model, mut trainer) = SparseTrainer::init(
            Mlp::new([6, 8, 8, 3], &device),
            &sparsity,
            DstConfig::new(Method::Snip),
        )
        .unwrap();
        assert_eq!(nnz(&model), [48, 64, 24], "masks start all ones");
        let grads = model.grads(0, 8, &device);
        let g = floats_to_host(grads.get::<2>(model.fc2.weight.id).unwrap());
        let w = floats_to_host(model.fc2.weight.base());
        let mut optim = sgd();
        let out = trainer.step(model, &mut optim, 0.05, grads).unwrap();
        assert!(!out.trained);
        assert_eq!(nnz(&out.model), [12, 16, 6]);
        let mask = bools_to_host(out.model.mask("fc2.weight").unwrap());
        let score: Vec<f32> = g.iter().zip(&w).map(|(g, w)| (g * w).abs()).collect();
        let kept_min = score
            .iter()
            .zip(&mask)
            .filter(|(_, m)| **m)
            .map(|(s, _)| *s)
            .fold(f32::INFINITY, f32::min);
        let dropped_max = score
            .iter()
            .zip(&mask)
            .filter(|(_, m)| !**m)
            .map(|(s, _)| *s)
            .fold(0.0, f32::max);
        assert!(kept_min >= dropped_max);
        // Afterwards the mask is fixed.
        let start = masks(&out.model);
        let model = run(out.model, &mut trainer, &mut optim, 5, |_, out, _| {
            assert!(out.update.is_none())
        });
        assert_eq!(masks(&model), start);
    }

    #[test]
    fn gradual_pruning_hits_its_schedule() {
        let device = device();
        let sparsity = SparsityConfig::uniform(0.9);
        let dst = DstConfig::new(Method::Prune)
            .with_begin_step(2)
            .with_end_step(10)
            .with_frequency(2);
        let (model, mut trainer) =
            SparseTrainer::init(Mlp::new([10, 20, 10, 4], &device), &sparsity, dst).unwrap();
        let plan = trainer.plan().unwrap().clone();
        let mut optim = sgd();
        let (mut seen, mut calls, mut call) = (vec![], vec![], 0);
        let model = run(model, &mut trainer, &mut optim, 14, |m, out, tr| {
            if let Some(u) = &out.update {
                let ctx = UpdateContext {
                    step: u.step,
                    begin_step: 2,
                    end_step: 10,
                    ..UpdateContext::default()
                };
                seen.push(u.step);
                calls.push(call);
                for ((l, p), th) in nnz(m).iter().zip(&plan.layers).zip(&u.layers) {
                    let k = crate::updater::gradual_pruning::GradualPruning::kept_at(
                        p.numel(),
                        p.sparsity,
                        &ctx,
                    );
                    assert_eq!(*l, k, "step {}: {}", u.step, p.path);
                    assert!(tr.state().thresholds[&th.path] > 0.0);
                }
            }
            call += 1;
        });
        // model_pruning: last_update starts at 0 and the update sees the step after the
        // optimizer's increment, so the first pruning is at step 2, after batch 1.
        assert_eq!(seen, [2, 4, 6, 8, 10]);
        assert_eq!(calls, [1, 3, 5, 7, 9]);
        // round(f32(N) * (1 - 0.9)) is the plan's N - floor(0.9 N) for these layers.
        assert_eq!(
            nnz(&model),
            plan.layers.iter().map(|l| l.n_active).collect::<Vec<_>>()
        );
    }

    #[test]
    fn grow_init_names_parse_as_the_reference() {
        for (name, expect) in [
            ("zeros", GrowInit::Zeros),
            ("random_normal", GrowInit::RandomNormal(1.0)),
            ("random_normal_2", GrowInit::RandomNormal(2.0)),
            ("random_normal_.5", GrowInit::RandomNormal(0.5)),
            ("random_uniform_10", GrowInit::RandomUniform(10.0)),
            ("initial_dist_4", GrowInit::InitialDist(4.0)),
            ("grad_scale", GrowInit::GradScale(1.0)),
            ("grad_sign_3", GrowInit::GradSign(3.0)),
        ] {
            assert_eq!(name.parse::<GrowInit>().unwrap(), expect, "{name}");
            assert_eq!(expect.to_string().parse::<GrowInit>().unwrap(), expect);
        }
        // The reference rejects these too (`initial_value` is in its flag help, not its code).
        for bad in [
            "initial_value",
            "ones",
            "random_normal_",
            "random_normalx",
            "grad",
        ] {
            let e = bad.parse::<GrowInit>().unwrap_err();
            assert!(e.contains("unknown grow init"), "{bad}: {e}");
        }
        let rigl = DstConfig::new(Method::Rigl).with_end_step(100);
        let set = DstConfig::new(Method::Set).with_end_step(100);
        for (bad, needle) in [
            (
                set.clone().with_grow_init(GrowInit::GradSign(1.0)),
                "RigL's dense gradient",
            ),
            (
                rigl.clone().with_grow_init(GrowInit::RandomNormal(0.0)),
                "divisor",
            ),
            (set.clone().with_rigl_acc_scale(0.5), "rigl_acc_scale"),
            (rigl.clone().with_threshold_decay(1.0), "threshold decay"),
            (rigl.clone().with_weight_decay(-1.0), "weight decay"),
            (
                rigl.clone()
                    .with_end_step(-1)
                    .with_drop_anneal(DropAnneal::ExponentialK(1.0)),
                "needs an end step",
            ),
        ] {
            let e = bad.validate().unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        }
    }

    /// One layer after a RigL update: its new connections, weights, initial weights and dense
    /// gradient.
    type Grown = (Vec<bool>, Vec<f32>, Vec<f32>, Vec<f32>);

    /// One RigL update at step 0 (it trains nothing, so the stored weights are the initial
    /// ones) with `grow`, layer by layer.
    fn rigl_growth(grow: GrowInit) -> Vec<Grown> {
        let device = device();
        let dst = DstConfig::new(Method::Rigl)
            .with_end_step(100)
            .with_drop_fraction(0.5)
            .with_drop_anneal(DropAnneal::Constant)
            .with_grow_init(grow);
        let (model, mut trainer) = SparseTrainer::init(
            Mlp::new([6, 12, 10, 3], &device),
            &SparsityConfig::uniform(0.6),
            dst,
        )
        .unwrap();
        let before = masks(&model);
        let layers = model.sparse_layers();
        let initial = read_weights(&model, layers.iter().map(|l| l.path.as_str()));
        let grads = model.grads(0, 8, &device);
        let dense: Vec<Vec<f32>> = [&model.fc1, &model.fc2, &model.fc3]
            .iter()
            .map(|l| floats_to_host(grads.get::<2>(l.weight.id).unwrap().reshape([-1])))
            .collect();
        let out = trainer.step(model, &mut sgd(), 0.05, grads).unwrap();
        assert!(out.update.is_some() && !out.trained);
        let after = read_weights(&out.model, layers.iter().map(|l| l.path.as_str()));
        masks(&out.model)
            .into_iter()
            .zip(before)
            .zip(layers.iter().zip(dense))
            .map(|((now, old), (l, g))| {
                let new: Vec<bool> = now.iter().zip(&old).map(|(n, o)| *n && !*o).collect();
                (new, after[&l.path].clone(), initial[&l.path].clone(), g)
            })
            .collect()
    }

    #[test]
    fn grow_init_values_at_new_connections() {
        let total_new = |layers: &[Grown]| {
            layers
                .iter()
                .map(|l| l.0.iter().filter(|&&b| b).count())
                .sum::<usize>()
        };
        // grad_scale_2 and grad_sign_4: the dense gradient / 2, its sign / 4; elsewhere the
        // weights are untouched.
        let layers = rigl_growth(GrowInit::GradScale(2.0));
        assert!(total_new(&layers) > 0);
        for (new, w, w0, g) in &layers {
            for i in 0..new.len() {
                let expect = if new[i] { g[i] / 2.0 } else { w0[i] };
                assert_eq!(w[i], expect, "grad_scale at {i}");
            }
        }
        for (new, w, _, g) in &rigl_growth(GrowInit::GradSign(4.0)) {
            for i in (0..new.len()).filter(|&i| new[i]) {
                let sign = if g[i] == 0.0 { 0.0 } else { g[i].signum() };
                assert_eq!(w[i], sign * 0.25, "grad_sign at {i}");
            }
        }
        // random_normal_2: N(0, 1) samples of the layer's stream times std(W) / 2, with the
        // population deviation of all its stored weights.
        for ((new, w, w0, _), path) in rigl_growth(GrowInit::RandomNormal(2.0)).iter().zip([
            "fc1.weight",
            "fc2.weight",
            "fc3.weight",
        ]) {
            let n = w0.len() as f64;
            let mean = w0.iter().map(|&v| v as f64).sum::<f64>() / n;
            let std = (w0.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
            let z = normal_samples(0, path, 0, w0.len(), 1.0);
            for i in (0..new.len()).filter(|&i| new[i]) {
                let expect = z[i] as f64 * std / 2.0;
                assert!(
                    (w[i] as f64 - expect).abs() <= 1e-5 * (1.0 + expect.abs()),
                    "{path} {i}"
                );
            }
        }
        // random_uniform: U(-mean|W|, mean|W|).
        for (new, w, w0, _) in &rigl_growth(GrowInit::RandomUniform(1.0)) {
            let m = w0.iter().map(|v| v.abs()).sum::<f32>() / w0.len() as f32;
            for i in (0..new.len()).filter(|&i| new[i]) {
                assert!(
                    w[i].abs() <= m * (1.0 + 1e-5) && w[i] != 0.0,
                    "{} vs {m}",
                    w[i]
                );
            }
        }
        // initial_dist_2: distinct entries of a permutation of the initial weights, halved.
        for (new, w, w0, _) in &rigl_growth(GrowInit::InitialDist(2.0)) {
            let mut pool: Vec<u32> = w0.iter().map(|v| (v / 2.0).to_bits()).collect();
            for i in (0..new.len()).filter(|&i| new[i]) {
                let at = pool.iter().position(|&b| b == w[i].to_bits());
                assert!(at.is_some(), "{} is not an initial weight / 2", w[i]);
                pool.swap_remove(at.unwrap());
            }
        }
        // zeros.
        for (new, w, _, _) in &rigl_growth(GrowInit::Zeros) {
            assert!((0..new.len()).all(|i| !new[i] || w[i] == 0.0));
        }
    }

    #[test]
    fn initial_weights_are_kept_and_checkpointed_for_initial_dist() {
        let device = device();
        let dst = DstConfig::new(Method::Set).with_grow_init(GrowInit::InitialDist(1.0));
        let model = Mlp::new([6, 12, 10, 3], &device);
        let (model, trainer) =
            SparseTrainer::init(model, &SparsityConfig::uniform(0.6), dst).unwrap();
        let initial = floats_to_host(trainer.initial_weights()["fc2.weight"].clone());
        assert_eq!(
            initial,
            floats_to_host(model.fc2.weight.base().reshape([-1]))
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.ckpt");
        let optim = sgd();
        crate::save_checkpoint(&path, &model, &optim, &trainer, &HashMap::new()).unwrap();
        let fresh = Mlp::new([6, 12, 10, 3], &device);
        let r = crate::load_checkpoint(&path, fresh, sgd(), &device).unwrap();
        assert_eq!(
            floats_to_host(r.trainer.initial_weights()["fc2.weight"].clone()),
            initial
        );
        // Without initial_dist nothing is kept.
        let (_, plain) = SparseTrainer::init(
            Mlp::new([6, 12, 10, 3], &device),
            &SparsityConfig::uniform(0.6),
            DstConfig::new(Method::Set),
        )
        .unwrap();
        assert!(plain.initial_weights().is_empty());
    }

    #[test]
    fn rigl_acc_scale_starts_new_slots_at_a_multiple_of_the_gradient() {
        let device = device();
        let dst = DstConfig::new(Method::Rigl)
            .with_begin_step(3)
            .with_frequency(100)
            .with_end_step(100)
            .with_drop_fraction(0.5)
            .with_drop_anneal(DropAnneal::Constant)
            .with_rigl_acc_scale(0.5);
        let (mut model, mut trainer) = SparseTrainer::init(
            Mlp::new([6, 12, 10, 3], &device),
            &SparsityConfig::uniform(0.6),
            dst,
        )
        .unwrap();
        let mut optim = crate::SparseSgdConfig::new()
            .with_momentum(Some(MomentumConfig::new().with_dampening(0.0)))
            .init();
        let mut checked = 0;
        for i in 0..5 {
            let grads = model.grads(i, 8, &device);
            let update = trainer.is_update_step();
            let g = floats_to_host(grads.get::<2>(model.fc2.weight.id).unwrap().reshape([-1]));
            let v_before = optim.velocity(model.fc2.weight.id).map(floats_to_host);
            let m_before = bools_to_host(model.mask("fc2.weight").unwrap());
            let out = trainer.step(model, &mut optim, 0.05, grads).unwrap();
            model = out.model;
            if !update {
                continue;
            }
            let v = floats_to_host(optim.velocity(model.fc2.weight.id).unwrap());
            let v_before = v_before.unwrap();
            let m = bools_to_host(model.mask("fc2.weight").unwrap());
            for j in 0..m.len() {
                if m[j] && !m_before[j] {
                    assert_eq!(v[j], g[j] * 0.5, "new connection {j}");
                    checked += 1;
                } else {
                    assert_eq!(v[j].to_bits(), v_before[j].to_bits(), "elsewhere {j}");
                }
            }
        }
        assert!(checked > 0, "the test needs new connections");
    }

    #[test]
    fn snip_score_includes_the_l2_gradient() {
        let device = device();
        let sparsity = SparsityConfig::uniform(0.75);
        let base = Mlp::new([6, 8, 8, 3], &device);
        let lambda = 2.0f32;
        let (model, mut trainer) = SparseTrainer::init(
            base,
            &sparsity,
            DstConfig::new(Method::Snip).with_weight_decay(lambda as f64),
        )
        .unwrap();
        let grads = model.grads(0, 8, &device);
        let g = floats_to_host(grads.get::<2>(model.fc2.weight.id).unwrap().reshape([-1]));
        let w = floats_to_host(model.fc2.weight.base().reshape([-1]));
        let out = trainer.step(model, &mut sgd(), 0.05, grads).unwrap();
        let mask = bools_to_host(out.model.mask("fc2.weight").unwrap());
        // The kept connections are the 16 of largest |(g + lambda w) w| (ties to lower index).
        let score: Vec<f32> = g
            .iter()
            .zip(&w)
            .map(|(g, w)| ((g + w * lambda) * w).abs())
            .collect();
        let mut order: Vec<usize> = (0..score.len()).collect();
        order.sort_by(|&a, &b| score[b].total_cmp(&score[a]).then(a.cmp(&b)));
        let mut expect = vec![false; score.len()];
        for &i in &order[..16] {
            expect[i] = true;
        }
        assert_eq!(mask, expect);
        // Without the L2 term the choice differs for this lambda.
        let plain: Vec<f32> = g.iter().zip(&w).map(|(g, w)| (g * w).abs()).collect();
        let mut order: Vec<usize> = (0..plain.len()).collect();
        order.sort_by(|&a, &b| plain[b].total_cmp(&plain[a]).then(a.cmp(&b)));
        let mut without = vec![false; plain.len()];
        for &i in &order[..16] {
            without[i] = true;
        }
        assert_ne!(
            mask, without,
            "lambda must change the choice for the test to bite"
        );
    }

    fn check_new_connections_reset(optim_for: fn() -> ModuleOptimizer, name: &str) {
        let device = device();
        let dst = DstConfig::new(Method::Rigl)
            .with_frequency(3)
            .with_drop_fraction(0.5)
            .with_drop_anneal(DropAnneal::Constant);
        let (mut model, mut trainer) = SparseTrainer::init(
            Mlp::new([6, 12, 10, 3], &device),
            &SparsityConfig::uniform(0.6),
            dst,
        )
        .unwrap();
        let mut optim = optim_for();
        let mut checked = 0;
        let mut total_new = 0;
        for i in 0..10 {
            let grads = model.grads(i, 8, &device);
            let update_now = trainer.is_update_step();
            let state_before = optim_state(&optim);
            let masks_before = masks(&model);
            let out = trainer.step(model, &mut optim, 0.05, grads).unwrap();
            model = out.model;
            if !update_now || state_before.is_empty() {
                continue;
            }
            let state_after = optim_state(&optim);
            let layers = model.sparse_layers();
            let weights = read_weights(&model, layers.iter().map(|l| l.path.as_str()));
            for (li, l) in layers.iter().enumerate() {
                let new_mask = bools_to_host(l.mask.clone().unwrap());
                let new: Vec<bool> = new_mask
                    .iter()
                    .zip(&masks_before[li])
                    .map(|(n, o)| *n && !*o)
                    .collect();
                // A layer may regrow every dropped connection in place; the test needs new
                // connections somewhere (checked below), not in every layer.
                total_new += new.iter().filter(|&&b| b).count();
                let w = &weights[&l.path];
                assert!(
                    w.iter().zip(&new).all(|(w, n)| !*n || *w == 0.0),
                    "{name}: new weights start at 0"
                );
                for ((id, slot), after) in &state_after {
                    if *id != l.id.val() || after.len() != new.len() {
                        continue;
                    }
                    let before = &state_before[&(*id, slot.clone())];
                    for i in 0..new.len() {
                        if new[i] {
                            assert_eq!(after[i], 0.0, "{name}: slot {slot} at a new connection");
                        } else {
                            assert_eq!(
                                after[i].to_bits(),
                                before[i].to_bits(),
                                "{name}: slot {slot} elsewhere"
                            );
                        }
                    }
                    checked += 1;
                }
            }
        }
        assert!(checked > 0, "{name}: no optimizer slot was checked");
        assert!(total_new > 0, "{name}: the test needs new connections");
    }

    #[test]
    fn new_connections_zero_weight_and_optimizer_state_sgd_momentum() {
        check_new_connections_reset(sgd, "sgd nesterov");
        check_new_connections_reset(
            || {
                SgdConfig::new()
                    .with_momentum(Some(MomentumConfig::new()))
                    .init()
            },
            "sgd momentum",
        );
    }

    #[test]
    fn new_connections_zero_weight_and_optimizer_state_adam() {
        check_new_connections_reset(|| AdamConfig::new().init(), "adam");
        check_new_connections_reset(|| AdamWConfig::new().init(), "adamw");
    }

    /// A `SlotOptimizer` resets its slots on the device; Burn's optimizer through its record.
    /// Both runs must be the same bit for bit through every update, and every slot is zero at
    /// every new connection.
    fn check_slot_optimizer<R: crate::SlotRule>(
        burn_optim: fn() -> ModuleOptimizer,
        ours: fn() -> crate::SlotOptimizer<R>,
    ) {
        let device = device();
        for method in [
            Method::Rigl,
            Method::Set,
            Method::Snfs,
            Method::StaticRezero,
        ] {
            let name = format!("{} {method}", R::NAME);
            let dst = DstConfig::new(method)
                .with_frequency(3)
                .with_drop_fraction(0.5)
                .with_drop_anneal(DropAnneal::Constant);
            let sparsity = SparsityConfig::uniform(0.6);
            let net = Mlp::new([6, 12, 10, 3], &device);
            let (mut a, mut ta) = SparseTrainer::init(net.clone(), &sparsity, dst.clone()).unwrap();
            let (mut b, mut tb) = SparseTrainer::init(net, &sparsity, dst).unwrap();
            let (mut burn, mut ours) = (burn_optim(), ours());
            let mut new_seen = 0;
            for i in 0..12 {
                let ga = a.grads(i, 8, &device);
                a = ta.step(a, &mut burn, 0.05, ga).unwrap().model;
                let before = masks(&b);
                let gb = b.grads(i, 8, &device);
                let out = tb.step(b, &mut ours, 0.05, gb).unwrap();
                b = out.model;
                assert_eq!(masks(&a), masks(&b), "{name}: masks at call {i}");
                let paths: Vec<String> = b.sparse_layers().into_iter().map(|l| l.path).collect();
                let wa = read_weights(&a, paths.iter().map(String::as_str));
                let wb = read_weights(&b, paths.iter().map(String::as_str));
                for p in &paths {
                    let bits = |w: &Vec<f32>| w.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&wa[p]), bits(&wb[p]), "{name}: {p} at call {i}");
                }
                if method == Method::StaticRezero || out.update.is_none() {
                    continue;
                }
                for (l, old) in b.sparse_layers().into_iter().zip(before) {
                    let Some(state) = ours.state(l.id) else {
                        continue;
                    };
                    let m = bools_to_host(l.mask.unwrap());
                    for slot in &state.slots {
                        let v = floats_to_host(slot.clone());
                        for ((v, m), o) in v.iter().zip(&m).zip(&old) {
                            if *m && !*o {
                                assert_eq!(*v, 0.0, "{name}: a slot at a new connection");
                                new_seen += 1;
                            }
                        }
                    }
                }
            }
            if method != Method::StaticRezero {
                assert!(new_seen > 0, "{name}: the test needs new connections");
            }
        }
    }

    #[test]
    fn slot_optimizers_run_exactly_like_burn_optimizers() {
        use crate::{SparseAdamConfig, SparseAdamWConfig, SparseSgdConfig};
        fn momentum() -> MomentumConfig {
            MomentumConfig::new()
                .with_nesterov(true)
                .with_dampening(0.0)
        }
        check_slot_optimizer(
            || SgdConfig::new().with_momentum(Some(momentum())).init(),
            || {
                SparseSgdConfig::new()
                    .with_momentum(Some(momentum()))
                    .init()
            },
        );
        check_slot_optimizer(
            || AdamConfig::new().with_amsgrad(true).init(),
            || SparseAdamConfig::new().with_amsgrad(true).init(),
        );
        check_slot_optimizer(
            || AdamWConfig::new().with_weight_decay(1e-2).init(),
            || SparseAdamWConfig::new().with_weight_decay(1e-2).init(),
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(12))]
        #[test]
        fn nnz_is_conserved_through_every_update(
            dims in (2usize..9, 2usize..12, 2usize..10, 2usize..5),
            sparsity in 0.0f64..0.95,
            drop in 0.0f64..1.0,
            method in prop::sample::select(vec![Method::Set, Method::Snfs, Method::Rigl, Method::StaticRezero, Method::Scratch]),
            erk in any::<bool>(),
            seed in 0u64..1000,
        ) {
            let device = device();
            let model = Mlp::new([dims.0, dims.1, dims.2, dims.3], &device);
            let sparsity = if erk { SparsityConfig::erk(sparsity) } else { SparsityConfig::uniform(sparsity) }.with_seed(seed);
            let dst = DstConfig::new(method).with_frequency(2).with_drop_fraction(drop).with_drop_anneal(DropAnneal::Constant);
            let (model, mut trainer) = SparseTrainer::init(model, &sparsity, dst).unwrap();
            let target: Vec<usize> = trainer.plan().unwrap().layers.iter().map(|l| l.n_active).collect();
            prop_assert_eq!(nnz(&model), target.clone());
            let mut optim = sgd();
            let mut ok = true;
            run(model, &mut trainer, &mut optim, 7, |m, _, _| ok &= nnz(m) == target);
            prop_assert!(ok);
        }
    }
}
