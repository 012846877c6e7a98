//! Quick start: make a Burn model 90% sparse with one call, look at its masks, and train it.
//!
//! Run with `cargo run --release --example quickstart`.
//!
//! The task is real but small: classify points of three interleaved spirals, generated here,
//! with a 2-256-256-3 MLP whose hidden layers are sparse (ERK distribution, first layer dense).

mod common;

use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::Device;
use common::{Mlp, spirals};
use rigl_burn::core::{Sparsify, SparsityConfig};

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
                model.accuracy(x.clone(), y.clone())
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
