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
//! takes plain optimizer steps (masked gradients still keep the network sparse).
//!
//! # Multi-device training
//! With several devices, the `Learner` hands `optimize_multi` one set of gradients per device.
//! The wrapper sums them per parameter (Burn's own reduction, `MultiGradientsParams::remove`,
//! in its order), moves each sum to its parameter's device, and then takes the same
//! [`SparseTrainer::step`] as on one device: every mask decision is made once, on the model the
//! `Learner` keeps, from the reduced gradients, so the devices' model copies receive the same
//! masks with the weights. Where Burn's `step_multi` would keep each parameter's optimizer
//! state on the device that accumulated its gradient, the wrapper keeps it on the parameter's
//! device.

use crate::config::SparsityConfig;
use crate::error::Result;
use crate::trainer::{DstConfig, SparseTrainer, UpdateStats};
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::lr_scheduler::module_lr_scheduler::ModuleLearningRate;
use burn::optim::{GradientsParams, ModuleOptimizer, MultiGradientsParams};
use burn::tensor::Tensor;
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
        self.sparse_step(optim, lr_module, grads)
    }

    fn optimize_multi(
        self,
        optim: &mut ModuleOptimizer,
        lr_module: ModuleLearningRate,
        grads: MultiGradientsParams,
    ) -> Self {
        let grads = reduce_gradients(&self.model, grads);
        self.sparse_step(optim, lr_module, grads)
    }
}

impl<M: Module> SparseLearnerModel<M> {
    /// [`SparseTrainer::step`] with the shared trainer; after an error, plain optimizer steps.
    fn sparse_step(
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
}

/// The per-device gradients of `model`'s parameters summed into one set, each sum on its
/// parameter's device (see the module docs).
pub fn reduce_gradients<M: Module>(model: &M, grads: MultiGradientsParams) -> GradientsParams {
    struct Reduce {
        multi: MultiGradientsParams,
        out: GradientsParams,
    }
    impl ModuleVisitor for Reduce {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some((sum, _)) = self.multi.remove::<D>(param.id) {
                let device = param.device();
                self.out.register::<D>(param.id, sum.to_device(&device));
            }
        }
    }
    let mut reduce = Reduce {
        multi: grads,
        out: GradientsParams::new(),
    };
    model.visit(&mut reduce);
    reduce.out
}

impl<M: Module + InferenceStep> InferenceStep for SparseLearnerModel<M> {
    type Input = M::Input;
    type Output = M::Output;

    fn step(&self, item: Self::Input) -> Self::Output {
        InferenceStep::step(&self.model, item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sparsify::read_weights;
    use crate::test_utils::{Mlp, batch_of, masks};
    use crate::{Method, Sparsify};
    use burn::data::dataloader::DataLoaderBuilder;
    use burn::data::dataloader::batcher::Batcher;
    use burn::data::dataset::InMemDataset;
    use burn::nn::loss::CrossEntropyLossConfig;
    use burn::optim::momentum::MomentumConfig;
    use burn::optim::{GradientsAccumulator, SgdConfig};
    use burn::tensor::{Device, Int};
    use burn::train::{
        ClassificationOutput, ExecutionStrategy, Learner, MultiDeviceOptim, SupervisedTraining,
    };

    type Batch = (Tensor<2>, Tensor<1, Int>);

    impl Mlp {
        fn classify(&self, (x, y): Batch) -> ClassificationOutput {
            let output = self.forward(x);
            let loss = CrossEntropyLossConfig::new()
                .init(&output.device())
                .forward(output.clone(), y.clone());
            ClassificationOutput {
                loss,
                output,
                targets: y,
            }
        }
    }

    impl TrainStep for Mlp {
        type Input = Batch;
        type Output = ClassificationOutput;

        fn step(&self, batch: Batch) -> TrainOutput<ClassificationOutput> {
            let item = self.classify(batch);
            TrainOutput::new(self, item.loss.backward(), item)
        }
    }

    impl InferenceStep for Mlp {
        type Input = Batch;
        type Output = ClassificationOutput;

        fn step(&self, batch: Batch) -> ClassificationOutput {
            self.classify(batch)
        }
    }

    const DIMS: [usize; 4] = [12, 16, 8, 3];

    fn sgd() -> ModuleOptimizer {
        SgdConfig::new()
            .with_momentum(Some(MomentumConfig::new().with_nesterov(true)))
            .init()
    }

    fn weights(model: &Mlp) -> Vec<Vec<u32>> {
        let w = read_weights(
            model,
            ["fc1.weight", "fc2.weight", "fc3.weight"].into_iter(),
        );
        ["fc1.weight", "fc2.weight", "fc3.weight"]
            .iter()
            .map(|p| w[*p].iter().map(|v| v.to_bits()).collect())
            .collect()
    }

    /// Two devices' gradients through `optimize_multi` give, bit for bit, what `SparseTrainer`
    /// gives with their sum, mask updates included.
    #[test]
    fn multi_device_step_equals_one_step_on_the_reduced_gradient() {
        let device = Device::default().autodiff();
        let sparsity = SparsityConfig::erk(0.8);
        let dst = DstConfig::new(Method::Rigl)
            .with_frequency(3)
            .with_end_step(12);
        let net = Mlp::new(DIMS, &device);
        let mut wrapped = SparseLearnerModel::init(net.clone(), &sparsity, dst.clone()).unwrap();
        let (mut model, mut trainer) = SparseTrainer::init(net, &sparsity, dst).unwrap();
        let (mut optim_multi, mut optim_one) = (sgd(), sgd());
        let initial = masks(&model);
        for i in 0..14u32 {
            let shard = |index| batch_of(index, 4, DIMS[0], DIMS[3], &device);
            let grads = |m: &SparseLearnerModel<Mlp>, index| TrainStep::step(m, shard(index)).grads;
            let multi = MultiGradientsParams {
                grads: vec![
                    (grads(&wrapped, 2 * i), device.clone()),
                    (grads(&wrapped, 2 * i + 1), device.clone()),
                ],
            };
            wrapped = wrapped.optimize_multi(&mut optim_multi, 0.1.into(), multi);

            let mut sum = GradientsAccumulator::new();
            sum.accumulate(&model, model.grads(2 * i, 4, &device));
            sum.accumulate(&model, model.grads(2 * i + 1, 4, &device));
            model = trainer
                .step(model, &mut optim_one, 0.1, sum.grads())
                .unwrap()
                .model;

            assert_eq!(masks(&wrapped.model), masks(&model), "masks at call {i}");
            assert_eq!(
                weights(&wrapped.model),
                weights(&model),
                "weights at call {i}"
            );
        }
        assert_eq!(wrapped.error(), None);
        assert_eq!(wrapped.step_count(), trainer.step_count());
        assert_eq!(wrapped.updates().len() as u64, trainer.state().updates);
        assert!(trainer.state().updates >= 4);
        assert_ne!(masks(&model), initial, "the masks changed");
    }

    #[derive(Clone)]
    struct Batches;

    impl Batcher<u32, Batch> for Batches {
        fn batch(&self, items: Vec<u32>, device: &Device) -> Batch {
            // One deterministic batch per first item; the rest of the items only set the size.
            batch_of(items[0], items.len(), DIMS[0], DIMS[3], device)
        }
    }

    /// burn-train's multi-device strategies (two workers on the CPU device): the masks change
    /// on the schedule and every layer keeps its planned number of active weights.
    #[test]
    fn learner_trains_sparsely_on_two_devices() {
        let device = Device::default().autodiff();
        for optim in [
            MultiDeviceOptim::OptimMainDevice,
            MultiDeviceOptim::OptimSharded,
        ] {
            let dst = DstConfig::new(Method::Rigl)
                .with_frequency(4)
                .with_end_step(40);
            let model =
                SparseLearnerModel::init(Mlp::new(DIMS, &device), &SparsityConfig::erk(0.8), dst)
                    .unwrap();
            let plan = model.model.sparsity_report();
            let initial = masks(&model.model);
            let loader = |n| {
                DataLoaderBuilder::new(Batches)
                    .batch_size(4)
                    .build(InMemDataset::new((0..n).collect::<Vec<u32>>()))
            };
            let dir = tempfile::tempdir().unwrap();
            let result = SupervisedTraining::new(dir.path(), loader(96), loader(8))
                .with_training_strategy(
                    ExecutionStrategy::multi(vec![device.clone(), device.clone()], optim).into(),
                )
                .num_epochs(2)
                .launch(Learner::new(model, sgd(), 0.05));
            assert!(result.error.is_none(), "{optim:?}: {:?}", result.error);
            let model = result.model;
            assert_eq!(model.error(), None, "{optim:?}");
            let updates = model.updates();
            assert!(updates.len() >= 3, "{optim:?}: {} updates", updates.len());
            let report = model.model.sparsity_report();
            assert_eq!(report.nnz, plan.nnz, "{optim:?}");
            for (got, want) in report.layers.iter().zip(&plan.layers) {
                assert_eq!(got.nnz, want.nnz, "{optim:?}: {}", got.path);
            }
            assert_ne!(masks(&model.model), initial, "{optim:?}: the masks changed");
        }
    }
}
