//! Shared fixtures of the unit tests: a small MLP and deterministic batches.

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Linear, LinearConfig};
use burn::optim::GradientsParams;
use burn::tensor::activation::relu;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rigl_kernels::Philox;

/// A three-layer MLP with ReLU.
#[derive(Module, Debug)]
pub struct Mlp {
    pub fc1: Linear,
    pub fc2: Linear,
    pub fc3: Linear,
}

impl Mlp {
    pub fn new(dims: [usize; 4], device: &Device) -> Self {
        Self {
            fc1: LinearConfig::new(dims[0], dims[1]).init(device),
            fc2: LinearConfig::new(dims[1], dims[2]).init(device),
            fc3: LinearConfig::new(dims[2], dims[3]).init(device),
        }
    }

    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let x = relu(self.fc1.forward(x));
        let x = relu(self.fc2.forward(x));
        self.fc3.forward(x)
    }

    /// The cross-entropy gradients of batch `index`.
    pub fn grads(&self, index: u32, batch: usize, device: &Device) -> GradientsParams {
        let (x, y) = batch_of(
            index,
            batch,
            self.fc1.weight.shape()[0],
            self.fc3.weight.shape()[1],
            device,
        );
        let loss = CrossEntropyLossConfig::new()
            .init(device)
            .forward(self.forward(x), y);
        GradientsParams::from_grads(loss.backward(), self)
    }
}

/// The masks of the sparse layers of `model`, on the host.
pub fn masks<M: Module>(model: &M) -> Vec<Vec<bool>> {
    use crate::Sparsify;
    model
        .sparse_layers()
        .into_iter()
        .map(|l| crate::mask::bools_to_host(l.mask.expect("a sparse layer")))
        .collect()
}

/// Every weight and bias of `model`, as bits (for bit-exact comparisons).
pub fn weight_bits(model: &Mlp) -> Vec<Vec<u32>> {
    let bits = |t: Tensor<1>| -> Vec<u32> {
        crate::mask::floats_to_host(t)
            .into_iter()
            .map(f32::to_bits)
            .collect()
    };
    let mut out = Vec::new();
    for layer in [&model.fc1, &model.fc2, &model.fc3] {
        out.push(bits(layer.weight.val().inner().reshape([-1])));
        if let Some(b) = &layer.bias {
            out.push(bits(b.val().inner()));
        }
    }
    out
}

/// Six steps of Burn's optimizer and of `ours` from the same model must give the same weights
/// bit for bit after every step; returns the model `ours` trained.
pub fn assert_same_steps<O: crate::optim::SparseOptimizer>(
    mut burn: burn::optim::ModuleOptimizer,
    ours: &mut O,
    label: &str,
    device: &Device,
) -> Mlp {
    let start = Mlp::new([6, 10, 8, 3], device);
    let (mut a, mut b) = (start.clone(), start);
    for i in 0..6 {
        let lr = 0.01 + 0.005 * i as f64;
        let ga = a.grads(i, 8, device);
        a = burn.step(lr, a, ga);
        let gb = b.grads(i, 8, device);
        b = ours.step(lr.into(), b, gb);
        assert_eq!(weight_bits(&a), weight_bits(&b), "{label}: step {i}");
    }
    b
}

/// One step of `ours` (weight decay on the kernels only) from a fresh model: the kernels must
/// equal one step of Burn's optimizer with the decay (`decayed`), the biases one step without it
/// (`plain`), bit for bit.
pub fn assert_kernel_only_decay<O: crate::optim::SparseOptimizer>(
    mut decayed: burn::optim::ModuleOptimizer,
    mut plain: burn::optim::ModuleOptimizer,
    ours: &mut O,
    label: &str,
    device: &Device,
) {
    let start = Mlp::new([6, 10, 8, 3], device);
    let step = |optim: &mut dyn FnMut(Mlp, GradientsParams) -> Mlp| {
        let model = start.clone();
        let g = model.grads(0, 8, device);
        weight_bits(&optim(model, g))
    };
    let with_decay = step(&mut |m, g| decayed.step(0.05, m, g));
    let without = step(&mut |m, g| plain.step(0.05, m, g));
    let scoped = step(&mut |m, g| ours.step(0.05.into(), m, g));
    // weight_bits lists weight, bias of each layer: even entries are kernels.
    for (i, ((s, d), p)) in scoped.iter().zip(&with_decay).zip(&without).enumerate() {
        let (expected, other) = if i % 2 == 0 { (d, p) } else { (p, d) };
        assert_eq!(s, expected, "{label}: parameter {i}");
        assert_ne!(
            expected, other,
            "{label}: parameter {i} is not affected by the decay"
        );
    }
}

/// A deterministic batch: Philox normals-ish inputs and labels.
pub fn batch_of(
    index: u32,
    batch: usize,
    d_in: usize,
    classes: usize,
    device: &Device,
) -> (Tensor<2>, Tensor<1, Int>) {
    let g = Philox::new(99);
    let x: Vec<f32> = (0..(batch * d_in) as u64)
        .map(|i| g.uniform(1, index, i) * 2.0 - 1.0)
        .collect();
    let y: Vec<i64> = (0..batch as u64)
        .map(|i| (g.u32(2, index, i) % classes as u32) as i64)
        .collect();
    (
        Tensor::from_data(TensorData::new(x, [batch, d_in]), device),
        Tensor::from_data(TensorData::new(y, [batch]), device),
    )
}
