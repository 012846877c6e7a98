//! [`SparseOptimizer`]: what [`SparseTrainer`](crate::SparseTrainer) needs of an optimizer.

use crate::error::Result;
use burn::module::{Module, ParamId};
use burn::optim::GradientsParams;
use burn::optim::lr_scheduler::module_lr_scheduler::ModuleLearningRate;
use burn::tensor::{Bool, Bytes, Tensor};

/// What [`SparseTrainer`](crate::SparseTrainer) needs of an optimizer (see the [module docs](super)).
pub trait SparseOptimizer {
    /// Update every parameter of `model` that has a gradient in `grads`.
    fn step<M: Module>(&mut self, lr: ModuleLearningRate, model: M, grads: GradientsParams) -> M;

    /// Zero every state slot of each parameter in `resets` at the positions set in its flat
    /// mask (a Bool tensor with one entry per weight, on the parameter's device). Parameters
    /// without state are skipped. Returns the number of state tensors edited.
    ///
    /// # Errors
    /// [`SparsityError::OptimizerState`] if the state cannot be edited.
    fn reset_slots(&mut self, resets: &[(ParamId, Tensor<1, Bool>)]) -> Result<usize>;

    /// Set every state slot of each parameter in `inits` to the given flat values at the
    /// positions set in its flat mask (RigL's `rigl_acc_scale`: slots of new connections start
    /// at a multiple of the gradient). Parameters without state are skipped. Returns the number
    /// of state tensors edited.
    ///
    /// # Errors
    /// [`SparsityError::OptimizerState`] if the state cannot be edited.
    fn init_slots(&mut self, inits: &[(ParamId, Tensor<1, Bool>, Tensor<1>)]) -> Result<usize>;

    /// Whether the tensors of [`state_bytes`](Self::state_bytes) are flat (one entry per
    /// weight) rather than of their parameter's shape; checkpoints check the shapes before
    /// loading a state.
    fn flat_state(&self) -> bool {
        false
    }

    /// The state as a burnpack buffer (what checkpoints keep).
    ///
    /// # Errors
    /// [`SparsityError::OptimizerState`] if the state cannot be serialised.
    fn state_bytes(&self) -> Result<Bytes>;

    /// This optimizer with the state saved by [`state_bytes`](Self::state_bytes).
    ///
    /// # Errors
    /// [`SparsityError::OptimizerState`] if the bytes are not such a state.
    fn with_state_bytes(self, bytes: Bytes) -> Result<Self>
    where
        Self: Sized;
}
