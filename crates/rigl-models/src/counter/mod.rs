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
//!   for the bias. Megabytes are decimal: `bits / 8e6`. An N:M layer
//!   ([`CountOptions::structure`]) stores `ceil(log2 M)` index bits per kept weight instead of
//!   the mask where that is smaller ([`mask_bits`]).
//! - Training FLOPs per step, with `f_S` and `f_D` the sparse and dense forward FLOPs: dense
//!   `3 f_D`; static, SET and SNIP `3 f_S`; SNFS `2 f_S + f_D`; RigL
//!   `(3 f_S dT + 2 f_S + f_D) / (dT + 1)`; gradual pruning the mean of `3 f_{S_t}` over the
//!   run. The training ratio is the per-step cost times the training-length multiplier over
//!   `3 f_D`.

mod layer;
mod options;
mod report;
#[cfg(test)]
mod tests;
mod training;

pub use layer::{PARAM_BITS, count_layer, count_layer_structured, mask_bits};
pub use options::{CountOptions, PruningSchedule, SpatialRule, TrainingOptions};
pub use report::{CountTotals, LayerCount, ModelCount, TrainingCount};

use crate::error::{ModelError, Result};
use crate::spec::{LayerSpec, SparseArchitecture, check_layers};
use burn::module::Module;
use rigl_core::{Method, SparsityConfig, SparsityPlan, kernel_params};
use std::collections::HashMap;
use training::{forward_flops, pruning_segments, step_flops};

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
        .map(|((l, &s), &m)| count_layer_structured(l, s, m, rule, options.structure))
        .collect();
    if let Some(nnz) = nnz {
        for (row, &n) in rows.iter_mut().zip(nnz) {
            if row.sparsity > 0.0 {
                // The mask's bits from the exact count.
                row.bits += mask_bits(options.structure, row.numel, n)
                    - mask_bits(options.structure, row.numel, row.nnz);
            }
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

    let flops_per_step = if t.method == Method::Prune {
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
    let options = &CountOptions {
        structure: config.structure,
        ..*options
    };
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
            Some(m) => rigl_core::bools_to_host(m.clone())
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
