//! The tensor-level sparse convolution: `y = conv2d(x, W)` over the active taps of a
//! [`SparsePattern`], differentiable (the backward runs the sparse input gradient and the
//! weight gradient at active taps only), on the devices whose backend has the kernels.

use crate::backend::sparse_conv2d::SparseConv2dBackend;
use crate::cpu_reference::sparse_conv2d::Conv2dGeometry;
use crate::cpu_reference::sparse_pattern::{SparseError, SparsePattern};
use burn::backend::{Dispatch, DispatchDevice};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{DType, Device, Tensor};
use std::sync::Arc;

/// Whether [`sparse_conv2d`] runs on `device` for `dtype` tensors (the CPU and CubeCL
/// backends, `f32`);
/// when not, it returns [`SparseError::Unsupported`] naming what is missing.
pub fn sparse_conv2d_support(device: &Device, dtype: DType) -> Result<(), SparseError> {
    match device.as_dispatch().clone().inner() {
        DispatchDevice::Flex(_) => {}
        #[cfg(feature = "cube")]
        DispatchDevice::Cube(_) => {}
        #[allow(unreachable_patterns)]
        other => {
            return Err(SparseError::Unsupported {
                what: format!("convolutions on backend of device {other:?}"),
            });
        }
    }
    if dtype != DType::F32 {
        return Err(SparseError::Unsupported {
            what: format!("dtype {dtype:?}"),
        });
    }
    Ok(())
}

/// `y = conv2d(x, W)` (no bias) over the active taps of `pattern`; the inactive values of
/// `weight` are not read, and its gradient is zero there.
///
/// # Shapes
/// - `x`: `[batch, channels_in, h, w]`
/// - `weight`: `[channels_out, channels_in, kh, kw]`, `pattern` `[channels_out, channels_in *
///   kh * kw]`
/// - output: `[batch, channels_out, oh, ow]`, as Burn's `conv2d` with `options`
///
/// # Errors
/// [`SparseError::Shape`] when the shapes do not fit, [`SparseError::Unsupported`] for grouped
/// convolutions and devices or element types without sparse kernels
/// ([`sparse_conv2d_support`]).
pub fn sparse_conv2d(
    x: Tensor<4>,
    weight: Tensor<4>,
    pattern: &Arc<SparsePattern>,
    options: &ConvOptions<2>,
) -> Result<Tensor<4>, SparseError> {
    let geometry = Conv2dGeometry::new(
        x.dims(),
        weight.dims(),
        options.stride,
        options.padding,
        options.dilation,
        options.groups,
    )?;
    geometry.check_pattern(pattern)?;
    sparse_conv2d_support(&x.device(), x.dtype())?;
    sparse_conv2d_support(&weight.device(), weight.dtype())?;
    Ok(Tensor::from_dispatch(
        <Dispatch as SparseConv2dBackend>::sparse_conv2d(
            x.into_dispatch(),
            weight.into_dispatch(),
            pattern.clone(),
            geometry,
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;
    use burn::tensor::module::conv2d;

    #[test]
    fn gradients_equal_autodiff_of_the_masked_dense_convolution() {
        let device = Device::flex().autodiff();
        let (xs, ws) = ([2, 3, 5, 6], [4, 3, 3, 3]);
        let taps = 27;
        let mask: Vec<bool> = (0..4 * taps).map(|i| i % 3 != 1 && i / taps != 2).collect();
        let pattern = Arc::new(SparsePattern::from_mask(4, taps, &mask).unwrap());
        let w: Vec<f32> = (0..4 * taps).map(|i| (i % 9) as f32 * 0.25 - 1.0).collect();
        let x: Vec<f32> = (0..180).map(|i| (i % 7) as f32 - 3.0).collect();
        let mk = |v: &[f32], s: [usize; 4]| {
            Tensor::<4>::from_data(TensorData::new(v.to_vec(), s), &device).require_grad()
        };
        for options in [
            ConvOptions::new([1, 1], [1, 1], [1, 1], 1),
            ConvOptions::new([2, 1], [0, 1], [1, 2], 1),
        ] {
            let (xa, wa) = (mk(&x, xs), mk(&w, ws));
            let y = sparse_conv2d(xa.clone(), wa.clone(), &pattern, &options).unwrap();
            let grads = (y.clone() * y.clone()).sum().backward();
            let (xd, wd) = (mk(&x, xs), mk(&w, ws));
            let m = Tensor::<4, burn::tensor::Bool>::from_data(
                TensorData::new(mask.clone(), ws),
                &device,
            );
            let yd = conv2d(
                xd.clone(),
                wd.clone().mask_fill(m.bool_not(), 0.0),
                None,
                options.clone(),
            );
            let dgrads = (yd.clone() * yd.clone()).sum().backward();
            // Small integers and quarters: every value is exact, in any order of sums.
            y.into_data().assert_eq(&yd.into_data(), true);
            xa.grad(&grads)
                .unwrap()
                .into_data()
                .assert_eq(&xd.grad(&dgrads).unwrap().into_data(), true);
            wa.grad(&grads)
                .unwrap()
                .into_data()
                .assert_eq(&wd.grad(&dgrads).unwrap().into_data(), true);
        }
    }

    #[test]
    fn grouped_convolutions_and_wrong_patterns_are_typed_errors() {
        let device = Device::flex();
        let pattern = Arc::new(SparsePattern::from_mask(4, 9, &[true; 36]).unwrap());
        let err = sparse_conv2d(
            Tensor::zeros([1, 4, 5, 5], &device),
            Tensor::zeros([4, 1, 3, 3], &device),
            &pattern,
            &ConvOptions::new([1, 1], [1, 1], [1, 1], 4),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "no sparse kernels for grouped convolutions (groups 4)"
        );
        let err = sparse_conv2d(
            Tensor::zeros([1, 2, 5, 5], &device),
            Tensor::zeros([4, 2, 3, 3], &device),
            &pattern,
            &ConvOptions::new([1, 1], [1, 1], [1, 1], 1),
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                SparseError::Shape {
                    operand: "pattern columns",
                    ..
                }
            ),
            "{err}"
        );
    }
}
