use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rigl_burn::core::nn::{Execution, SparseExecution};
use rigl_burn::core::optim::{SparseOptimizer, SparseSgdConfig};
use rigl_burn::core::{Sparsify, SparsityConfig};
use rigl_burn::models::MlpConfig;
use std::time::Instant;
fn t(name: &str, n: usize, mut f: impl FnMut()) {
    f();
    let s = Instant::now();
    for _ in 0..n {
        f();
    }
    println!(
        "{name}: {:.3} ms",
        s.elapsed().as_secs_f64() * 1e3 / n as f64
    );
}
fn main() {
    let device = Device::flex().autodiff();
    for ex in [Execution::Dense, Execution::Sparse] {
        println!("== {ex}");
        let sparsity = SparsityConfig::uniform(0.98)
            .with_custom_sparsity("fc2", 0.882)
            .last_layer_dense();
        let model = MlpConfig::new()
            .with_execution(SparseExecution::new(ex))
            .init(&device)
            .sparsify(&sparsity)
            .unwrap();
        let x = Tensor::<2>::random([100, 784], burn::tensor::Distribution::Default, &device);
        let y = Tensor::<1, Int>::from_data(
            TensorData::new((0..100i64).map(|i| i % 10).collect::<Vec<_>>(), [100]),
            &device,
        );
        let loss_fn = CrossEntropyLossConfig::new().init(&device);
        t("forward", 50, || {
            let _ = model.forward(x.clone()).into_data();
        });
        t("forward+backward", 50, || {
            let l = loss_fn.forward(model.forward(x.clone()), y.clone());
            let _ = l.backward();
        });
        let mut optim = SparseSgdConfig::new()
            .with_momentum(Some(
                burn::optim::momentum::MomentumConfig::new()
                    .with_momentum(0.9)
                    .with_dampening(0.0)
                    .with_nesterov(true),
            ))
            .with_weight_decay(Some(burn::optim::decay::WeightDecayConfig::new(1e-4)))
            .init();
        let mut slot = Some(model);
        t("step", 50, || {
            let m = slot.take().unwrap();
            let l = loss_fn.forward(m.forward(x.clone()), y.clone());
            let g = GradientsParams::from_grads(l.backward(), &m);
            slot = Some(optim.step(0.1.into(), m, g));
        });
        let m = slot.take().unwrap();
        t("loss+backward+gradparams (no step)", 50, || {
            let l = loss_fn.forward(m.forward(x.clone()), y.clone());
            let _g = GradientsParams::from_grads(l.backward(), &m);
        });
        let mut slot = Some(m);
        t(
            "optim step only (grads recomputed outside timing)",
            1,
            || {},
        );
        let mut total = 0.0;
        for _ in 0..30 {
            let m = slot.take().unwrap();
            let l = loss_fn.forward(m.forward(x.clone()), y.clone());
            let g = GradientsParams::from_grads(l.backward(), &m);
            let s0 = Instant::now();
            slot = Some(optim.step(0.1.into(), m, g));
            total += s0.elapsed().as_secs_f64();
        }
        println!("optim: {:.3} ms", total * 1e3 / 30.0);
    }
}
