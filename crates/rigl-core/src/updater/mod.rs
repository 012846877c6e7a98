//! Mask updaters: one trait, one file per algorithm.
//!
//! | method | file | mask changes | grows by |
//! |---|---|---|---|
//! | `scratch` | [`Scratch`] | never (the initial random mask is kept) | - |
//! | `static_rezero` | [`StaticRezero`] | never; re-zeroes the lowest-magnitude weights | - |
//! | `set` | [`Set`] | drop by \|w\|, grow | random (counter-based) |
//! | `snfs` | [`Snfs`] | drop by \|w\|, grow | \|EMA of the dense gradient\| |
//! | `rigl` | [`Rigl`] | drop by \|w\|, grow | \|dense gradient\| |
//! | `snip` | [`Snip`] | once, at the first step | keeps top \|g * w\| |
//! | `prune` | [`GradualPruning`] | prunes on a cubic schedule | - |
//! | `ste` | [`SteMagnitude`] | every step: top \|w\| of the dense weights (straight-through) | - |

#[cfg(any(test, feature = "catalogue"))]
pub mod catalogue;
pub(crate) mod drop_grow;
mod global_top_k;
mod gradual_pruning;
mod rigl;
mod scratch;
mod set;
mod snfs;
mod snip;
mod static_rezero;
mod ste_magnitude;

pub use global_top_k::{PruningScope, global_top_k_mask, scoped_top_k_mask};
pub use gradual_pruning::GradualPruning;
pub use rigl::Rigl;
pub use scratch::Scratch;
pub use set::Set;
pub use snfs::Snfs;
pub use snip::Snip;
pub use static_rezero::StaticRezero;
pub use ste_magnitude::SteMagnitude;

use crate::Method;
use crate::error::{Result, SparsityError};
use crate::mask::bools_to_host;
use crate::structure::Groups;
use burn::tensor::kind::Basic;
use burn::tensor::{Bool, Device, Tensor, TensorData};
use rigl_kernels::{Segment, SelectError};

/// One masked layer's place in the flat buffers of an [`UpdateInput`].
#[derive(Clone, Debug, PartialEq)]
pub struct LayerSlot {
    /// Parameter path (keys the random stream and names the layer in errors).
    pub path: String,
    /// First position of the layer in the flat buffers.
    pub offset: usize,
    /// Number of weights of the layer.
    pub len: usize,
    /// Number of active connections before the update.
    pub n_active: usize,
    /// The planned number of active weights at the end of training.
    pub target_active: usize,
    /// The planned sparsity at the end of training (gradual pruning ramps towards it).
    pub target_sparsity: f64,
    /// The groups of a structured layer, whose buffers then hold the output-major view (see
    /// [`crate::Structure`] and [`UpdateInput::with_structure`]); `None`: unstructured.
    pub groups: Option<Groups>,
    /// Whether the layer's sparsity is the distribution's (not a custom or first/last-layer
    /// value): the layers a global ranking ([`PruningScope::Global`]) pools.
    pub global: bool,
}

impl LayerSlot {
    /// `t` (flat, this layer's values in the stored layout) in the layout of the buffers: the
    /// output-major view for a structured layer.
    pub fn view<K: Basic>(&self, t: Tensor<1, K>) -> Tensor<1, K> {
        match &self.groups {
            Some(g) => g.to_view(t),
            None => t,
        }
    }
}

/// Selection segments over the layers of an [`UpdateInput`]: one per unstructured layer, one
/// per group of a structured one, with the layer each belongs to.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LayerSegments {
    /// The segments, in buffer order.
    pub segments: Vec<Segment>,
    /// Per segment, the index of its layer.
    pub layer_of: Vec<usize>,
}

/// What an updater sees at an update: every masked layer, concatenated (flat, row-major, in
/// [`layers`](Self::layers) order) into buffers on the model's device, without autodiff.
///
/// Every updater decides all layers at once: SET, SNFS and RigL with one
/// [`rigl_kernels::drop_grow()`] call, the others with one segmented
/// [`rigl_kernels::segmented_top_k_mask`] per selection; the CubeCL kernels on wgpu and CUDA,
/// the parallel radix select on the CPU.
#[derive(Clone, Debug)]
pub struct UpdateInput {
    /// The layers, with their offsets in the buffers.
    pub layers: Vec<LayerSlot>,
    /// Stored weights.
    pub weights: Tensor<1>,
    /// Current masks.
    pub mask: Tensor<1, Bool>,
    /// Dense gradient `dL/d(w*m)` of this batch, when the method asked for it.
    pub dense_grad: Option<Tensor<1>>,
}

/// Host values of one layer, to build an [`UpdateInput`] with [`UpdateInput::from_host`].
#[derive(Clone, Copy, Debug)]
pub struct HostLayer<'a> {
    /// Parameter path.
    pub path: &'a str,
    /// Stored weights.
    pub weights: &'a [f32],
    /// Current mask.
    pub mask: &'a [bool],
    /// Dense gradient, if any.
    pub dense_grad: Option<&'a [f32]>,
    /// The planned number of active weights at the end of training.
    pub target_active: usize,
}

impl UpdateInput {
    /// An input from host values, on `device` (tests and offline analysis).
    ///
    /// # Panics
    /// If a layer's buffers differ in length, or some layers carry a gradient and
    /// others do not.
    pub fn from_host(layers: &[HostLayer<'_>], device: &Device) -> Self {
        let mut slots = Vec::with_capacity(layers.len());
        let mut offset = 0;
        for l in layers {
            let len = l.mask.len();
            assert_eq!(
                l.weights.len(),
                len,
                "weights and mask of `{}` differ",
                l.path
            );
            slots.push(LayerSlot {
                path: l.path.to_string(),
                offset,
                len,
                n_active: l.mask.iter().filter(|&&b| b).count(),
                target_active: l.target_active,
                target_sparsity: 1.0 - l.target_active as f64 / len.max(1) as f64,
                groups: None,
                global: true,
            });
            offset += len;
        }
        let floats = |values: Vec<f32>| {
            let n = values.len();
            Tensor::<1>::from_data(TensorData::new(values, [n]), device)
        };
        let optional = |get: for<'b> fn(&'b HostLayer<'_>) -> Option<&'b [f32]>| {
            let parts: Vec<&[f32]> = layers.iter().filter_map(get).collect();
            if parts.is_empty() {
                return None;
            }
            assert_eq!(parts.len(), layers.len(), "some layers lack an input");
            Some(floats(parts.concat()))
        };
        let mask: Vec<bool> = layers.iter().flat_map(|l| l.mask.iter().copied()).collect();
        Self {
            weights: floats(
                layers
                    .iter()
                    .flat_map(|l| l.weights.iter().copied())
                    .collect(),
            ),
            mask: Tensor::<1, Bool>::from_data(TensorData::new(mask, [offset]), device),
            dense_grad: optional(|l| l.dense_grad),
            layers: slots,
        }
    }

    /// The same input with the layers of `groups` structured: their slots carry the groups and
    /// their parts of the buffers become output-major views. `groups` has one entry per layer.
    ///
    /// # Panics
    /// If `groups` does not have one entry per layer, or a layer's groups do not cover it.
    pub fn with_structure(mut self, groups: &[Option<Groups>]) -> Self {
        assert_eq!(groups.len(), self.layers.len(), "one structure per layer");
        if groups.iter().all(Option::is_none) {
            return self;
        }
        for (l, g) in self.layers.iter_mut().zip(groups) {
            if let Some(g) = g {
                assert_eq!(g.rows * g.fan_in, l.len, "the groups of `{}`", l.path);
            }
            l.groups = *g;
        }
        self.weights = self.to_view(self.weights.clone());
        self.mask = self.to_view(self.mask.clone());
        self.dense_grad = self.dense_grad.clone().map(|g| self.to_view(g));
        self
    }

    /// A flat buffer in the stored layout of every layer, in the layout of these buffers.
    pub fn to_view<K: Basic>(&self, t: Tensor<1, K>) -> Tensor<1, K> {
        self.relayout(t, true)
    }

    /// A flat buffer in the layout of these buffers (an [`UpdateDecision`]'s masks), in the
    /// stored layout of every layer.
    pub fn to_stored<K: Basic>(&self, t: Tensor<1, K>) -> Tensor<1, K> {
        self.relayout(t, false)
    }

    fn relayout<K: Basic>(&self, t: Tensor<1, K>, to_view: bool) -> Tensor<1, K> {
        if self.layers.iter().all(|l| l.groups.is_none()) {
            return t;
        }
        let parts = self
            .layers
            .iter()
            .map(|l| {
                let part = t.clone().narrow(0, l.offset, l.len);
                match (&l.groups, to_view) {
                    (Some(g), true) => g.to_view(part),
                    (Some(g), false) => g.from_view(part),
                    (None, _) => part,
                }
            })
            .collect();
        Tensor::cat(parts, 0)
    }

    /// Segments selecting `k(layer)` in each unstructured layer and `per_group(layer, groups)`
    /// in each group of a structured one.
    pub fn layer_segments(
        &self,
        k: impl Fn(&LayerSlot) -> usize,
        per_group: impl Fn(&LayerSlot, &Groups) -> usize,
    ) -> LayerSegments {
        let mut out = LayerSegments::default();
        for (i, l) in self.layers.iter().enumerate() {
            match &l.groups {
                None => {
                    out.segments.push(Segment {
                        offset: l.offset,
                        len: l.len,
                        k: k(l),
                    });
                    out.layer_of.push(i);
                }
                Some(g) => {
                    let kg = per_group(l, g);
                    let segs = g.segments(l.offset, |_| kg);
                    out.layer_of.extend(std::iter::repeat_n(i, segs.len()));
                    out.segments.extend(segs);
                }
            }
        }
        out
    }

    /// The error of a selection over segments of `layers`, naming the layer its segment belongs
    /// to.
    pub fn select_error_in(&self, source: SelectError, layer_of: &[usize]) -> SparsityError {
        let segment = match source {
            SelectError::KTooLarge { segment, .. }
            | SelectError::SegmentOutOfBounds { segment, .. }
            | SelectError::SegmentTooLong { segment, .. }
            | SelectError::OverlappingSegments { segment } => Some(segment),
            SelectError::EligibleLength { .. } | SelectError::TooManyPositions { .. } => None,
        };
        let path = segment
            .and_then(|s| layer_of.get(s))
            .and_then(|&l| self.layers.get(l))
            .map(|l| l.path.clone())
            .unwrap_or_else(|| "<all masked layers>".to_string());
        SparsityError::Select { path, source }
    }

    /// Total number of positions in the buffers.
    pub fn len(&self) -> usize {
        self.layers.last().map(|l| l.offset + l.len).unwrap_or(0)
    }

    /// Whether there is no layer.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A Bool buffer with no position set.
    pub fn nothing(&self) -> Tensor<1, Bool> {
        Tensor::<1, Bool>::zeros([self.len()], &self.device())
    }

    /// The device of the buffers.
    pub fn device(&self) -> Device {
        self.mask.device()
    }

    /// One selection segment per layer, selecting `k(layer)` positions.
    pub fn segments(&self, k: impl Fn(&LayerSlot) -> usize) -> Vec<Segment> {
        self.layers
            .iter()
            .map(|l| Segment {
                offset: l.offset,
                len: l.len,
                k: k(l),
            })
            .collect()
    }

    /// The error of a selection with one segment per layer, naming the layer it concerns.
    pub fn select_error(&self, source: SelectError) -> SparsityError {
        let identity: Vec<usize> = (0..self.layers.len()).collect();
        self.select_error_in(source, &identity)
    }

    /// The dense gradient, or the error naming what is missing.
    ///
    /// # Errors
    /// [`SparsityError::MissingInput`] when the update has no dense gradient.
    pub fn require_dense_grad(&self) -> Result<Tensor<1>> {
        self.dense_grad
            .clone()
            .ok_or_else(|| self.missing("the dense gradient"))
    }

    pub(crate) fn missing(&self, what: &'static str) -> SparsityError {
        SparsityError::MissingInput {
            path: self
                .layers
                .first()
                .map(|l| l.path.clone())
                .unwrap_or_default(),
            what,
        }
    }
}

/// What an update did to one layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerChange {
    /// Active connections after the update.
    pub active: usize,
    /// Positions reset (see [`UpdateDecision::reset`]).
    pub reset: usize,
    /// Connections switched off.
    pub dropped: usize,
}

/// What an update decides, over the flat buffers of its [`UpdateInput`].
#[derive(Clone, Debug)]
pub struct UpdateDecision {
    /// The new masks.
    pub mask: Tensor<1, Bool>,
    /// Positions whose weight is set to the grow initialisation and whose optimizer slots are
    /// zeroed: the new connections (and, for `static_rezero`, the re-zeroed weights).
    pub reset: Tensor<1, Bool>,
    /// Per layer, what changed, when the decision counted it (drop and grow do); otherwise the
    /// trainer counts it from the masks.
    pub changes: Option<Vec<LayerChange>>,
}

impl UpdateDecision {
    /// The new masks and the reset positions, read to the host.
    pub fn to_host(&self) -> (Vec<bool>, Vec<bool>) {
        (
            bools_to_host(self.mask.clone()),
            bools_to_host(self.reset.clone()),
        )
    }
}

/// Schedule-dependent inputs of an update.
#[derive(Clone, Copy, Debug)]
pub struct UpdateContext {
    /// The step of the update.
    pub step: i64,
    /// The drop fraction at this step.
    pub drop_fraction: f64,
    /// Seed of the counter-based generator.
    pub seed: u64,
    /// Whether a connection dropped in an update may be regrown in the same update.
    pub allow_regrow: bool,
    /// The schedule's begin and end steps (for gradual pruning).
    pub begin_step: i64,
    /// See `begin_step`.
    pub end_step: i64,
    /// Gradual pruning's threshold smoothing (model_pruning's `threshold_decay`; 0: none).
    pub threshold_decay: f64,
    /// The L2 coefficient of the training loss on the kernels, whose gradient `lambda * w`
    /// SNIP's score includes (see [`DstConfig::weight_decay`](crate::DstConfig::weight_decay)).
    pub weight_decay: f64,
}

impl Default for UpdateContext {
    /// Step 0, drop fraction 0.3, seed 0, regrowth allowed, schedule from 0 without end, no
    /// threshold smoothing, no L2.
    fn default() -> Self {
        Self {
            step: 0,
            drop_fraction: 0.3,
            seed: 0,
            allow_regrow: true,
            begin_step: 0,
            end_step: -1,
            threshold_decay: 0.0,
            weight_decay: 0.0,
        }
    }
}

/// The named flat tensors a method keeps between steps (SNFS's averages, gradual pruning's
/// thresholds), as checkpoints store them.
pub type MethodState = Vec<(String, Tensor<1>)>;

/// A mask-update algorithm, with the state it keeps between updates.
pub trait MaskUpdater: Send + Sync {
    /// The method this updater implements.
    fn method(&self) -> Method;

    /// Whether masks start all ones: the method chooses them later (SNIP, gradual pruning).
    fn starts_dense(&self) -> bool {
        false
    }

    /// Sees the dense gradient `dL/d(w*m)` of the masked layer at `path` at every step that
    /// computed one, before the optimizer step (SNFS updates its moving average here).
    fn observe(&mut self, path: &str, dense_grad: &Tensor<1>) {
        let _ = (path, dense_grad);
    }

    /// The state the method keeps between steps, for checkpoints (empty: none).
    fn state(&self) -> MethodState {
        Vec::new()
    }

    /// The length of the state tensor this method keeps for a masked layer of `numel` weights
    /// (SNFS's moving average: `numel`; gradual pruning's threshold: 1).
    fn state_len(&self, numel: usize) -> usize {
        numel
    }

    /// The fewest and most active weights a mask of `layer` may hold after `updates` mask
    /// updates (checked when a checkpoint is loaded): exactly the plan's count for methods
    /// that keep it; for SNIP before its shot and gradual pruning, between the final count and
    /// every weight.
    fn active_bounds(&self, layer: &crate::plan::PlannedLayer, updates: u64) -> (usize, usize) {
        let _ = updates;
        if self.starts_dense() {
            (layer.n_active, layer.numel())
        } else {
            (layer.n_active, layer.n_active)
        }
    }

    /// Restore a [`state`](Self::state).
    ///
    /// # Errors
    /// [`SparsityError::InvalidSetting`] when the state is not this method's.
    fn load_state(&mut self, state: MethodState) -> Result<()> {
        match state.first() {
            None => Ok(()),
            Some((name, _)) => Err(SparsityError::InvalidSetting(format!(
                "method {} keeps no state, but the checkpoint holds `{name}`",
                self.method()
            ))),
        }
    }

    /// A boxed copy, state included.
    fn box_clone(&self) -> Box<dyn MaskUpdater>;

    /// Whether the method updates its masks at every step, whatever the schedule's frequency,
    /// begin and end (straight-through pruning).
    fn every_step(&self) -> bool {
        false
    }

    /// Whether the optimizer steps on the dense gradient `dL/d(w*m)` at every position,
    /// pruned ones included (straight-through pruning), instead of the gradient masked to the
    /// active connections.
    fn straight_through(&self) -> bool {
        false
    }

    /// Whether the method ever changes masks or weights (false: `scratch`).
    fn updates(&self) -> bool {
        true
    }

    /// Whether the method needs the dense gradient `dL/d(w*m)` at step `t`.
    fn needs_dense_gradient(&self, is_update_step: bool) -> bool {
        let _ = is_update_step;
        false
    }

    /// Whether an update step also trains by default (the optimizer step before the mask
    /// update). RigL and SNIP do not: that batch only updates the mask and the step counter
    /// does not advance.
    fn trains_on_update_step(&self) -> bool {
        true
    }

    /// The step an update decided after the optimizer step at step counter `t` sees: the
    /// step its schedule ([`UpdateSchedule::is_update_step`](crate::UpdateSchedule::is_update_step))
    /// and drop fraction are evaluated at, the step its random streams are keyed by and the
    /// one [`UpdateStats::step`](crate::UpdateStats::step) reports.
    ///
    /// In the reference, SET, SNFS, `static` and model_pruning's gradual pruning apply the
    /// gradients first, and the optimizer increments the global step before the mask-update
    /// condition is evaluated (`control_dependencies([optimizer_update])`): they see `t + 1`.
    /// With `begin_step = b > 0` they update after batch `b - 1`, and with
    /// `end_step % frequency == 0` there is no update at `t = end_step`. RigL and SNIP decide
    /// instead of the optimizer step and see `t` (this default is overridden by them).
    fn schedule_step(&self, t: i64) -> i64 {
        t + 1
    }

    /// The `last_update` before any update: `-frequency` (the reference's
    /// `last_mask_update_step` initialiser, so that the first update may come at once); gradual
    /// pruning overrides it with model_pruning's 0.
    fn initial_last_update(&self, schedule: &crate::UpdateSchedule) -> i64 {
        schedule.initial_last_update()
    }

    /// Whether the method updates at most once (SNIP).
    fn one_shot(&self) -> bool {
        false
    }

    /// Decide the new masks of all layers of `input`.
    ///
    /// # Errors
    /// Selection errors (NaN scores leaving too few candidates), naming the layer; a missing
    /// input (dense gradient, moving average).
    fn update(&mut self, ctx: &UpdateContext, input: &UpdateInput) -> Result<UpdateDecision>;
}
