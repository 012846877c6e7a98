//! Shared pieces of the examples: a small MLP and a three-spirals classification task.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Int, Tensor, TensorData};

/// A 2-256-256-3 MLP.
#[derive(Module, Debug)]
pub struct Mlp {
    pub fc1: Linear,
    pub fc2: Linear,
    pub fc3: Linear,
}

impl Mlp {
    pub fn new(device: &Device) -> Self {
        Self {
            fc1: LinearConfig::new(2, 256).init(device),
            fc2: LinearConfig::new(256, 256).init(device),
            fc3: LinearConfig::new(256, 3).init(device),
        }
    }

    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let x = relu(self.fc1.forward(x));
        let x = relu(self.fc2.forward(x));
        self.fc3.forward(x)
    }

    /// Classification accuracy on `(x, y)`, without gradients.
    pub fn accuracy(&self, x: Tensor<2>, y: Tensor<1, Int>) -> f32 {
        let model = self.valid();
        let n = y.dims()[0] as f32;
        let pred = model.forward(x.inner()).argmax(1).reshape([-1]);
        pred.equal(y.inner()).int().sum().into_scalar::<i64>() as f32 / n
    }
}

/// Three spirals of `n` points each, with a little deterministic jitter: `(point, class)`.
pub fn spiral_points(n: usize) -> Vec<([f32; 2], i64)> {
    let rng = rigl_burn::kernels::Philox::new(1);
    let mut points = Vec::with_capacity(3 * n);
    for class in 0..3 {
        for i in 0..n {
            let r = i as f32 / n as f32;
            let t = class as f32 * 2.094 + r * 4.0 + 0.2 * rng.uniform(class, 0, i as u64);
            points.push(([r * t.sin(), r * t.cos()], class as i64));
        }
    }
    points
}

/// [`spiral_points`] as an input tensor `[3n, 2]` and a label tensor `[3n]`.
#[allow(dead_code)]
pub fn spirals(n: usize, device: &Device) -> (Tensor<2>, Tensor<1, Int>) {
    let points = spiral_points(n);
    let xs: Vec<f32> = points.iter().flat_map(|(p, _)| *p).collect();
    let ys: Vec<i64> = points.iter().map(|(_, c)| *c).collect();
    (
        Tensor::from_data(TensorData::new(xs, [3 * n, 2]), device),
        Tensor::from_data(TensorData::new(ys, [3 * n]), device),
    )
}
