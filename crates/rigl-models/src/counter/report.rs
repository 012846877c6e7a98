//! What a count reports, per layer and in total, and its table.

use super::SpatialRule;
use crate::spec::LayerKind;
use rigl_core::Method;
use serde::{Deserialize, Serialize};

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
    pub method: Method,
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
