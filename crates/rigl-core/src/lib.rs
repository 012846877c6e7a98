//! # rigl-core
//!
//! Sparsity as a decorator for any [Burn](https://burn.dev) module.
//!
//! ```
//! use burn::nn::{Linear, LinearConfig};
//! use burn::tensor::Device;
//! use rigl_core::{Sparsify, SparsityConfig};
//!
//! let device = Device::default();
//! let model: Linear = LinearConfig::new(128, 64).init(&device);
//! let model = model.sparsify(SparsityConfig::erk(0.9))?;
//! println!("{}", model.sparsity_report());
//! # Ok::<(), rigl_core::SparsityError>(())
//! ```
//!
//! - [`Sparsify`]: attach masks ([`SparseMask`], a Burn `Reparameterization`) with exact counts,
//!   report, switch [`GradientMode`], save and load masks with the record.
//! - [`SparsityConfig`]: global sparsity, [`Distribution`] (uniform, ER, ERK), first/last-layer
//!   rules, custom per-layer sparsities, include/exclude patterns, [`MaskInit`], seed.
//! - [`distribute`]: the reference's ER/ERK algorithm, exactly.
//! - [`SparsityPlan`]: per-layer sparsities from shapes alone.
//! - [`SparseTrainer`]: dynamic sparse training (RigL, SET, SNFS, static, SNIP, gradual
//!   pruning) in a hand-written loop; [`optim`]: optimizers whose state it resets on the device.

mod checkpoint;
mod config;
mod device_check;
mod distribution;
mod error;
mod export;
mod init;
mod io;
mod layers;
#[cfg(feature = "learner")]
pub mod learner;
mod mask;
mod method;
mod module_path;
pub mod nn;
pub mod optim;
mod param_context;
pub mod pattern;
mod plan;
mod report;
mod schedule;
mod sparsify;
mod structure;
mod trainer;
pub mod updater;

#[cfg(test)]
mod test_utils;

pub use checkpoint::{Resumed, load_checkpoint, load_checkpoint_model, save_checkpoint};
pub use config::{MaskInit, SparsityConfig};
pub use device_check::check_device;
pub use distribution::{
    Distribution, DistributionLayer, DistributionOutcome, LayerShape, distribute, n_ones, n_zeros,
};
pub use error::{Result, SparsityError};
pub use export::SparseInference;
pub use io::write_atomic;
pub use layers::{KernelParam, kernel_params};
pub use mask::{GradientMode, SparseMask, bools_to_host, floats_to_host};
pub use method::Method;
pub use plan::{LayerRole, PlannedLayer, SparsityPlan};
pub use report::{LayerReport, SparsityReport};
pub use schedule::{DropAnneal, UpdateSchedule, gradual_sparsity};
pub use sparsify::Sparsify;
pub use structure::{Groups, Structure};
pub use trainer::{
    DstConfig, GrowInit, LayerUpdateStats, SparseTrainer, StepOutcome, TrainerState, UpdateStats,
};
pub use updater::PruningScope;
