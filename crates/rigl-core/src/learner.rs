//! Dynamic sparse training inside burn-train's `Learner` (feature `learner`).
//!
//! burn-train's only per-step hook is `TrainStep::optimize`. [`SparseLearnerModel`] wraps a
//! model that implements `TrainStep` and `InferenceStep`, forwards both, and routes `optimize`
//! through [`SparseTrainer::step`]: the optimizer step, the mask updates of the schedule, the
//! reset of new connections and their optimizer state, and the gradient mode of the next step.
//!
//! ```ignore
//! let sparse = SparseLearnerModel::init(model, &SparsityConfig::erk(0.9), DstConfig::new(Method::Rigl))?;
//! let learner = Learner::new(sparse, SgdConfig::new().init(), 0.1);
//! let result = SupervisedTraining::new(dir, train_loader, valid_loader).num_epochs(2).launch(learner);
//! let trained = result.model; // still a SparseLearnerModel; `.model` is your model
//! ```
//!
//! `optimize` has no way to return an error to the `Learner`: a failed update (NaN weights,
//! say) is kept, reported by [`SparseLearnerModel::error`], logged, and from then on the wrapper
//! takes plain optimizer steps (masked gradients still keep the network sparse). Multi-device
//! training through `optimize_multi` takes plain optimizer steps too (the masks stay fixed) and
//! reports that once.

use crate::config::SparsityConfig;
use crate::error::Result;
use crate::trainer::{DstConfig, SparseTrainer, UpdateStats};
use burn::module::Module;
use burn::optim::lr_scheduler::module_lr_scheduler::ModuleLearningRate;
use burn::optim::{GradientsParams, ModuleOptimizer, MultiGradientsParams};
use burn::train::{InferenceStep, TrainOutput, TrainStep};
use std::sync::{Arc, Mutex, MutexGuard};

/// The trainer shared by the clones of a [`SparseLearnerModel`].
#[derive(Clone, Debug)]
pub struct SharedTrainer(Arc<Mutex<Slot>>);

#[derive(Debug)]
struct Slot {
    trainer: SparseTrainer,
    updates: Vec<UpdateStats>,
    error: Option<String>,
}

impl SharedTrainer {
    fn lock(&self) -> MutexGuard<'_, Slot> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A model trained sparsely by burn-train's `Learner` (see the module docs).
#[derive(Module, Debug)]
pub struct SparseLearnerModel<M: Module> {
    /// The wrapped model, with its masks.
    pub model: M,
    #[module(skip)]
    trainer: SharedTrainer,
}

impl<M: Module> SparseLearnerModel<M> {
    /// Sparsify `model` for `dst.method` and wrap it (see [`SparseTrainer::init`]).
    ///
    /// # Errors
    /// As [`SparseTrainer::init`].
    pub fn init(model: M, sparsity: &SparsityConfig, dst: DstConfig) -> Result<Self> {
        let (model, trainer) = SparseTrainer::init(model, sparsity, dst)?;
        Ok(Self {
            model,
            trainer: SharedTrainer(Arc::new(Mutex::new(Slot {
                trainer,
                updates: Vec::new(),
                error: None,
            }))),
        })
    }

    /// The optimizer steps taken so far.
    pub fn step_count(&self) -> i64 {
        self.trainer.lock().trainer.step_count()
    }

    /// The mask updates made so far.
    pub fn updates(&self) -> Vec<UpdateStats> {
        self.trainer.lock().updates.clone()
    }

    /// The error that stopped mask updates, if one did.
    pub fn error(&self) -> Option<String> {
        self.trainer.lock().error.clone()
    }

    /// Run `f` with the trainer (to save a checkpoint, say).
    pub fn with_trainer<R>(&self, f: impl FnOnce(&SparseTrainer) -> R) -> R {
        f(&self.trainer.lock().trainer)
    }

    /// The wrapped model.
    pub fn into_inner(self) -> M {
        self.model
    }
}

impl<M: Module + TrainStep> TrainStep for SparseLearnerModel<M> {
    type Input = M::Input;
    type Output = M::Output;

    fn step(&self, item: Self::Input) -> TrainOutput<Self::Output> {
        TrainStep::step(&self.model, item)
    }

    fn optimize(
        self,
        optim: &mut ModuleOptimizer,
        lr_module: ModuleLearningRate,
        grads: GradientsParams,
    ) -> Self {
        let Self { model, trainer } = self;
        let mut slot = trainer.lock();
        if slot.error.is_some() {
            drop(slot);
            let model = optim.step(lr_module, model, grads);
            return Self { model, trainer };
        }
        let backup = model.clone();
        let model = match slot.trainer.step(model, optim, lr_module, grads) {
            Ok(out) => {
                if let Some(u) = out.update {
                    slot.updates.push(u);
                }
                out.model
            }
            Err(e) => {
                log::error!("sparse training stopped updating masks: {e}");
                slot.error = Some(e.to_string());
                backup
            }
        };
        drop(slot);
        Self { model, trainer }
    }

    fn optimize_multi(
        self,
        optim: &mut ModuleOptimizer,
        lr_module: ModuleLearningRate,
        grads: MultiGradientsParams,
    ) -> Self {
        let Self { model, trainer } = self;
        {
            let mut slot = trainer.lock();
            if slot.error.is_none() {
                let msg = "multi-device training through the Learner takes plain optimizer \
                           steps: masks stay fixed (use SparseTrainer with reduced gradients)";
                log::warn!("{msg}");
                slot.error = Some(msg.into());
            }
        }
        let model = optim.step_multi(lr_module, model, grads);
        Self { model, trainer }
    }
}

impl<M: Module + InferenceStep> InferenceStep for SparseLearnerModel<M> {
    type Input = M::Input;
    type Output = M::Output;

    fn step(&self, item: Self::Input) -> Self::Output {
        InferenceStep::step(&self.model, item)
    }
}
