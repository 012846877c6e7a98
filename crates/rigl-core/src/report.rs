//! [`SparsityReport`]: per-layer and global sparsity of a model, as a table or as data.

use core::fmt;
use serde::{Deserialize, Serialize};

/// One kernel in a [`SparsityReport`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerReport {
    /// Parameter path.
    pub path: String,
    /// Kernel shape as stored.
    pub shape: Vec<usize>,
    /// Whether a mask is attached.
    pub masked: bool,
    /// Number of weights.
    pub numel: usize,
    /// Active weights (all of them when unmasked).
    pub nnz: usize,
    /// `1 - nnz / numel`.
    pub sparsity: f64,
}

/// Sparsity of every kernel (float parameter of rank >= 2) of a model, and the totals.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SparsityReport {
    /// Every kernel in layer order, masked or not.
    pub layers: Vec<LayerReport>,
    /// Weights over all kernels.
    pub numel: usize,
    /// Active weights over all kernels.
    pub nnz: usize,
    /// Global sparsity over all kernels.
    pub sparsity: f64,
}

impl SparsityReport {
    /// Totals from per-layer rows.
    pub fn from_layers(layers: Vec<LayerReport>) -> Self {
        let numel = layers.iter().map(|l| l.numel).sum();
        let nnz = layers.iter().map(|l| l.nnz).sum();
        Self {
            layers,
            numel,
            nnz,
            sparsity: sparsity(nnz, numel),
        }
    }

    /// The row of `path`.
    pub fn layer(&self, path: &str) -> Option<&LayerReport> {
        self.layers.iter().find(|l| l.path == path)
    }
}

pub(crate) fn sparsity(nnz: usize, numel: usize) -> f64 {
    if numel == 0 {
        0.0
    } else {
        1.0 - nnz as f64 / numel as f64
    }
}

impl fmt::Display for SparsityReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shape = |s: &[usize]| {
            s.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("x")
        };
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
            .map(|l| shape(&l.shape).len())
            .chain([5])
            .max()
            .unwrap_or(5);
        writeln!(
            f,
            "{:<w_path$}  {:<w_shape$}  {:>6}  {:>12}  {:>12}  {:>8}",
            "layer", "shape", "masked", "weights", "active", "sparsity"
        )?;
        for l in &self.layers {
            writeln!(
                f,
                "{:<w_path$}  {:<w_shape$}  {:>6}  {:>12}  {:>12}  {:>8.4}",
                l.path,
                shape(&l.shape),
                if l.masked { "yes" } else { "no" },
                l.numel,
                l.nnz,
                l.sparsity
            )?;
        }
        write!(
            f,
            "{:<w_path$}  {:<w_shape$}  {:>6}  {:>12}  {:>12}  {:>8.4}",
            "total", "", "", self.numel, self.nnz, self.sparsity
        )
    }
}
