//! # rigl-burn
//!
//! Dynamic sparse training for the [Burn](https://burn.dev) deep learning framework.
//!
//! This facade re-exports the workspace crates:
//! - [`core`]: sparsity as a Burn module decorator, distributions, mask initialisation.
//! - [`models`]: sparse-ready models and the FLOP / size counter.
//! - [`kernels`]: selection kernels (top-k masks, counter-based RNG) and their CPU reference.

pub use rigl_core as core;
pub use rigl_kernels as kernels;
pub use rigl_models as models;
