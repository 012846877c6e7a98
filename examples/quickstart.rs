//! Quick start: make a Burn model 90% sparse with one call, look at its masks, and train it.
//!
//! Run with `cargo run --release --example quickstart`.
//!
//! The task is real but small: classify points of three interleaved spirals, generated here,
//! with a 2-256-256-3 MLP whose hidden layers are sparse (ERK distribution, first layer dense).

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Linear, LinearConfig};
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rigl_burn::core::{Sparsify, SparsityConfig};

#[derive(Module, Debug)]
struct Mlp {
    fc1: Linear,
    fc2: Linear,
    fc3: Linear,
}

impl Mlp {
    fn new(device: &Device) -> Self {
        Self {
            fc1: LinearConfig::new(2, 256).init(device),
            fc2: LinearConfig::new(256, 256).init(device),
            fc3: LinearConfig::new(256, 3).init(device),
        }
    }

    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let x = relu(self.fc1.forward(x));
        let x = relu(self.fc2.forward(x));
        self.fc3.forward(x)
    }
}

/// Three spirals of `n` points each, with a little deterministic jitter.
fn spirals(n: usize, device: &Device) -> (Tensor<2>, Tensor<1, Int>) {
    let rng = rigl_burn::kernels::Philox::new(1);
    let mut xs = Vec::with_capacity(3 * n * 2);
    let mut ys = Vec::with_capacity(3 * n);
    for class in 0..3 {
        for i in 0..n {
            let r = i as f32 / n as f32;
            let t = class as f32 * 2.094 + r * 4.0 + 0.2 * rng.uniform(class, 0, i as u64);
            xs.push(r * t.sin());
            xs.push(r * t.cos());
            ys.push(class as i64);
        }
    }
    (
        Tensor::from_data(TensorData::new(xs, [3 * n, 2]), device),
        Tensor::from_data(TensorData::new(ys, [3 * n]), device),
    )
}

fn accuracy(model: &Mlp, x: Tensor<2>, y: Tensor<1, Int>) -> f32 {
    let n = y.dims()[0] as f32;
    let pred = model.forward(x).argmax(1).reshape([-1]);
    pred.equal(y).int().sum().into_scalar::<i64>() as f32 / n
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let device = Device::default().autodiff();
    let config = SparsityConfig::erk(0.9).first_layer_dense().with_seed(42);
    let mut model = Mlp::new(&device).sparsify(&config)?;
    println!(
        "Sparsified: {} at sparsity {}, first layer dense, seed {}",
        config.distribution, config.sparsity, config.seed
    );
    println!("{}\n", model.sparsity_report());

    let (x, y) = spirals(1000, &device);
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let mut optim = SgdConfig::new()
        .with_momentum(Some(
            MomentumConfig::new()
                .with_nesterov(true)
                .with_dampening(0.0),
        ))
        .init();
    let steps = 600;
    for step in 0..=steps {
        let loss = loss_fn.forward(model.forward(x.clone()), y.clone());
        if step % 100 == 0 {
            println!(
                "step {step:>4}  loss {:.4}  accuracy {:.3}",
                loss.clone().into_scalar::<f32>(),
                accuracy(&model.valid(), x.clone().inner(), y.clone().inner())
            );
        }
        if step == steps {
            break;
        }
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(0.1, model, grads);
    }

    let report = model.sparsity_report();
    println!("\nAfter training:\n{report}");
    assert_eq!(
        report.nnz,
        model.sparsity_plan(&config)?.n_active(),
        "sparsity is kept"
    );
    Ok(())
}
