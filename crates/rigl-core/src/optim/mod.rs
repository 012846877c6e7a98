//! Optimizers for sparse training, and how their state is reset at new connections.
//!
//! [`SparseTrainer`](crate::SparseTrainer) drives any [`SparseOptimizer`]: a step, a reset of
//! the state slots at given positions (new connections start with every slot zero, or, for RigL
//! with `rigl_acc_scale`, at a multiple of the gradient), and the state as bytes for
//! checkpoints. Two kinds implement it:
//!
//! - Burn's [`ModuleOptimizer`](burn::optim::ModuleOptimizer) (SGD, Adam, AdamW, RMSProp, ...
//!   any Burn optimizer). It keeps its per-parameter state private; its public record is the way
//!   in: the state is serialised (`into_bytes`), every state tensor of an updated parameter that
//!   has the parameter's number of elements (SGD momentum, Adam/AdamW first and second moments,
//!   RMSProp's square average, ...) is edited at the reset positions, and the optimizer is
//!   rebuilt from the edited record (`from_bytes`). Scalars (e.g. Adam's step count) and the
//!   state of other parameters pass through unchanged; state tensors of another size (factored
//!   second moments) are left alone. This costs one host copy of the whole optimizer state per
//!   mask update (measured in `benches/RESULTS.md`: about 0.3 s for a ResNet-50-sized model).
//! - [`SlotOptimizer`]s over a [`SlotRule`]: [`SparseSgd`], [`SparseAdam`] and [`SparseAdamW`]
//!   compute Burn's SGD, Adam and AdamW operation for operation (the same weights bit for bit)
//!   and keep each parameter's state as flat tensors ("slots") on the parameter's device, so a
//!   reset is one masked fill per slot, without a host round trip.
//!
//! Weight decay: Burn's optimizers decay every parameter; the reference's L2 is on kernels
//! only ([`WeightDecayScope`]), and a `SlotOptimizer` can leave given parameters undecayed
//! ([`SlotOptimizer::without_decay_for`]).
//!
//! Files: one per optimizer (its config, rule and state), the trait, the slot driver, the
//! record round trip and the decay scope each in their own.

mod adam;
mod adamw;
mod hyperparameters;
mod record;
mod sgd;
mod slot;
mod sparse_optimizer;
mod weight_decay_scope;

pub use adam::{AdamRule, SparseAdam, SparseAdamConfig};
pub use adamw::{AdamWRule, SparseAdamW, SparseAdamWConfig};
pub use record::reset_optimizer_slots;
pub use sgd::{SgdRule, SparseSgd, SparseSgdConfig};
pub use slot::{SlotOptimizer, SlotRule, SlotState};
pub use sparse_optimizer::SparseOptimizer;
pub use weight_decay_scope::WeightDecayScope;

pub(crate) use hyperparameters::{Range, check as check_hyperparameter};
