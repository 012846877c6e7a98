//! Dropout with a counter-based mask on the CPU backend ([`crate::cpu::dropout`]), about ten
//! times faster than drawing a Bernoulli tensor there; Burn's dropout elsewhere.

use crate::backend::dropout::DropoutBackend;
use burn::backend::{Dispatch, DispatchDevice};
use burn::tensor::{DType, Distribution, Tensor};

/// `x * mask / (1 - prob)` with a mask keeping each position with probability `1 - prob`,
/// drawn from `seed` on the CPU backend (`f32`; see [`crate::cpu::dropout`]) and from the
/// device's generator (as Burn's `Dropout`) elsewhere. Differentiable: the gradient is the
/// output gradient under the same mask.
///
/// # Panics
/// When `prob` is not in `[0, 1)`.
pub fn dropout<const D: usize>(x: Tensor<D>, prob: f64, seed: u64) -> Tensor<D> {
    assert!(
        prob.is_finite() && (0.0..1.0).contains(&prob),
        "dropout probability {prob} is not in [0, 1)"
    );
    if prob == 0.0 {
        return x;
    }
    let keep = 1.0 - prob;
    let flex = matches!(
        x.device().as_dispatch().clone().inner(),
        DispatchDevice::Flex(_)
    );
    if !flex || x.dtype() != DType::F32 {
        let mask = x.random_like(Distribution::Bernoulli(keep));
        return x * mask * (1.0 / keep);
    }
    Tensor::from_dispatch(<Dispatch as DropoutBackend>::fused_dropout(
        x.into_dispatch(),
        keep,
        seed,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    #[test]
    fn the_gradient_is_the_output_gradient_under_the_same_mask() {
        let device = Device::flex().autodiff();
        let n = 10_007;
        let x = Tensor::<2>::from_data(
            TensorData::new((0..n).map(|i| 1.0 + i as f32 / n as f32).collect(), [1, n]),
            &device,
        )
        .require_grad();
        let y = dropout(x.clone(), 0.25, 7);
        let dy = Tensor::<2>::from_data(TensorData::new(vec![3.0f32; n], [1, n]), &device);
        let grads = (y.clone() * dy).sum().backward();
        let host = |t: Tensor<2>| {
            t.into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .unwrap()
        };
        let (y, dx, x) = (host(y), host(x.grad(&grads).unwrap()), host(x));
        let scale = (1.0 / 0.75f64) as f32;
        let mut kept = 0;
        for ((y, dx), x) in y.iter().zip(&dx).zip(&x) {
            if *y == 0.0 {
                assert_eq!(*dx, 0.0);
            } else {
                kept += 1;
                assert_eq!(*y, x * scale);
                assert_eq!(*dx, 3.0 * scale);
            }
        }
        assert!((kept as f64 / n as f64 - 0.75).abs() < 0.02, "{kept}");
    }
}
