//! [`TrainerState`]: the counters of a run, and the snapshot of a trainer that checkpoints keep.

use super::DstConfig;
use crate::config::SparsityConfig;
use crate::plan::SparsityPlan;
use serde::{Deserialize, Serialize};

/// Counters of a sparse training run (all of its state but tensors).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// The step counter (optimizer steps taken).
    pub step: i64,
    /// The step the last mask update saw ([`MaskUpdater::schedule_step`]).
    pub last_update: i64,
    /// Mask updates so far.
    pub updates: u64,
}

/// Everything of a [`SparseTrainer`](super::SparseTrainer) but its tensors: what a checkpoint
/// stores as JSON.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct TrainerSnapshot {
    /// The configuration.
    pub config: DstConfig,
    /// The sparsity configuration the masks were planned with.
    pub sparsity: SparsityConfig,
    /// The per-layer plan (`None` for dense training).
    pub plan: Option<SparsityPlan>,
    /// The counters.
    pub state: TrainerState,
}
