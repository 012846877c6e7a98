//! FLOP and model-size counting with the conventions of the RigL paper's tables: the MicroNet
//! challenge rules applied to the maskable layers.
//!
//! Per layer, with `s` its sparsity, `N` its number of weights and `n_out` its number of output
//! elements (`h_out * w_out * c_out`; `c_out` for a dense layer):
//!
//! - multiplies: `n_out * k_h * k_w * c_in * (1 - s)` plus `n_out` for the ReLU (counted as a
//!   multiply); adds: `n_out * (k_h * k_w * c_in * (1 - s) - 1)` plus `n_out` for the bias.
//!   Every maskable layer is charged a bias and a ReLU, whether it has them or not; batch norm,
//!   pooling, residual adds and softmax are not counted. FLOPs = multiplies + adds.
//! - A depthwise kernel is counted as the reference counts it, like a convolution with
//!   `c_in = channels` and `c_out = 1` (one bias, one output channel).
//! - Output size with 'same' padding, `ceil((in - k + 1 + 2 * (k / 2)) / stride)`, on the input
//!   as the reference's network feeds it ([`SpatialRule::Reference`]), or the Burn module's
//!   real output size ([`SpatialRule::Actual`]).
//! - Bits: `N * 32 * (1 - s)` (fractional), plus `N` mask bits when `s > 0`, plus `32 * c_out`
//!   for the bias. Megabytes are decimal: `bits / 8e6`.
//! - Training FLOPs per step, with `f_S` and `f_D` the sparse and dense forward FLOPs: dense
//!   `3 f_D`; static, SET and SNIP `3 f_S`; SNFS `2 f_S + f_D`; RigL
//!   `(3 f_S dT + 2 f_S + f_D) / (dT + 1)`; gradual pruning the mean of `3 f_{S_t}` over the
//!   run. The training ratio is the per-step cost times the training-length multiplier over
//!   `3 f_D`.

use crate::error::{ModelError, Result};
use crate::spec::{LayerKind, LayerSpec, SparseArchitecture, check_layers};
use burn::module::Module;
use rigl_core::{SparsityConfig, SparsityPlan, kernel_params, n_ones};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Bits per stored weight or bias.
pub const PARAM_BITS: f64 = 32.0;

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

/// How a network is trained, for the training-FLOPs estimate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrainingMethod {
    /// Dense training: `3 f_D` per step.
    Dense,
    /// A fixed sparse mask (the reference's `scratch`): `3 f_S`.
    Static,
    /// SET: `3 f_S` (random growth needs no dense gradient).
    Set,
    /// SNIP: one-shot pruning at step 0, then a fixed mask: `3 f_S`.
    Snip,
    /// SNFS: the dense gradient at every step, `2 f_S + f_D`.
    Snfs,
    /// RigL: the dense gradient every `delta_t` steps,
    /// `(3 f_S dT + 2 f_S + f_D) / (dT + 1)`.
    #[default]
    Rigl,
    /// Gradual magnitude pruning (Zhu & Gupta): the mean of `3 f_{S_t}` over the run.
    Pruning,
}

impl TrainingMethod {
    /// The short name (`dense`, `static`, `set`, `snip`, `snfs`, `rigl`, `pruning`).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Dense => "dense",
            Self::Static => "static",
            Self::Set => "set",
            Self::Snip => "snip",
            Self::Snfs => "snfs",
            Self::Rigl => "rigl",
            Self::Pruning => "pruning",
        }
    }
}

impl core::fmt::Display for TrainingMethod {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

impl core::str::FromStr for TrainingMethod {
    type Err = String;

    fn from_str(s: &str) -> core::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "dense" | "baseline" => Ok(Self::Dense),
            "static" | "scratch" => Ok(Self::Static),
            "set" => Ok(Self::Set),
            "snip" => Ok(Self::Snip),
            "snfs" => Ok(Self::Snfs),
            "rigl" => Ok(Self::Rigl),
            "pruning" | "prune" | "gmp" => Ok(Self::Pruning),
            other => Err(format!(
                "unknown training method `{other}`: expected dense, static, set, snip, snfs, rigl or pruning"
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
    /// The training method.
    pub method: TrainingMethod,
    /// Steps between mask updates (RigL) or pruning steps (gradual pruning).
    pub delta_t: u64,
    /// Training-length multiplier (the reference's `training_steps_multiplier`).
    pub multiplier: f64,
    /// The gradual-pruning schedule (used by [`TrainingMethod::Pruning`] only).
    pub pruning: PruningSchedule,
}

impl Default for TrainingOptions {
    fn default() -> Self {
        Self {
            method: TrainingMethod::Rigl,
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
        if self.method == TrainingMethod::Pruning {
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
}

/// The count of one layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerCount {
    /// Parameter path.
    pub path: String,
    /// Conv, depthwise or dense.
    pub kind: LayerKind,
    /// Kernel shape (Burn layout).
    pub shape: Vec<usize>,
    /// Whether the layer carries a mask.
    pub masked: bool,
    /// Sparsity used for counting.
    pub sparsity: f64,
    /// Number of weights.
    pub numel: usize,
    /// Active weights, `N - floor(s * N)`.
    pub nnz: usize,
    /// Spatial size of the input the count uses.
    pub input_size: [usize; 2],
    /// Spatial size of the output the count uses.
    pub output_size: [usize; 2],
    /// Multiplies (ReLU included).
    pub mults: f64,
    /// Adds (bias included).
    pub adds: f64,
    /// `mults + adds`.
    pub flops: f64,
    /// Storage in bits (weights, mask, bias).
    pub bits: f64,
}

/// The training-FLOPs estimate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainingCount {
    /// The method.
    pub method: TrainingMethod,
    /// Steps between mask updates.
    pub delta_t: u64,
    /// Training-length multiplier.
    pub multiplier: f64,
    /// FLOPs of one training step (mean over the run for gradual pruning).
    pub flops_per_step: f64,
    /// FLOPs of one dense training step, `3 f_D`.
    pub dense_flops_per_step: f64,
    /// `multiplier * flops_per_step / dense_flops_per_step`.
    pub flops_ratio: f64,
}

/// Totals over the counted layers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CountTotals {
    /// Weights over all counted kernels.
    pub numel: usize,
    /// Active weights.
    pub nnz: usize,
    /// Global sparsity, `1 - nnz / numel`.
    pub sparsity: f64,
    /// Inference FLOPs of the (sparse) model, per example.
    pub inference_flops: f64,
    /// Inference FLOPs of the dense model.
    pub dense_inference_flops: f64,
    /// `inference_flops / dense_inference_flops`.
    pub inference_flops_ratio: f64,
    /// Training FLOPs over dense training FLOPs (see [`TrainingCount`]).
    pub training_flops_ratio: f64,
    /// Storage in bits.
    pub bits: f64,
    /// Storage in decimal megabytes, `bits / 8e6`.
    pub size_mb: f64,
    /// Storage of the dense model in decimal megabytes.
    pub dense_size_mb: f64,
}

/// The count of a whole model: one row per counted layer (every maskable kernel, masked or
/// not), the totals and the training estimate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelCount {
    /// Model name.
    pub model: String,
    /// Spatial rule used.
    pub spatial: SpatialRule,
    /// Every counted layer, in forward order.
    pub layers: Vec<LayerCount>,
    /// Totals.
    pub totals: CountTotals,
    /// The training estimate.
    pub training: TrainingCount,
}

/// 'Same'-padding output size of the reference counter.
fn same_output(input: usize, kernel: usize, stride: usize) -> usize {
    let num = (input + 2 * (kernel / 2) + 1).saturating_sub(kernel);
    num.div_ceil(stride.max(1))
}

/// Count one layer at `sparsity`.
pub fn count_layer(spec: &LayerSpec, sparsity: f64, masked: bool, rule: SpatialRule) -> LayerCount {
    let [k_h, k_w] = spec.kernel_size();
    let (c_in, c_out) = match spec.kind {
        LayerKind::Dense => (spec.shape[0], spec.shape[1]),
        LayerKind::Conv => (spec.in_channels_per_group(), spec.out_channels()),
        // The reference counts a [k, k, C, 1] depthwise kernel like a convolution.
        LayerKind::Depthwise => (spec.out_channels(), 1),
    };
    let (input_size, output_size) = match (spec.kind, rule) {
        (LayerKind::Dense, _) => ([1, 1], [1, 1]),
        (_, SpatialRule::Actual) => (spec.input_size, spec.output_size),
        (_, SpatialRule::Reference) => {
            let i = spec.counted_input_size;
            (
                i,
                [
                    same_output(i[0], k_h, spec.stride[0]),
                    same_output(i[1], k_w, spec.stride[1]),
                ],
            )
        }
    };
    let density = 1.0 - sparsity;
    let n_out = (output_size[0] * output_size[1] * c_out) as f64;
    let vector = (k_h * k_w * c_in) as f64 * density;
    let mults = vector * n_out + n_out;
    let adds = (vector - 1.0) * n_out + n_out;
    let numel = spec.numel();
    let mut bits = numel as f64 * PARAM_BITS * density + c_out as f64 * PARAM_BITS;
    if sparsity > 0.0 {
        bits += numel as f64;
    }
    LayerCount {
        path: spec.path.clone(),
        kind: spec.kind,
        shape: spec.shape.clone(),
        masked,
        sparsity,
        numel,
        nnz: n_ones(sparsity.clamp(0.0, 1.0), numel),
        input_size,
        output_size,
        mults,
        adds,
        flops: mults + adds,
        bits,
    }
}

/// Forward FLOPs of `layers` at `sparsities`.
fn forward_flops(layers: &[LayerSpec], sparsities: &[f64], rule: SpatialRule) -> f64 {
    layers
        .iter()
        .zip(sparsities)
        .map(|(l, &s)| count_layer(l, s, s > 0.0, rule).flops)
        .sum()
}

/// Per-step training FLOPs of `method` from `f_s` and `f_d`.
fn step_flops(method: TrainingMethod, delta_t: u64, f_s: f64, f_d: f64) -> f64 {
    match method {
        TrainingMethod::Dense => 3.0 * f_d,
        TrainingMethod::Static | TrainingMethod::Set | TrainingMethod::Snip => 3.0 * f_s,
        TrainingMethod::Snfs => 2.0 * f_s + f_d,
        TrainingMethod::Rigl | TrainingMethod::Pruning => {
            let dt = delta_t as f64;
            (3.0 * f_s * dt + 2.0 * f_s + f_d) / (dt + 1.0)
        }
    }
}

/// The sparsity in force at each step of a pruning run, as `(first step, steps, s_t)` runs.
fn pruning_segments(final_sparsity: f64, t: &TrainingOptions) -> Vec<(u64, u64, f64)> {
    let p = t.pruning;
    let span = (p.end_step - p.begin_step) as f64;
    let mut events: Vec<u64> = (p.begin_step..p.end_step)
        .step_by(t.delta_t as usize)
        .collect();
    events.push(p.end_step);
    let mut segments = vec![(0, p.begin_step.min(p.total_steps), 0.0)];
    for (i, &e) in events.iter().enumerate() {
        if e >= p.total_steps {
            break;
        }
        let next = events.get(i + 1).copied().unwrap_or(u64::MAX);
        let len = next.min(p.total_steps) - e;
        let frac = ((e - p.begin_step) as f64 / span).clamp(0.0, 1.0);
        segments.push((e, len, final_sparsity * (1.0 - (1.0 - frac).powi(3))));
    }
    segments.retain(|s| s.1 > 0);
    segments
}

/// What gradual pruning needs: per-layer sparsities at any global sparsity, and the final
/// global sparsity.
struct Replan<'a> {
    at: &'a dyn Fn(f64) -> Result<Vec<f64>>,
    final_sparsity: f64,
}

/// The count from per-layer sparsities (and, from masks, exact active counts).
fn count_sparsities(
    model: &str,
    layers: &[LayerSpec],
    sparsities: &[f64],
    masked: &[bool],
    nnz: Option<&[usize]>,
    options: &CountOptions,
    replan: Option<Replan<'_>>,
) -> Result<ModelCount> {
    let t = options.training;
    t.validate()?;
    let rule = options.spatial;
    let mut rows: Vec<LayerCount> = layers
        .iter()
        .zip(sparsities)
        .zip(masked)
        .map(|((l, &s), &m)| count_layer(l, s, m, rule))
        .collect();
    if let Some(nnz) = nnz {
        for (row, &n) in rows.iter_mut().zip(nnz) {
            row.nnz = n;
        }
    }
    let dense: Vec<LayerCount> = layers
        .iter()
        .map(|l| count_layer(l, 0.0, false, rule))
        .collect();
    let f_s: f64 = rows.iter().map(|r| r.flops).sum();
    let f_d: f64 = dense.iter().map(|r| r.flops).sum();
    let bits: f64 = rows.iter().map(|r| r.bits).sum();
    let dense_bits: f64 = dense.iter().map(|r| r.bits).sum();
    let numel: usize = rows.iter().map(|r| r.numel).sum();
    let nnz: usize = rows.iter().map(|r| r.nnz).sum();

    let flops_per_step = if t.method == TrainingMethod::Pruning {
        let Some(replan) = replan else {
            return Err(ModelError::InvalidCountOption(
                "gradual pruning is counted from a sparsity configuration (its intermediate sparsities need their own plans), not from a fixed plan or model".into(),
            ));
        };
        let mut total = 0.0;
        for (_, len, s) in pruning_segments(replan.final_sparsity, &t) {
            let f = if s > 0.0 {
                forward_flops(layers, &(replan.at)(s)?, rule)
            } else {
                f_d
            };
            total += 3.0 * f * len as f64;
        }
        total / t.pruning.total_steps as f64
    } else {
        step_flops(t.method, t.delta_t, f_s, f_d)
    };
    let training = TrainingCount {
        method: t.method,
        delta_t: t.delta_t,
        multiplier: t.multiplier,
        flops_per_step,
        dense_flops_per_step: 3.0 * f_d,
        flops_ratio: t.multiplier * flops_per_step / (3.0 * f_d),
    };
    Ok(ModelCount {
        model: model.to_string(),
        spatial: rule,
        layers: rows,
        totals: CountTotals {
            numel,
            nnz,
            sparsity: if numel == 0 {
                0.0
            } else {
                1.0 - nnz as f64 / numel as f64
            },
            inference_flops: f_s,
            dense_inference_flops: f_d,
            inference_flops_ratio: f_s / f_d,
            training_flops_ratio: training.flops_ratio,
            bits,
            size_mb: bits / 8e6,
            dense_size_mb: dense_bits / 8e6,
        },
        training,
    })
}

/// Per-layer sparsities of `plan` in the order of `layers`.
fn plan_sparsities(layers: &[LayerSpec], plan: &SparsityPlan) -> Result<(Vec<f64>, Vec<bool>)> {
    let by_path: HashMap<&str, _> = plan.layers.iter().map(|l| (l.path.as_str(), l)).collect();
    let mut s = Vec::with_capacity(layers.len());
    let mut m = Vec::with_capacity(layers.len());
    for l in layers {
        let p = by_path.get(l.path.as_str()).ok_or_else(|| {
            ModelError::LayerMismatch(format!("the plan has no layer `{}`", l.path))
        })?;
        if p.shape.dims != l.shape {
            return Err(ModelError::LayerMismatch(format!(
                "`{}` has shape {:?} in the plan and {:?} in the layer list",
                l.path, p.shape.dims, l.shape
            )));
        }
        s.push(p.sparsity);
        m.push(p.masked);
    }
    Ok((s, m))
}

/// Count a model from its configuration and a sparsity configuration, without building any
/// weights. Every maskable kernel is counted, unmasked ones as dense.
///
/// ```
/// use rigl_core::SparsityConfig;
/// use rigl_models::counter::{CountOptions, count};
/// use rigl_models::ResNetConfig;
/// let dense = count(&ResNetConfig::resnet50(), &SparsityConfig::uniform(0.0), &CountOptions::default())?;
/// assert_eq!(format!("{:.3}", dense.totals.size_mb), "102.122");
/// assert_eq!(format!("{:.1e}", dense.totals.inference_flops), "8.2e9");
/// # Ok::<(), rigl_models::ModelError>(())
/// ```
///
/// # Errors
/// Invalid model or sparsity configurations, and invalid [`TrainingOptions`].
pub fn count<A: SparseArchitecture + ?Sized>(
    arch: &A,
    config: &SparsityConfig,
    options: &CountOptions,
) -> Result<ModelCount> {
    let layers = arch.layer_specs()?;
    let plan = crate::spec::plan_for(&layers, config)?;
    let (sparsities, masked) = plan_sparsities(&layers, &plan)?;
    let replan = |s: f64| -> Result<Vec<f64>> {
        let at = SparsityConfig {
            sparsity: s,
            ..config.clone()
        };
        let plan = crate::spec::plan_for(&layers, &at)?;
        Ok(plan_sparsities(&layers, &plan)?.0)
    };
    count_sparsities(
        &arch.arch_name(),
        &layers,
        &sparsities,
        &masked,
        None,
        options,
        Some(Replan {
            at: &replan,
            final_sparsity: config.sparsity,
        }),
    )
}

/// Count `layers` at the sparsities of `plan` (built for those layers).
///
/// # Errors
/// [`ModelError::LayerMismatch`] when the plan lacks a layer or disagrees on a shape;
/// [`ModelError::InvalidCountOption`] for invalid training options or gradual pruning (which
/// needs [`count`]).
pub fn count_plan(
    model: &str,
    layers: &[LayerSpec],
    plan: &SparsityPlan,
    options: &CountOptions,
) -> Result<ModelCount> {
    let (sparsities, masked) = plan_sparsities(layers, plan)?;
    count_sparsities(model, layers, &sparsities, &masked, None, options, None)
}

/// Count a (sparsified) model from its masks: each layer's sparsity is `1 - nnz / N` of its
/// attached mask, 0 for unmasked layers.
///
/// # Errors
/// [`ModelError::LayerMismatch`] when the model's kernels are not the layers `arch` describes;
/// [`ModelError::InvalidCountOption`] for invalid training options or gradual pruning.
pub fn count_model<M: Module, A: SparseArchitecture + ?Sized>(
    model: &M,
    arch: &A,
    options: &CountOptions,
) -> Result<ModelCount> {
    let layers = arch.layer_specs()?;
    check_layers(model, &layers)?;
    let kernels = kernel_params(model);
    let mut sparsities = Vec::with_capacity(layers.len());
    let mut masked = Vec::with_capacity(layers.len());
    let mut nnz = Vec::with_capacity(layers.len());
    for l in &layers {
        let k = kernels
            .iter()
            .find(|k| k.path == l.path)
            .ok_or_else(|| ModelError::LayerMismatch(format!("no kernel `{}`", l.path)))?;
        let n = match &k.mask {
            Some(m) => rigl_core::mask::bools_to_host(m.clone())
                .iter()
                .filter(|&&b| b)
                .count(),
            None => l.numel(),
        };
        sparsities.push(1.0 - n as f64 / l.numel().max(1) as f64);
        masked.push(k.is_masked());
        nnz.push(n);
    }
    count_sparsities(
        &arch.arch_name(),
        &layers,
        &sparsities,
        &masked,
        Some(&nnz),
        options,
        None,
    )
}

fn sci(v: f64) -> String {
    format!("{v:.4e}")
}

impl core::fmt::Display for ModelCount {
    /// A per-layer table and the totals.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let dims = |d: &[usize]| d.iter().map(usize::to_string).collect::<Vec<_>>().join("x");
        let hw = |s: [usize; 2]| format!("{}x{}", s[0], s[1]);
        let w_path = self
            .layers
            .iter()
            .map(|l| l.path.len())
            .chain([5])
            .max()
            .unwrap_or(5);
        let w_shape = self
            .layers
            .iter()
            .map(|l| dims(&l.shape).len())
            .chain([5])
            .max()
            .unwrap_or(5);
        writeln!(
            f,
            "{:<w_path$}  {:<9}  {:<w_shape$}  {:>4}  {:>9}  {:>9}  {:>8}  {:>10}  {:>10}  {:>12}  {:>12}",
            "layer",
            "kind",
            "shape",
            "mask",
            "in",
            "out",
            "sparsity",
            "weights",
            "active",
            "FLOPs",
            "bits",
        )?;
        for l in &self.layers {
            writeln!(
                f,
                "{:<w_path$}  {:<9}  {:<w_shape$}  {:>4}  {:>9}  {:>9}  {:>8.4}  {:>10}  {:>10}  {:>12}  {:>12}",
                l.path,
                l.kind.name(),
                dims(&l.shape),
                if l.masked { "yes" } else { "no" },
                hw(l.input_size),
                hw(l.output_size),
                l.sparsity,
                l.numel,
                l.nnz,
                sci(l.flops),
                sci(l.bits),
            )?;
        }
        let t = &self.totals;
        writeln!(
            f,
            "{:<w_path$}  {:<9}  {:<w_shape$}  {:>4}  {:>9}  {:>9}  {:>8.4}  {:>10}  {:>10}  {:>12}  {:>12}",
            "total",
            "",
            "",
            "",
            "",
            "",
            t.sparsity,
            t.numel,
            t.nnz,
            sci(t.inference_flops),
            sci(t.bits),
        )?;
        writeln!(f)?;
        writeln!(f, "model            {}", self.model)?;
        writeln!(
            f,
            "inference FLOPs  {} ({:.4}x dense: {})",
            sci(t.inference_flops),
            t.inference_flops_ratio,
            sci(t.dense_inference_flops)
        )?;
        let tr = &self.training;
        writeln!(
            f,
            "training FLOPs   {:.4}x dense training ({}, delta T {}, length x{})",
            tr.flops_ratio, tr.method, tr.delta_t, tr.multiplier
        )?;
        write!(
            f,
            "size             {:.3} MB ({:.3} MB dense)",
            t.size_mb, t.dense_size_mb
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::SparseArchitecture;
    use crate::{MlpConfig, MobileNetV1Config, ResNetConfig};
    use rigl_core::{Distribution, SparsityConfig};

    /// Two layers, counted by hand below.
    struct Toy;

    impl SparseArchitecture for Toy {
        fn arch_name(&self) -> String {
            "toy".into()
        }
        fn layer_specs(&self) -> Result<Vec<LayerSpec>> {
            Ok(vec![
                // 3x3 conv, 2 -> 4 channels, stride 2 on a 5x5 input: 3x3 outputs.
                LayerSpec::conv("toy", "conv.weight", 2, 4, 3, 2, 1, 1, 5)?,
                LayerSpec::dense("fc.weight", 36, 10),
            ])
        }
    }

    fn options(method: TrainingMethod) -> CountOptions {
        CountOptions {
            training: TrainingOptions {
                method,
                ..TrainingOptions::default()
            },
            ..CountOptions::default()
        }
    }

    #[test]
    fn toy_model_by_hand() {
        let config = SparsityConfig::uniform(0.5).last_layer_dense();
        let c = count(&Toy, &config, &options(TrainingMethod::Rigl)).unwrap();
        let conv = &c.layers[0];
        // 36 outputs; 9 * 2 * 0.5 = 9 multiplies each, + 1 ReLU; 8 adds + 1 bias.
        assert_eq!(conv.output_size, [3, 3]);
        assert_eq!((conv.mults, conv.adds, conv.flops), (360.0, 324.0, 684.0));
        // 72 weights: 36 * 32 bits, 72 mask bits, 4 biases of 32 bits.
        assert_eq!(conv.bits, 1152.0 + 72.0 + 128.0);
        assert_eq!((conv.nnz, conv.masked), (36, true));
        let fc = &c.layers[1];
        // Dense: 36 * 10 multiplies + 10 ReLUs; 35 * 10 adds + 10 biases.
        assert_eq!((fc.mults, fc.adds, fc.bits), (370.0, 360.0, 11_840.0));
        assert!(!fc.masked);
        let t = &c.totals;
        assert_eq!(t.inference_flops, 1414.0);
        // Dense conv: 18 multiplies + 1, 17 adds + 1 per output.
        assert_eq!(t.dense_inference_flops, 1332.0 + 730.0);
        assert_eq!(t.bits, 13_192.0);
        assert!((t.size_mb - 0.001_649).abs() < 1e-12);
        assert_eq!((t.numel, t.nnz), (432, 396));
        // RigL, delta T 100: (3 * 1414 * 100 + 2 * 1414 + 2062) / 101 per step.
        let per_step = (3.0 * 1414.0 * 100.0 + 2.0 * 1414.0 + 2062.0) / 101.0;
        assert!((c.training.flops_per_step - per_step).abs() < 1e-9);
        assert!((t.training_flops_ratio - per_step / 6186.0).abs() < 1e-12);

        let f_s = 1414.0;
        let f_d = 2062.0;
        for (method, step) in [
            (TrainingMethod::Dense, 3.0 * f_d),
            (TrainingMethod::Static, 3.0 * f_s),
            (TrainingMethod::Set, 3.0 * f_s),
            (TrainingMethod::Snip, 3.0 * f_s),
            (TrainingMethod::Snfs, 2.0 * f_s + f_d),
        ] {
            let c = count(&Toy, &config, &options(method)).unwrap();
            assert_eq!(c.training.flops_per_step, step, "{method}");
        }
        // The multiplier scales the ratio.
        let mut o = options(TrainingMethod::Static);
        o.training.multiplier = 5.0;
        let c = count(&Toy, &config, &o).unwrap();
        assert!((c.totals.training_flops_ratio - 5.0 * f_s / f_d).abs() < 1e-12);
    }

    #[test]
    fn depthwise_is_counted_like_a_conv_with_one_output_channel() {
        let dw = LayerSpec::conv("t", "dw.weight", 4, 4, 3, 1, 1, 4, 6).unwrap();
        assert_eq!(dw.kind, LayerKind::Depthwise);
        let c = count_layer(&dw, 0.0, false, SpatialRule::Reference);
        // 36 outputs (c_out = 1); 3 * 3 * 4 multiplies each + 1; 35 adds + 1.
        assert_eq!((c.mults, c.adds), (1332.0, 1296.0));
        // 36 weights and one bias.
        assert_eq!(c.bits, 36.0 * 32.0 + 32.0);
        let c = count_layer(&dw, 0.5, true, SpatialRule::Reference);
        assert_eq!(c.bits, 18.0 * 32.0 + 36.0 + 32.0);
    }

    #[test]
    fn spatial_rules() {
        let stem = &ResNetConfig::resnet50().layer_specs().unwrap()[0];
        let r = count_layer(stem, 0.0, false, SpatialRule::Reference);
        let a = count_layer(stem, 0.0, false, SpatialRule::Actual);
        assert_eq!((r.output_size, a.output_size), ([115, 115], [112, 112]));
        assert_eq!(r.mults, 115.0 * 115.0 * 64.0 * (147.0 + 1.0));
        assert_eq!("actual".parse::<SpatialRule>(), Ok(SpatialRule::Actual));
        assert!("same".parse::<SpatialRule>().is_err());
        assert_eq!(same_output(224, 3, 1), 224);
        assert_eq!(same_output(225, 3, 2), 113);
        assert_eq!(same_output(7, 1, 2), 4);
    }

    #[test]
    fn dense_resnet50_golden() {
        let c = count(
            &ResNetConfig::resnet50(),
            &SparsityConfig::uniform(0.0),
            &CountOptions::default(),
        )
        .unwrap();
        let t = &c.totals;
        assert_eq!(c.layers.len(), 54);
        // 102.122 MB exactly as printed: 816,975,104 bits.
        assert_eq!(t.bits, 816_975_104.0);
        assert_eq!(format!("{:.3}", t.size_mb), "102.122");
        // 8.2e9 FLOPs (exactly 8,202,340,776 with the reference's spatial rule).
        assert_eq!(t.inference_flops, 8_202_340_776.0);
        assert_eq!(format!("{:.1e}", t.inference_flops), "8.2e9");
        assert_eq!(t.inference_flops_ratio, 1.0);
        assert!((t.training_flops_ratio - 1.0).abs() < 1e-12);
        // The real output sizes give 8,189,483,496 (the stem at 112x112).
        let o = CountOptions {
            spatial: SpatialRule::Actual,
            ..CountOptions::default()
        };
        let a = count(&ResNetConfig::resnet50(), &SparsityConfig::uniform(0.0), &o).unwrap();
        assert_eq!(a.totals.inference_flops, 8_189_483_496.0);
        assert_eq!(a.totals.bits, t.bits);
    }

    /// One row of the reference README's ResNet-50 tables.
    struct Row {
        distribution: Distribution,
        sparsity: f64,
        first_layer_dense: bool,
        multiplier: f64,
        training: &'static str,
        inference: &'static str,
        size: Option<&'static str>,
    }

    #[test]
    fn resnet50_readme_rows() {
        use Distribution::{Erk, Uniform};
        let row =
            |distribution, sparsity, first_layer_dense, multiplier, training, inference| Row {
                distribution,
                sparsity,
                first_layer_dense,
                multiplier,
                training,
                inference,
                size: None,
            };
        let rows = [
            // Extended training (5x, 10x, 40x, 100x).
            Row {
                size: Some("13.499"),
                ..row(Erk, 0.9, false, 5.0, "1.23", "0.24")
            },
            Row {
                size: Some("13.532"),
                ..row(Uniform, 0.9, true, 5.0, "0.66", "0.13")
            },
            Row {
                size: Some("8.399"),
                ..row(Erk, 0.95, false, 5.0, "0.63", "0.12")
            },
            Row {
                size: Some("8.433"),
                ..row(Uniform, 0.95, true, 5.0, "0.42", "0.08")
            },
            // The README prints 6.904 for ERK 0.965, the size with a dense first layer (or of
            // the uniform row); its FLOPs are those of plain ERK. Our size is 6.869.
            Row {
                size: Some("6.869"),
                ..row(Erk, 0.965, false, 5.0, "0.45", "0.09")
            },
            Row {
                size: Some("6.904"),
                ..row(Uniform, 0.965, true, 5.0, "0.34", "0.07")
            },
            Row {
                size: Some("4.354"),
                ..row(Erk, 0.99, true, 5.0, "0.29", "0.05")
            },
            row(Erk, 0.99, true, 10.0, "0.58", "0.05"),
            row(Erk, 0.99, true, 40.0, "2.32", "0.05"),
            row(Erk, 0.99, true, 100.0, "5.79", "0.05"), // printed as 5.8x
            // ERK 0.8: the README prints 23.683; the count is 23.683636, which rounds to
            // 23.684. Uniform 0.8: the README's 23.685 is a typo (the count is 23.729).
            Row {
                size: Some("23.684"),
                ..row(Erk, 0.8, false, 5.0, "2.09", "0.42")
            },
            Row {
                size: Some("23.729"),
                ..row(Uniform, 0.8, true, 5.0, "1.14", "0.23")
            },
            // 1x training.
            row(Erk, 0.8, false, 1.0, "0.42", "0.42"),
            row(Uniform, 0.8, true, 1.0, "0.23", "0.23"),
            row(Erk, 0.9, false, 1.0, "0.25", "0.24"), // printed as 0.24x (0.2456)
            row(Uniform, 0.9, true, 1.0, "0.13", "0.13"),
            row(Erk, 0.95, false, 1.0, "0.13", "0.12"),
        ];
        for r in rows {
            let mut config = SparsityConfig::new(r.sparsity).with_distribution(r.distribution);
            if r.first_layer_dense {
                config = config.first_layer_dense();
            }
            let mut o = CountOptions::default();
            o.training.multiplier = r.multiplier;
            let c = count(&ResNetConfig::resnet50(), &config, &o).unwrap();
            let t = &c.totals;
            let what = format!("{:?} {} x{}", r.distribution, r.sparsity, r.multiplier);
            assert_eq!(
                format!("{:.2}", t.inference_flops_ratio),
                r.inference,
                "{what}"
            );
            assert_eq!(
                format!("{:.2}", t.training_flops_ratio),
                r.training,
                "{what}"
            );
            if let Some(size) = r.size {
                assert_eq!(format!("{:.3}", t.size_mb), size, "{what}");
            }
        }
    }

    #[test]
    fn mobilenet_v1_dense_golden() {
        // The reference's MobileNet v1 counting notebook: 1141.544 MFLOPs and 16.864 MB.
        let c = count(
            &MobileNetV1Config::new(),
            &SparsityConfig::uniform(0.0),
            &CountOptions::default(),
        )
        .unwrap();
        assert_eq!(format!("{:.3}", c.totals.inference_flops / 1e6), "1141.544");
        assert_eq!(format!("{:.3}", c.totals.size_mb), "16.864");
        // Uniform 0.9 with the first layer and every depthwise layer dense: 168.614 MFLOPs.
        let config = SparsityConfig::uniform(0.9)
            .first_layer_dense()
            .exclude("blocks.*.depthwise");
        let c = count(&MobileNetV1Config::new(), &config, &CountOptions::default()).unwrap();
        assert_eq!(format!("{:.3}", c.totals.inference_flops / 1e6), "168.614");
        assert_eq!(format!("{:.3}", c.totals.size_mb), "2.396");
    }

    #[test]
    fn counts_from_a_plan_and_from_a_sparse_model_agree() {
        use burn::tensor::Device;
        use rigl_core::Sparsify;
        let arch = MlpConfig::new();
        let config = SparsityConfig::uniform(0.98)
            .with_custom_sparsity("fc2", 0.882)
            .last_layer_dense();
        let layers = arch.layer_specs().unwrap();
        let plan = arch.sparsity_plan(&config).unwrap();
        let o = CountOptions::default();
        let from_plan = count_plan("mlp", &layers, &plan, &o).unwrap();
        let nnz: Vec<_> = from_plan.layers.iter().map(|l| l.nnz).collect();
        assert_eq!(nnz, [4704, 3540, 1000]);
        let model = arch.init(&Device::default()).sparsify(&config).unwrap();
        let from_model = count_model(&model, &arch, &o).unwrap();
        let nnz: Vec<_> = from_model.layers.iter().map(|l| l.nnz).collect();
        assert_eq!(nnz, [4704, 3540, 1000]);
        // The model's sparsities are the exact mask fractions; the plan's the targets.
        assert!((from_model.totals.bits - from_plan.totals.bits).abs() < 32.0 * 2.0);
        assert_eq!(from_model.totals.numel, 266_200);
        // FC1: 784 * 0.02 = 15.68 multiplies per output, 300 outputs, + ReLU.
        let fc1 = &from_plan.layers[0];
        assert!((fc1.mults - (784.0 * 0.02 * 300.0 + 300.0)).abs() < 1e-6);
        // Pruning needs the configuration.
        let mut p = o;
        p.training.method = TrainingMethod::Pruning;
        assert!(matches!(
            count_plan("mlp", &layers, &plan, &p),
            Err(ModelError::InvalidCountOption(_))
        ));
        // A model that is not the architecture is a typed error.
        let other = MlpConfig::new().with_d_hidden1(200);
        assert!(matches!(
            count_model(&model, &other, &o),
            Err(ModelError::LayerMismatch(_))
        ));
    }

    #[test]
    fn gradual_pruning_is_the_mean_over_the_schedule() {
        let mut o = options(TrainingMethod::Pruning);
        o.training.delta_t = 1000;
        o.training.pruning = PruningSchedule {
            total_steps: 4000,
            begin_step: 1000,
            end_step: 3000,
        };
        // Steps 0-999 dense, 1000-1999 at s_1000 = 0 (p = 0), 2000-2999 at
        // 0.5 * (1 - 0.5^3) = 0.4375, 3000-3999 at 0.5.
        let config = SparsityConfig::uniform(0.5);
        let c = count(&Toy, &config, &o).unwrap();
        let f = |s: f64| {
            count(
                &Toy,
                &SparsityConfig::uniform(s),
                &options(TrainingMethod::Static),
            )
            .unwrap()
            .totals
            .inference_flops
        };
        let expected = 3.0 * (2.0 * f(0.0) + f(0.4375) + f(0.5)) / 4.0;
        assert!((c.training.flops_per_step - expected).abs() < 1e-9);
        let segments = pruning_segments(0.5, &o.training);
        assert_eq!(segments.len(), 4);
        // Invalid schedules and options are typed errors.
        o.training.pruning.end_step = 500;
        assert!(matches!(
            count(&Toy, &config, &o),
            Err(ModelError::InvalidCountOption(_))
        ));
        let mut o = options(TrainingMethod::Rigl);
        o.training.delta_t = 0;
        assert!(count(&Toy, &config, &o).is_err());
        o.training.delta_t = 1;
        o.training.multiplier = 0.0;
        assert!(count(&Toy, &config, &o).is_err());
    }

    #[test]
    fn method_names_parse() {
        assert_eq!("RigL".parse::<TrainingMethod>(), Ok(TrainingMethod::Rigl));
        assert_eq!(
            "scratch".parse::<TrainingMethod>(),
            Ok(TrainingMethod::Static)
        );
        assert!("lottery".parse::<TrainingMethod>().is_err());
    }

    #[test]
    fn table_and_json() {
        let c = count(
            &Toy,
            &SparsityConfig::uniform(0.5),
            &CountOptions::default(),
        )
        .unwrap();
        let table = c.to_string();
        assert!(
            table.contains("conv.weight") && table.contains("inference FLOPs"),
            "{table}"
        );
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["layers"][0]["path"], "conv.weight");
        assert_eq!(json["layers"][0]["shape"], serde_json::json!([4, 2, 3, 3]));
        assert!(json["totals"]["size_mb"].is_number());
        assert_eq!(json["training"]["method"], "rigl");
    }
}
