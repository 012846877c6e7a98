//! Dynamic sparse training in a hand-written loop: RigL on a 95%-sparse MLP.
//!
//! Run with `cargo run --release --example rigl_loop [method]`, where `method` is one of
//! `rigl` (default), `set`, `snfs`, `scratch`, `static_rezero`, `snip`, `prune` or `dense`.
//!
//! `SparseTrainer::step` replaces the optimizer step: it trains, updates masks on the schedule
//! (RigL's update iterations train nothing, as in the reference), zeroes new connections and
//! their optimizer state, and returns the model in the gradient mode the next step needs. It
//! takes any Burn optimizer (`SgdConfig::new().init()`, `AdamConfig::new().init()`, ...);
//! `SparseSgd`, used here, computes Burn's SGD exactly and resets its momentum on the device.

mod common;

use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::GradientsParams;
use burn::optim::momentum::MomentumConfig;
use burn::tensor::Device;
use common::{Mlp, spirals};
use rigl_burn::core::optim::SparseSgdConfig;
use rigl_burn::core::{DropAnneal, DstConfig, Method, SparseTrainer, Sparsify, SparsityConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let method: Method = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "rigl".into())
        .parse()?;
    let device = Device::default().autodiff();
    let sparsity = SparsityConfig::erk(0.95).first_layer_dense().with_seed(7);
    let dst = DstConfig::new(method)
        .with_begin_step(0)
        .with_end_step(900)
        .with_frequency(50)
        .with_drop_fraction(0.3)
        .with_drop_anneal(DropAnneal::Cosine);
    let (mut model, mut trainer) = SparseTrainer::init(Mlp::new(&device), &sparsity, dst)?;
    println!(
        "{method}: {}\n",
        model
            .sparsity_report()
            .to_string()
            .lines()
            .last()
            .unwrap_or("")
    );

    let (x, y) = spirals(1000, &device);
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let mut optim = SparseSgdConfig::new()
        .with_momentum(Some(
            MomentumConfig::new()
                .with_nesterov(true)
                .with_dampening(0.0),
        ))
        .init();
    let mut calls = 0;
    while trainer.step_count() < 1200 {
        let loss = loss_fn.forward(model.forward(x.clone()), y.clone());
        let loss_value = loss.clone().into_scalar::<f32>();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let out = trainer.step(model, &mut optim, 0.1, grads)?;
        model = out.model;
        calls += 1;
        if let Some(u) = out.update.as_ref().filter(|u| u.step % 300 == 0) {
            println!(
                "update at step {:>4}: drop fraction {:.3}, {:.1}% of connections new, loss {loss_value:.4}",
                u.step,
                u.drop_fraction,
                100.0 * u.changed_fraction()
            );
        }
    }
    let report = model.sparsity_report();
    println!(
        "\n{} iterations, {} optimizer steps",
        calls,
        trainer.step_count()
    );
    println!("accuracy {:.3}\n{report}", model.accuracy(x, y));
    if let Some(plan) = trainer.plan() {
        assert_eq!(
            report.nnz,
            plan.n_active(),
            "the number of active weights is conserved"
        );
    }
    Ok(())
}
