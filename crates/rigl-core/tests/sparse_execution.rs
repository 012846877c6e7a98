//! Sparse execution trains like the masked dense path, for every method, on a network of
//! sparse convolutions and sparse linear layers: the same masks after
//! every step (mask updates included) and weights within `1e-5 * (1 + |w|)` after 40 steps;
//! the sparse kernels really run between updates and the dense path runs on the steps that
//! need the dense gradient.
//!
//! The bound: both paths compute the same products and differ only in the order of their
//! `f32` sums (relative error about `fan_in * 2^-24` per product, ~1e-6 here), which SGD carries
//! forward without amplifying at these learning rates.

use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::momentum::MomentumConfig;
use burn::tensor::activation::relu;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rigl_core::nn::{
    Execution, SparseConv2d, SparseConv2dConfig, SparseExecution, SparseLinear, SparseLinearConfig,
};
use rigl_core::optim::SparseSgdConfig;
use rigl_core::{
    DstConfig, GradientMode, Method, SparseTrainer, Sparsify, SparsityConfig, floats_to_host,
};

/// Two convolutions (3x3 "same", 3x3 stride 2) and two linear layers.
#[derive(Module, Debug)]
struct Net {
    conv1: SparseConv2d,
    conv2: SparseConv2d,
    a: SparseLinear,
    c: SparseLinear,
}

const STEPS: usize = 40;

impl Net {
    fn seeded(execution: Execution, device: &Device) -> Self {
        static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
        device.seed(11);
        let execution = SparseExecution::new(execution);
        let layer = |i, o| {
            SparseLinearConfig::new(i, o)
                .with_execution(execution)
                .init(device)
        };
        let conv = |i, o, stride| {
            SparseConv2dConfig::new([i, o], [3, 3])
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .with_execution(execution)
                .init(device)
        };
        let net = Self {
            conv1: conv(2, 6, 1),
            conv2: conv(6, 8, 2),
            a: layer(72, 24),
            c: layer(24, 5),
        };
        // Materialise the lazy parameters under the seed.
        let _ = net.weights();
        net
    }

    /// Cross-entropy gradients of batch `i` (batch 3 every fifth step: the small-batch kernels).
    fn grads(&self, i: usize, device: &Device) -> burn::optim::GradientsParams {
        let batch = if i % 5 == 4 { 3 } else { 16 };
        let x: Vec<f32> = (0..batch * 72)
            .map(|k| ((k * 13 + i * 7) % 17) as f32 / 8.0 - 1.0)
            .collect();
        let x = Tensor::<4>::from_data(TensorData::new(x, [batch, 2, 6, 6]), device);
        let y: Vec<i64> = (0..batch).map(|k| ((k + i) % 5) as i64).collect();
        let y = Tensor::<1, Int>::from_data(TensorData::new(y, [batch]), device);
        let h = relu(self.conv2.forward(relu(self.conv1.forward(x))));
        let h = relu(self.a.forward(h.reshape([batch as i32, -1])));
        let loss = CrossEntropyLossConfig::new()
            .init(device)
            .forward(self.c.forward(h), y);
        burn::optim::GradientsParams::from_grads(loss.backward(), self)
    }

    /// Whether each layer's next forward runs sparse.
    fn runs_sparse(&self) -> Vec<bool> {
        vec![
            self.conv1.runs_sparse([6, 6]),
            self.conv2.runs_sparse([6, 6]),
            self.a.runs_sparse(),
            self.c.runs_sparse(),
        ]
    }

    /// Every weight and bias, flattened.
    fn weights(&self) -> Vec<Vec<f32>> {
        let flat = |t: Tensor<1>| floats_to_host(t);
        let mut out = Vec::new();
        for conv in [&self.conv1, &self.conv2] {
            out.push(flat(conv.weight.val().reshape([-1])));
            out.push(flat(conv.bias.as_ref().unwrap().val()));
        }
        for l in [&self.a, &self.c] {
            out.push(flat(l.weight.val().reshape([-1])));
            out.push(flat(l.bias.as_ref().unwrap().val()));
        }
        out
    }
}

/// Per step: the masks, the weights and biases, and whether each layer ran sparse.
type Trace = Vec<(Vec<Vec<bool>>, Vec<Vec<f32>>, Vec<bool>)>;

fn run(method: Method, execution: Execution) -> Trace {
    let device = Device::flex().autodiff();
    let sparsity = SparsityConfig::erk(0.8).with_seed(3);
    let dst = DstConfig::new(method)
        .with_frequency(4)
        .with_end_step(30)
        .with_drop_fraction(0.3);
    let (mut model, mut trainer) =
        SparseTrainer::init(Net::seeded(execution, &device), &sparsity, dst).unwrap();
    let mut optim = SparseSgdConfig::new()
        .with_momentum(Some(
            MomentumConfig::new().with_momentum(0.9).with_dampening(0.0),
        ))
        .init();
    let mut trace = Vec::new();
    for i in 0..STEPS {
        // What the forward of this step runs.
        let sparse = model.runs_sparse();
        let masked = !model.sparse_layers().is_empty();
        if trainer.next_gradient_mode() == GradientMode::Dense || !masked {
            assert!(
                sparse.iter().all(|s| !s),
                "{method}: a dense-gradient step ran sparse"
            );
        } else if execution == Execution::Sparse {
            assert!(
                sparse.iter().all(|s| *s),
                "{method}: step {i} did not run sparse"
            );
        }
        let g = model.grads(i, &device);
        model = trainer.step(model, &mut optim, 0.05, g).unwrap().model;
        let masks = model
            .sparse_layers()
            .into_iter()
            .map(|l| rigl_core::bools_to_host(l.mask.unwrap()))
            .collect();
        let weights = model.weights();
        trace.push((masks, weights, sparse));
    }
    trace
}

#[test]
fn every_method_trains_the_same_with_sparse_execution() {
    for method in Method::ALL {
        let dense = run(method, Execution::Dense);
        let sparse = run(method, Execution::Sparse);
        for (step, (d, s)) in dense.iter().zip(&sparse).enumerate() {
            assert_eq!(d.0, s.0, "{method}: masks differ after step {step}");
            for (a, b) in d.1.iter().flatten().zip(s.1.iter().flatten()) {
                assert!(
                    (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                    "{method}: weights differ after step {step}: {a} vs {b}"
                );
            }
            assert!(
                d.2.iter().all(|r| !r),
                "{method}: dense execution ran sparse"
            );
        }
        // Methods that need the dense gradient only at updates run the kernels in between.
        // SNFS keeps a moving average of the dense gradient of every step, and straight-through
        // pruning trains every stored weight on it, so they never can.
        let sparse_steps = sparse.iter().filter(|s| s.2.iter().any(|r| *r)).count();
        match method {
            Method::Dense | Method::Snfs | Method::Ste => {
                assert_eq!(sparse_steps, 0, "{method}")
            }
            _ => assert!(
                sparse_steps >= STEPS / 2,
                "{method}: only {sparse_steps} sparse steps"
            ),
        }
    }
}
