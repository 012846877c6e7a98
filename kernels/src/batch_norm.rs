//! Training-mode batch normalisation in two passes forward and two backward on the CPU
//! backend ([`crate::cpu::batch_norm`]), differentiable, with Burn's `batch_norm_train`
//! elsewhere.

use crate::backend::batch_norm::BatchNormBackend;
use burn::backend::{Dispatch, DispatchDevice};
use burn::tensor::module::batch_norm_train as burn_batch_norm_train;
use burn::tensor::{DType, Tensor};

/// The output of [`batch_norm_train`]: the normalised input and the batch statistics.
#[derive(Debug, Clone)]
pub struct BatchNormTrainOutput<const D: usize> {
    /// The output, like the input.
    pub output: Tensor<D>,
    /// The mean of each channel, `[channels]`.
    pub mean: Tensor<1>,
    /// The biased variance of each channel, `[channels]`.
    pub variance: Tensor<1>,
}

/// Whether [`batch_norm_train`] runs the fused kernels for `x` (the CPU backend, `f32`).
pub fn batch_norm_fused<const D: usize>(x: &Tensor<D>) -> bool {
    matches!(
        x.device().as_dispatch().clone().inner(),
        DispatchDevice::Flex(_)
    ) && x.dtype() == DType::F32
}

/// Batch normalisation with the batch's statistics, as Burn's
/// [`batch_norm_train`](burn::tensor::module::batch_norm_train) computes it (biased variance),
/// fused on the CPU backend and Burn's elsewhere.
///
/// # Shapes
/// - `x`: `[batch, channels, ...]`; `gamma`, `beta`: `[channels]`
///
/// # Panics
/// When the shapes do not fit (as Burn's).
pub fn batch_norm_train<const D: usize>(
    x: Tensor<D>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    epsilon: f64,
) -> BatchNormTrainOutput<D> {
    let dims = x.dims();
    let [channels] = gamma.dims();
    assert!(
        D >= 2 && dims[1] == channels,
        "batch norm over {dims:?} with {channels} channels"
    );
    if !batch_norm_fused(&x) || gamma.dtype() != DType::F32 || beta.dtype() != DType::F32 {
        let r = burn_batch_norm_train(x, gamma, beta, epsilon);
        return BatchNormTrainOutput {
            output: r.output,
            mean: r.mean,
            variance: r.variance,
        };
    }
    let (y, mean, variance) = <Dispatch as BatchNormBackend>::fused_batch_norm_train(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        epsilon,
    );
    BatchNormTrainOutput {
        output: Tensor::from_dispatch(y),
        mean: Tensor::from_dispatch(mean),
        variance: Tensor::from_dispatch(variance),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap()
    }

    #[test]
    fn equals_burns_batch_norm_and_its_gradients() {
        let device = Device::flex().autodiff();
        // A large mean and a small spread: what cancels when the centring is late.
        for (dims, offset) in [
            ([3usize, 4, 5, 7], 0.0f32),
            ([1, 2, 1, 1], 0.0),
            ([16, 3, 9, 9], 100.0),
        ] {
            let n: usize = dims.iter().product();
            let x: Vec<f32> = (0..n)
                .map(|i| ((i * 37) % 23) as f32 / 11.0 - 1.0 + offset)
                .collect();
            let dy: Vec<f32> = (0..n).map(|i| ((i * 13) % 7) as f32 / 3.0 - 1.0).collect();
            let g: Vec<f32> = (0..dims[1]).map(|c| 0.5 + c as f32).collect();
            let b: Vec<f32> = (0..dims[1]).map(|c| c as f32 - 1.0).collect();
            let mut outs = Vec::new();
            for fused in [true, false] {
                let xt = Tensor::<4>::from_data(TensorData::new(x.clone(), dims), &device)
                    .require_grad();
                let gt = Tensor::<1>::from_data(TensorData::new(g.clone(), [dims[1]]), &device)
                    .require_grad();
                let bt = Tensor::<1>::from_data(TensorData::new(b.clone(), [dims[1]]), &device)
                    .require_grad();
                let (y, mean, var) = if fused {
                    let r = batch_norm_train(xt.clone(), gt.clone(), bt.clone(), 1e-5);
                    (r.output, r.mean, r.variance)
                } else {
                    let r = burn_batch_norm_train(xt.clone(), gt.clone(), bt.clone(), 1e-5);
                    (r.output, r.mean, r.variance)
                };
                let dyt = Tensor::<4>::from_data(TensorData::new(dy.clone(), dims), &device);
                let grads = (y.clone() * dyt).sum().backward();
                outs.push([
                    host(y),
                    host(mean),
                    host(var),
                    host(xt.grad(&grads).unwrap()),
                    host(gt.grad(&grads).unwrap()),
                    host(bt.grad(&grads).unwrap()),
                ]);
            }
            let names = [
                "output",
                "mean",
                "variance",
                "input grad",
                "gamma grad",
                "beta grad",
            ];
            for (k, name) in names.iter().enumerate() {
                let scale = outs[1][k].iter().fold(1.0f32, |m, v| m.max(v.abs()));
                for (a, b) in outs[0][k].iter().zip(&outs[1][k]) {
                    assert!(
                        (a - b).abs() <= 2e-4 * scale,
                        "{name} of {dims:?}: {a} vs {b}"
                    );
                }
            }
        }
    }
}
