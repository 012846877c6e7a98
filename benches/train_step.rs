//! Training-step time, sparse (masked) against dense, on the CPU backend, for steps without
//! and with a mask update, and the cost of zeroing optimizer state at new connections on a
//! ResNet-50-sized model.
//!
//! Run with `cargo bench --bench train_step`. Results and the machine they ran on are in
//! `benches/RESULTS.md`.

use burn::module::{Module, Param};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Linear, LinearConfig};
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, ModuleOptimizer, SgdConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use divan::Bencher;
use rigl_burn::core::optim::{SparseOptimizer, SparseSgd, SparseSgdConfig};
use rigl_burn::core::updater::catalogue::resnet50_rigl;
use rigl_burn::core::{DstConfig, Method, SparseTrainer, SparsityConfig};
use rigl_burn::models::{WideResNet, WideResNetConfig};

fn main() {
    divan::main();
}

/// The MNIST MLP of the reference set-up, 784-300-100-10.
#[derive(Module, Debug)]
struct Mlp {
    fc1: Linear,
    fc2: Linear,
    fc3: Linear,
}

impl Mlp {
    fn new(device: &Device) -> Self {
        Self {
            fc1: LinearConfig::new(784, 300).init(device),
            fc2: LinearConfig::new(300, 100).init(device),
            fc3: LinearConfig::new(100, 10).init(device),
        }
    }

    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let x = relu(self.fc1.forward(x));
        let x = relu(self.fc2.forward(x));
        self.fc3.forward(x)
    }

    fn grads(&self, x: &Tensor<2>, y: &Tensor<1, Int>) -> GradientsParams {
        let loss = CrossEntropyLossConfig::new()
            .init(&x.device())
            .forward(self.forward(x.clone()), y.clone());
        GradientsParams::from_grads(loss.backward(), self)
    }
}

fn batch(device: &Device) -> (Tensor<2>, Tensor<1, Int>) {
    let x = Tensor::random([100, 784], Distribution::Uniform(0.0, 1.0), device);
    let y: Vec<i64> = (0..100).map(|i| i % 10).collect();
    (x, Tensor::from_data(TensorData::new(y, [100]), device))
}

fn sgd() -> ModuleOptimizer {
    SgdConfig::new()
        .with_momentum(Some(
            MomentumConfig::new()
                .with_nesterov(true)
                .with_dampening(0.0),
        ))
        .init()
}

fn sparse_sgd() -> SparseSgd {
    SparseSgdConfig::new()
        .with_momentum(Some(
            MomentumConfig::new()
                .with_nesterov(true)
                .with_dampening(0.0),
        ))
        .init()
}

fn reference_sparsity() -> SparsityConfig {
    SparsityConfig::uniform(0.98)
        .with_custom_sparsity("fc2", 0.882)
        .last_layer_dense()
}

/// Dense MLP: forward, backward, SGD step.
#[divan::bench(sample_count = 60)]
fn mlp_dense_step(bencher: Bencher) {
    let device = Device::default().autodiff();
    let (x, y) = batch(&device);
    let mut model = Mlp::new(&device);
    let mut optim = sgd();
    bencher.bench_local(|| {
        let grads = model.grads(&x, &y);
        model = optim.step(0.1, model.clone(), grads);
    });
}

/// 98%-sparse MLP (RigL), a step without mask update: forward, backward, step.
#[divan::bench(sample_count = 60)]
fn mlp_sparse_step(bencher: Bencher) {
    let device = Device::default().autodiff();
    let (x, y) = batch(&device);
    let dst = DstConfig::new(Method::Rigl).with_begin_step(1_000_000_000);
    let (mut model, mut trainer) =
        SparseTrainer::init(Mlp::new(&device), &reference_sparsity(), dst).unwrap();
    let mut optim = sgd();
    bencher.bench_local(|| {
        let grads = model.grads(&x, &y);
        model = trainer
            .step(model.clone(), &mut optim, 0.1, grads)
            .unwrap()
            .model;
    });
}

/// 98%-sparse MLP (RigL), an update step: forward and backward in dense-gradient mode, then
/// the mask update (drop, grow, zeroing of new weights and optimizer state), with Burn's SGD
/// (`ModuleOptimizer`, state reset through its record) and with `SparseSgd` (reset on the
/// device).
#[divan::bench(sample_count = 30, args = ["burn_sgd", "sparse_sgd"])]
fn mlp_sparse_update_step(bencher: Bencher, optimizer: &str) {
    match optimizer {
        "burn_sgd" => mlp_update_step_with(bencher, sgd()),
        _ => mlp_update_step_with(bencher, sparse_sgd()),
    }
}

fn mlp_update_step_with<O: SparseOptimizer + Clone>(bencher: Bencher, optim: O) {
    let device = Device::default().autodiff();
    let (x, y) = batch(&device);
    let dst = DstConfig::new(Method::Rigl).with_frequency(1);
    let (model, trainer) =
        SparseTrainer::init(Mlp::new(&device), &reference_sparsity(), dst).unwrap();
    // One training step first, so that the optimizer has state to reset.
    let mut optim = optim;
    let grads = model.grads(&x, &y);
    let (trainer, optim, model) = {
        let mut t = trainer;
        let m = t.step(model, &mut optim, 0.1, grads).unwrap().model;
        let g = m.grads(&x, &y);
        let m = t.step(m, &mut optim, 0.1, g).unwrap().model;
        (t, optim, m)
    };
    assert!(trainer.is_update_step());
    bencher
        .with_inputs(|| (model.clone(), trainer.clone(), optim.clone()))
        .bench_local_values(|(model, mut t, mut o)| {
            let grads = model.grads(&x, &y);
            let out = t.step(model, &mut o, 0.1, grads).unwrap();
            assert!(out.update.is_some());
            (out.model, t, o)
        });
}

/// A module with the 54 kernel shapes of ResNet-50 (25.5M weights).
#[derive(Module, Debug)]
struct Resnet50Kernels {
    convs: Vec<Param<Tensor<4>>>,
    fc: Param<Tensor<2>>,
}

fn resnet50_conv_shapes() -> Vec<[usize; 4]> {
    let mut shapes = vec![[64, 3, 7, 7]];
    let mut c_in = 64;
    for (blocks, width) in [(3, 64), (4, 128), (6, 256), (3, 512)] {
        for b in 0..blocks {
            shapes.push([width, c_in, 1, 1]);
            shapes.push([width, width, 3, 3]);
            shapes.push([width * 4, width, 1, 1]);
            if b == 0 {
                shapes.push([width * 4, c_in, 1, 1]);
            }
            c_in = width * 4;
        }
    }
    shapes
}

/// Zeroing SGD-momentum state at 30% of the active positions of every layer of a
/// ResNet-50-sized model at 90% sparsity (one mask update's optimizer-state reset), for Burn's
/// SGD (`ModuleOptimizer`: a round trip of its record through the host) and for `SparseSgd`
/// (one masked fill per layer on the device).
#[divan::bench(sample_count = 5, args = ["burn_sgd", "sparse_sgd"])]
fn resnet50_optimizer_reset(bencher: Bencher, optimizer: &str) {
    match optimizer {
        "burn_sgd" => resnet50_reset_with(bencher, sgd()),
        _ => resnet50_reset_with(bencher, sparse_sgd()),
    }
}

fn resnet50_reset_with<O: SparseOptimizer + Clone>(bencher: Bencher, optim: O) {
    let device = Device::default().autodiff();
    let model = Resnet50Kernels {
        convs: resnet50_conv_shapes()
            .into_iter()
            .map(|s| {
                Param::from_tensor(Tensor::random(s, Distribution::Normal(0.0, 0.01), &device))
            })
            .collect(),
        fc: Param::from_tensor(Tensor::random(
            [2048, 1000],
            Distribution::Normal(0.0, 0.01),
            &device,
        )),
    };
    // Give every parameter momentum state with one step.
    let loss = model
        .convs
        .iter()
        .map(|p| p.val().sum())
        .fold(model.fc.val().sum(), |a, b| a + b);
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let mut optim = optim;
    let model = optim.step(0.1.into(), model, grads);
    let reset = |id, n: usize| {
        let flags: Vec<bool> = (0..n).map(|i| i % 33 == 0).collect();
        (id, Tensor::from_data(TensorData::new(flags, [n]), &device))
    };
    let mut resets: Vec<_> = model
        .convs
        .iter()
        .map(|p| reset(p.id, p.shape().num_elements()))
        .collect();
    resets.push(reset(model.fc.id, model.fc.shape().num_elements()));
    bencher
        .with_inputs(|| optim.clone())
        .bench_local_values(|mut o| {
            assert_eq!(o.reset_slots(&resets).unwrap(), 54);
            o
        });
}

/// RigL's whole mask decision (drop by |w|, grow by |g| outside the kept set, new-connection
/// mask) on the 54 ResNet-50 kernels at 90% sparsity, drop fraction 0.3
/// (`rigl_core::updater::catalogue::resnet50_rigl`, the case `rigl bench` times): the two segmented
/// selections over all layers at once, as `SparseTrainer` runs them. Compare with
/// `resnet50_optimizer_reset` to see where an update's time goes.
#[divan::bench(sample_count = 10)]
fn resnet50_rigl_mask_decision(bencher: Bencher) {
    let (input, ctx) = resnet50_rigl(&Device::default());
    let mut rigl = Method::Rigl.updater(&DstConfig::new(Method::Rigl)).unwrap();
    bencher.bench_local(|| {
        let d = rigl.update(&ctx, &input).unwrap();
        // Wait for the result (the CPU backend may run lazily).
        d.reset.int().sum().into_scalar::<i64>()
    });
}

fn wrn_batch(device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
    let x = Tensor::random([32, 3, 32, 32], Distribution::Normal(0.0, 1.0), device);
    let y: Vec<i64> = (0..32).map(|i| i % 10).collect();
    (x, Tensor::from_data(TensorData::new(y, [32]), device))
}

fn wrn_grads(model: &WideResNet, x: &Tensor<4>, y: &Tensor<1, Int>) -> GradientsParams {
    let loss = CrossEntropyLossConfig::new()
        .init(&x.device())
        .forward(model.forward(x.clone()), y.clone());
    GradientsParams::from_grads(loss.backward(), model)
}

/// WRN-22-2 on CIFAR-sized input, batch 32, dense: forward, backward, SGD.
#[divan::bench(sample_count = 5)]
fn wrn_dense_step(bencher: Bencher) {
    let device = Device::default().autodiff();
    let (x, y) = wrn_batch(&device);
    let mut model = WideResNetConfig::new().init(&device);
    let mut optim = sgd();
    bencher.bench_local(|| {
        let grads = wrn_grads(&model, &x, &y);
        model = optim.step(0.1, model.clone(), grads);
    });
}

/// WRN-22-2, 90% ERK (first conv dense), RigL, a step without mask update.
#[divan::bench(sample_count = 5)]
fn wrn_sparse_step(bencher: Bencher) {
    let device = Device::default().autodiff();
    let (x, y) = wrn_batch(&device);
    let dst = DstConfig::new(Method::Rigl).with_begin_step(1_000_000_000);
    let sparsity = SparsityConfig::erk(0.9).first_layer_dense();
    let (mut model, mut trainer) =
        SparseTrainer::init(WideResNetConfig::new().init(&device), &sparsity, dst).unwrap();
    let mut optim = sgd();
    bencher.bench_local(|| {
        let grads = wrn_grads(&model, &x, &y);
        model = trainer
            .step(model.clone(), &mut optim, 0.1, grads)
            .unwrap()
            .model;
    });
}

/// WRN-22-2, 90% ERK, a RigL update step (dense-gradient pass, drop, grow, resets).
#[divan::bench(sample_count = 5)]
fn wrn_sparse_update_step(bencher: Bencher) {
    let device = Device::default().autodiff();
    let (x, y) = wrn_batch(&device);
    let dst = DstConfig::new(Method::Rigl).with_frequency(1);
    let sparsity = SparsityConfig::erk(0.9).first_layer_dense();
    let (model, mut trainer) =
        SparseTrainer::init(WideResNetConfig::new().init(&device), &sparsity, dst).unwrap();
    let mut optim = sgd();
    let g = wrn_grads(&model, &x, &y);
    let model = trainer.step(model, &mut optim, 0.1, g).unwrap().model;
    let g = wrn_grads(&model, &x, &y);
    let model = trainer.step(model, &mut optim, 0.1, g).unwrap().model;
    assert!(trainer.is_update_step());
    bencher
        .with_inputs(|| (model.clone(), trainer.clone(), optim.clone()))
        .bench_local_values(|(model, mut t, mut o)| {
            let grads = wrn_grads(&model, &x, &y);
            let out = t.step(model, &mut o, 0.1, grads).unwrap();
            assert!(out.update.is_some());
            (out.model, t, o)
        });
}
