//! rigl-core on a CubeCL device (feature `wgpu`; lavapipe in CI): every selection of every
//! method runs on the device through rigl-kernels and decides exactly what it decides on the
//! CPU backend, and sparse training on the device keeps its invariants.

#![cfg(feature = "wgpu")]

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Linear, LinearConfig};
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, DeviceKind, Int, Tensor, TensorData};
use rigl_core::bools_to_host;
use rigl_core::optim::SparseSgdConfig;
use rigl_core::updater::GradualPruning;
use rigl_core::updater::{HostLayer, UpdateContext, UpdateInput};
use rigl_core::{DstConfig, MaskInit, Method, SparseTrainer, Sparsify, SparsityConfig};
use rigl_kernels::Philox;

fn wgpu() -> Device {
    let device = Device::wgpu(DeviceKind::DefaultDevice);
    let name = format!("{:?}", Tensor::<1>::zeros([1], &device).device());
    assert!(name.to_lowercase().contains("wgpu"), "not wgpu: {name}");
    device
}

/// Deterministic values in [-1, 1), quantised to `levels` steps so that ties are common.
fn values(stream: u32, n: usize, levels: u32) -> Vec<f32> {
    let g = Philox::new(3);
    (0..n as u64)
        .map(|i| (g.u32(stream, 0, i) % levels) as f32 / levels as f32 * 2.0 - 1.0)
        .collect()
}

fn mask(stream: u32, n: usize, active: usize) -> Vec<bool> {
    let keys: Vec<f32> = values(stream, n, 1 << 20);
    let k = rigl_kernels::cpu_reference::top_k_mask_f32(&keys, None, active).unwrap();
    k.mask
}

#[test]
fn every_method_decides_on_wgpu_as_on_the_cpu() {
    let gpu = wgpu();
    let cpu = Device::flex();
    // Three layers: small, odd-sized, and large enough for several kernel passes.
    let sizes = [(100, 10), (37, 20), (20_000, 1_000)];
    // (path, weights, mask, dense gradient, moving average) per layer.
    type Layer = (String, Vec<f32>, Vec<bool>, Vec<f32>, Vec<f32>);
    let data: Vec<Layer> = sizes
        .iter()
        .enumerate()
        .map(|(i, &(n, active))| {
            let s = 10 * i as u32;
            (
                format!("layers.{i}.weight"),
                values(s, n, 64),
                mask(s + 1, n, active),
                values(s + 2, n, 16),
                values(s + 3, n, 1000),
            )
        })
        .collect();
    let layers: Vec<HostLayer<'_>> = data
        .iter()
        .map(|(path, w, m, g, _)| HostLayer {
            path,
            weights: w,
            mask: m,
            dense_grad: Some(g),
            target_active: m.iter().filter(|&&b| b).count() / 2,
        })
        .collect();
    // SNFS's state: the moving averages, by layer.
    let averages: Vec<(String, Tensor<1>)> = data
        .iter()
        .map(|(path, _, _, _, a)| {
            let t = Tensor::<1>::from_data(TensorData::new(a.clone(), [a.len()]), &cpu);
            (path.clone(), t)
        })
        .collect();
    let on_cpu = UpdateInput::from_host(&layers, &cpu);
    let on_gpu = UpdateInput::from_host(&layers, &gpu);
    for method in Method::ALL {
        // A fresh updater for each decision: some keep state across updates.
        let fresh = || {
            let mut u = method.updater(&DstConfig::new(method))?;
            if method == Method::Snfs {
                u.load_state(averages.clone()).unwrap();
            }
            Some(u)
        };
        if fresh().is_none() {
            continue;
        }
        for (drop_fraction, allow_regrow) in [(0.3, true), (0.5, false), (0.0, true)] {
            let ctx = UpdateContext {
                step: 40,
                drop_fraction,
                seed: 11,
                allow_regrow,
                begin_step: 0,
                end_step: 100,
                threshold_decay: 0.0,
                weight_decay: 0.0,
            };
            let expect = fresh().unwrap().update(&ctx, &on_cpu).unwrap().to_host();
            let got = fresh().unwrap().update(&ctx, &on_gpu).unwrap().to_host();
            assert!(
                got == expect,
                "{method} (drop {drop_fraction}, regrow {allow_regrow}) differs on wgpu"
            );
        }
    }
}

#[derive(Module, Debug)]
struct Mlp {
    fc1: Linear,
    fc2: Linear,
    fc3: Linear,
}

impl Mlp {
    fn new(device: &Device) -> Self {
        Self {
            fc1: LinearConfig::new(64, 48).init(device),
            fc2: LinearConfig::new(48, 32).init(device),
            fc3: LinearConfig::new(32, 10).init(device),
        }
    }

    fn grads(&self, index: u32, device: &Device) -> GradientsParams {
        let g = Philox::new(5);
        let x: Vec<f32> = (0..16 * 64).map(|i| g.uniform(1, index, i) - 0.5).collect();
        let y: Vec<i64> = (0..16).map(|i| (g.u32(2, index, i) % 10) as i64).collect();
        let x = Tensor::<2>::from_data(TensorData::new(x, [16, 64]), device);
        let y = Tensor::<1, Int>::from_data(TensorData::new(y, [16]), device);
        let h = relu(self.fc2.forward(relu(self.fc1.forward(x))));
        let loss = CrossEntropyLossConfig::new()
            .init(device)
            .forward(self.fc3.forward(h), y);
        GradientsParams::from_grads(loss.backward(), self)
    }
}

fn masks(model: &Mlp) -> Vec<Vec<bool>> {
    model
        .sparse_layers()
        .into_iter()
        .map(|l| bools_to_host(l.mask.unwrap()))
        .collect()
}

#[test]
fn initial_masks_on_wgpu_equal_the_cpu() {
    let gpu = wgpu();
    let cpu = Device::flex();
    let model = Mlp::new(&cpu);
    for init in [MaskInit::Random, MaskInit::Magnitude] {
        let config = SparsityConfig::erk(0.8).with_init(init);
        let expect = masks(&model.sparsify(&config).unwrap());
        let got = masks(&model.clone().to_device(&gpu).sparsify(&config).unwrap());
        assert_eq!(got, expect, "{init:?} initial masks differ on wgpu");
    }
}

/// `SparseSgd` on the device: the same masks and weights as Burn's SGD through every update,
/// and its velocity zeroed at the new connections there.
#[test]
fn sparse_sgd_on_wgpu_equals_burn_sgd() {
    let device = wgpu().autodiff();
    let momentum = MomentumConfig::new()
        .with_nesterov(true)
        .with_dampening(0.0);
    let dst = DstConfig::new(Method::Rigl)
        .with_frequency(2)
        .with_end_step(8);
    let net = Mlp::new(&device);
    let sparsity = SparsityConfig::erk(0.8);
    let (mut a, mut ta) = SparseTrainer::init(net.clone(), &sparsity, dst.clone()).unwrap();
    let (mut b, mut tb) = SparseTrainer::init(net, &sparsity, dst).unwrap();
    let mut burn = SgdConfig::new()
        .with_momentum(Some(momentum.clone()))
        .init();
    let mut ours = SparseSgdConfig::new().with_momentum(Some(momentum)).init();
    let mut new_connections = 0;
    for i in 0..10 {
        let ga = a.grads(i, &device);
        a = ta.step(a, &mut burn, 0.1, ga).unwrap().model;
        let before = masks(&b);
        let gb = b.grads(i, &device);
        b = tb.step(b, &mut ours, 0.1, gb).unwrap().model;
        assert_eq!(masks(&a), masks(&b), "masks at call {i}");
        for (l, old) in b.sparse_layers().into_iter().zip(before) {
            let Some(v) = ours.velocity(l.id) else {
                continue;
            };
            let v: Vec<f32> = v.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
            let m = bools_to_host(l.mask.unwrap());
            for ((v, m), o) in v.iter().zip(&m).zip(&old) {
                if *m && !*o {
                    assert_eq!(*v, 0.0, "velocity at a new connection, call {i}");
                    new_connections += 1;
                }
            }
        }
    }
    assert!(new_connections > 0);
    let w = |m: &Mlp| -> Vec<f32> {
        m.fc2
            .weight
            .val()
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap()
    };
    assert_eq!(w(&a), w(&b), "weights after 10 calls");
}

#[test]
fn sparse_training_on_wgpu_keeps_its_invariants() {
    let device = wgpu().autodiff();
    for method in [Method::Rigl, Method::Set, Method::Snfs, Method::Prune] {
        let dst = DstConfig::new(method)
            .with_frequency(2)
            .with_end_step(8)
            .with_drop_fraction(0.3);
        let (mut model, mut trainer) =
            SparseTrainer::init(Mlp::new(&device), &SparsityConfig::erk(0.8), dst).unwrap();
        let plan: Vec<usize> = trainer
            .plan()
            .unwrap()
            .layers
            .iter()
            .filter(|l| l.masked)
            .map(|l| l.n_active)
            .collect();
        let mut optim = SgdConfig::new()
            .with_momentum(Some(MomentumConfig::new()))
            .init();
        let mut updates = 0;
        for i in 0..12 {
            let grads = model.grads(i, &device);
            let out = trainer.step(model, &mut optim, 0.1, grads).unwrap();
            model = out.model;
            if let Some(stats) = &out.update {
                updates += 1;
                for (l, &target) in stats.layers.iter().zip(&plan) {
                    if method != Method::Prune {
                        assert_eq!(l.active, target, "{method}: {} at step {i}", l.path);
                    }
                }
            }
            let nnz: Vec<usize> = masks(&model)
                .iter()
                .map(|m| m.iter().filter(|&&b| b).count())
                .collect();
            if method != Method::Prune {
                assert_eq!(nnz, plan, "{method}: nnz at step {i}");
            }
        }
        assert!(updates >= 4, "{method}: {updates} updates");
        if method == Method::Prune {
            let nnz: Vec<usize> = masks(&model)
                .iter()
                .map(|m| m.iter().filter(|&&b| b).count())
                .collect();
            // model_pruning's final count, round_half_even(f32(N) * (1 - s)), which may differ
            // by one from the plan's N - floor(s * N).
            let end = UpdateContext {
                step: 8,
                begin_step: 0,
                end_step: 8,
                ..UpdateContext::default()
            };
            let expect: Vec<usize> = trainer
                .plan()
                .unwrap()
                .layers
                .iter()
                .filter(|l| l.masked)
                .map(|l| GradualPruning::kept_at(l.numel(), l.sparsity, &end))
                .collect();
            assert_eq!(nnz, expect, "pruning ends at model_pruning's counts");
            assert!(nnz.iter().zip(&plan).all(|(n, p)| n.abs_diff(*p) <= 1));
        }
    }
}

/// Structured and global sparsity on the device: 2:4 kept exactly in every group after every
/// step by drop and grow, straight-through and gradual pruning, and a global ranking keeping
/// the plan's total.
#[test]
fn structured_and_global_sparsity_on_wgpu() {
    use rigl_core::{PruningScope, Structure};
    let device = wgpu().autodiff();
    for method in [
        Method::Rigl,
        Method::Set,
        Method::Snfs,
        Method::Ste,
        Method::Prune,
    ] {
        let dst = DstConfig::new(method)
            .with_frequency(2)
            .with_end_step(6)
            .with_drop_fraction(0.3);
        let sparsity = SparsityConfig::n_m(2, 4);
        let (mut model, mut trainer) =
            SparseTrainer::init(Mlp::new(&device), &sparsity, dst).unwrap();
        let plan = trainer.plan().unwrap().clone();
        let mut optim = SgdConfig::new().init();
        for i in 0..10 {
            let grads = model.grads(i, &device);
            model = trainer.step(model, &mut optim, 0.1, grads).unwrap().model;
            // Pruning and STE ramp every group from dense to 2 of 4 by the end step.
            if matches!(method, Method::Prune | Method::Ste) && trainer.step_count() <= 6 {
                continue;
            }
            for l in model.sparse_layers() {
                let groups = plan.layer(&l.path).unwrap().groups.unwrap();
                let view = bools_to_host(groups.to_view(l.mask.unwrap()));
                assert_eq!(
                    groups.first_violation(&view),
                    None,
                    "{method}: {} at call {i}",
                    l.path
                );
            }
        }
    }
    for method in [Method::Snip, Method::Prune, Method::Ste] {
        let dst = DstConfig::new(method)
            .with_frequency(2)
            .with_end_step(4)
            .with_pruning_scope(PruningScope::Global);
        let sparsity = SparsityConfig::uniform(0.9).with_structure(Structure::Unstructured);
        let (mut model, mut trainer) =
            SparseTrainer::init(Mlp::new(&device), &sparsity, dst).unwrap();
        let total: usize = trainer.plan().unwrap().n_active();
        let mut optim = SgdConfig::new().init();
        for i in 0..8 {
            let grads = model.grads(i, &device);
            model = trainer.step(model, &mut optim, 0.1, grads).unwrap().model;
        }
        let nnz: usize = masks(&model)
            .iter()
            .map(|m| m.iter().filter(|&&b| b).count())
            .sum();
        // SNIP keeps the plan's total; pruning ends at model_pruning's rounding of each layer.
        assert!(
            nnz.abs_diff(total) <= 3,
            "{method}: {nnz} active, plan {total}"
        );
    }
}

/// With every Vulkan driver and EGL vendor hidden, wgpu finds no adapter: `check_device` says
/// so with a typed error instead of the backend's panic. Runs in a child process (the
/// backend's device registry is process-wide).
#[test]
fn a_device_without_adapter_is_a_typed_error() {
    if std::env::var_os("RIGL_NO_ADAPTER_CHILD").is_some() {
        let err = rigl_core::check_device(&Device::wgpu(DeviceKind::DefaultDevice))
            .expect_err("no adapter should be found");
        assert!(
            matches!(err, rigl_core::SparsityError::DeviceUnavailable { .. }),
            "{err}"
        );
        println!("CHILD-SAW: {err}");
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "a_device_without_adapter_is_a_typed_error",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("RIGL_NO_ADAPTER_CHILD", "1")
        .env("VK_ICD_FILENAMES", "/nonexistent/icd.json")
        .env("VK_DRIVER_FILES", "/nonexistent/icd.json")
        .env("__EGL_VENDOR_LIBRARY_FILENAMES", "/nonexistent/egl.json")
        .env("LIBGL_ALWAYS_SOFTWARE", "0")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("CHILD-SAW: device") && stdout.contains("is not available"),
        "{stdout}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// A sparse layer on wgpu runs the CubeCL kernels and computes what the masked dense path
/// computes: `x W_masked + b`, and the same gradients.
#[test]
fn sparse_linear_runs_the_kernels_on_wgpu() {
    use rigl_core::nn::{Execution, SparseExecution, SparseLinearConfig};
    use rigl_core::{Sparsify, SparsityConfig};
    let gpu = wgpu().autodiff();
    let layer = SparseLinearConfig::new(16, 8)
        .with_execution(SparseExecution::new(Execution::Sparse))
        .init(&gpu)
        .sparsify(SparsityConfig::uniform(0.75))
        .unwrap();
    assert!(layer.runs_sparse());
    let dense = layer
        .clone()
        .with_execution(SparseExecution::new(Execution::Dense));
    let x: Vec<f32> = (0..48).map(|k| (k % 7) as f32 / 4.0 - 0.5).collect();
    let x = Tensor::<2>::from_data(TensorData::new(x, [3, 16]), &gpu);
    let run = |l: &rigl_core::nn::SparseLinear| {
        let y = l.forward(x.clone());
        let grads = (y.clone() * y.clone()).sum().backward();
        let g = l.weight.grad(&grads).unwrap();
        (
            rigl_core::floats_to_host(y.reshape([-1])),
            rigl_core::floats_to_host(g.reshape([-1])),
        )
    };
    let (got, want) = (run(&layer), run(&dense));
    for (a, b) in got.0.iter().chain(&got.1).zip(want.0.iter().chain(&want.1)) {
        assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
    }
}

/// On wgpu a sparse convolution runs the CubeCL sparse kernels, and its output and gradients
/// equal the masked path's within float tolerance; the fused batch norm and the fused dropout
/// compute as Burn's layers do (they have no CubeCL kernels), and never panic.
#[test]
fn conv_layers_on_wgpu() {
    use burn::nn::PaddingConfig2d;
    use rigl_core::nn::{
        Execution, FusedBatchNormConfig, FusedDropoutConfig, SparseConv2dConfig, SparseExecution,
    };
    use rigl_core::{Sparsify, SparsityConfig};
    let gpu = wgpu().autodiff();
    let conv = SparseConv2dConfig::new([3, 4], [3, 3])
        .with_padding(PaddingConfig2d::Same)
        .with_execution(SparseExecution::new(Execution::Sparse))
        .init(&gpu)
        .sparsify(SparsityConfig::uniform(0.5))
        .unwrap();
    assert!(conv.runs_sparse([5, 5]));
    let x: Vec<f32> = (0..150).map(|k| (k % 9) as f32 / 4.0 - 1.0).collect();
    let x = Tensor::<4>::from_data(TensorData::new(x, [2, 3, 5, 5]), &gpu);
    let masked = conv.clone().into_conv2d();
    let sparse_y = conv.forward(x.clone().require_grad());
    let dense_y = masked.forward(x.clone().require_grad());
    let sparse_grads = (sparse_y.clone() * sparse_y.clone()).sum().backward();
    let dense_grads = (dense_y.clone() * dense_y.clone()).sum().backward();
    let host = |t: Tensor<4>| rigl_core::floats_to_host(t.reshape([-1]));
    let (got, want) = (host(sparse_y), host(dense_y));
    let gw = host(conv.weight.grad(&sparse_grads).unwrap());
    let dw = host(masked.weight.grad(&dense_grads).unwrap());
    for (a, b) in got.iter().chain(&gw).zip(want.iter().chain(&dw)) {
        assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{a} vs {b}");
    }
    let bn = FusedBatchNormConfig::new(3).init(&gpu);
    let plain = bn.clone().into_batch_norm();
    let a = rigl_core::floats_to_host(bn.forward(x.clone()).reshape([-1]));
    let b = rigl_core::floats_to_host(plain.forward(x.clone()).reshape([-1]));
    for (a, b) in a.iter().zip(&b) {
        assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{a} vs {b}");
    }
    let dropped = FusedDropoutConfig::new(0.5).init().forward(x.clone());
    let y = rigl_core::floats_to_host(dropped.reshape([-1]));
    let xs = rigl_core::floats_to_host(x.reshape([-1]));
    assert!(y.iter().zip(&xs).all(|(y, x)| *y == 0.0 || *y == 2.0 * x));
}
