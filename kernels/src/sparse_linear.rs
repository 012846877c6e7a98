//! The tensor-level sparse linear product: `y = x W` over the active positions of a
//! [`SparsePattern`], differentiable (the backward runs the sparse input gradient and the
//! weight gradient at active positions only), on the devices whose backend has the kernels.

use crate::backend::sparse_linear::SparseLinearBackend;
use crate::cpu_reference::sparse_pattern::{SparseError, SparsePattern};
use burn::backend::{Dispatch, DispatchDevice};
use burn::tensor::{DType, Device, Tensor};
use std::sync::Arc;

/// Whether [`sparse_linear`] runs on `device` for `dtype` tensors; when not, it returns
/// [`SparseError::Unsupported`] naming what is missing.
pub fn sparse_linear_support(device: &Device, dtype: DType) -> Result<(), SparseError> {
    let backend = match device.as_dispatch().clone().inner() {
        DispatchDevice::Flex(_) => None,
        #[cfg(feature = "cube")]
        DispatchDevice::Cube(_) => None,
        #[allow(unreachable_patterns)]
        other => Some(format!("backend of device {other:?}")),
    };
    if let Some(what) = backend {
        return Err(SparseError::Unsupported { what });
    }
    if dtype != DType::F32 {
        return Err(SparseError::Unsupported {
            what: format!("dtype {dtype:?}"),
        });
    }
    Ok(())
}

/// `y = x W` over the active positions of `pattern`; the inactive values of `weight` are not
/// read, and its gradient is zero there.
///
/// # Shapes
/// - `x`: `[batch, d_input]`
/// - `weight`: `[d_input, d_output]` (Burn's `Linear` layout), `pattern` of the same shape
/// - output: `[batch, d_output]`
///
/// # Errors
/// [`SparseError::Shape`] when the shapes do not fit, [`SparseError::Unsupported`] when the
/// device's backend or the element type has no sparse kernels
/// ([`sparse_linear_support`]).
pub fn sparse_linear(
    x: Tensor<2>,
    weight: Tensor<2>,
    pattern: &Arc<SparsePattern>,
) -> Result<Tensor<2>, SparseError> {
    let [batch, d_in] = x.dims();
    let [rows, cols] = weight.dims();
    SparsePattern::check("weight", pattern.rows() * pattern.cols(), rows * cols)?;
    if rows != pattern.rows() {
        return Err(SparseError::Shape {
            operand: "weight rows",
            expected: pattern.rows(),
            actual: rows,
        });
    }
    SparsePattern::check("x", batch * pattern.rows(), batch * d_in)?;
    sparse_linear_support(&x.device(), x.dtype())?;
    sparse_linear_support(&weight.device(), weight.dtype())?;
    Ok(Tensor::from_dispatch(
        <Dispatch as SparseLinearBackend>::sparse_linear(
            x.into_dispatch(),
            weight.into_dispatch(),
            pattern.clone(),
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    #[test]
    fn gradients_equal_autodiff_of_the_masked_dense_product() {
        let device = Device::flex().autodiff();
        let (batch, rows, cols) = (3, 5, 4);
        let mask: Vec<bool> = (0..rows * cols).map(|i| i % 3 != 1).collect();
        let pattern = Arc::new(SparsePattern::from_mask(rows, cols, &mask).unwrap());
        let w: Vec<f32> = (0..rows * cols).map(|i| i as f32 * 0.25 - 2.0).collect();
        let x: Vec<f32> = (0..batch * rows).map(|i| (i % 7) as f32 - 3.0).collect();
        let mk = |v: &[f32], s: [usize; 2]| {
            Tensor::<2>::from_data(TensorData::new(v.to_vec(), s), &device).require_grad()
        };
        let (xs, ws) = (mk(&x, [batch, rows]), mk(&w, [rows, cols]));
        let y = sparse_linear(xs.clone(), ws.clone(), &pattern).unwrap();
        let grads = (y.clone() * y.clone()).sum().backward();
        let (xd, wd) = (mk(&x, [batch, rows]), mk(&w, [rows, cols]));
        let m = Tensor::<2, burn::tensor::Bool>::from_data(
            TensorData::new(mask.clone(), [rows, cols]),
            &device,
        );
        let yd = xd.clone().matmul(wd.clone().mask_fill(m.bool_not(), 0.0));
        let dgrads = (yd.clone() * yd.clone()).sum().backward();
        // Small integers and quarters: every value is exact, in any order of sums.
        y.into_data().assert_eq(&yd.into_data(), true);
        xs.grad(&grads)
            .unwrap()
            .into_data()
            .assert_eq(&xd.grad(&dgrads).unwrap().into_data(), true);
        ws.grad(&grads)
            .unwrap()
            .into_data()
            .assert_eq(&wd.grad(&dgrads).unwrap().into_data(), true);
    }

    #[test]
    fn unsupported_element_types_are_named() {
        let err = sparse_linear_support(&Device::flex(), DType::F16).unwrap_err();
        assert_eq!(err.to_string(), "no sparse kernels for dtype F16");
        sparse_linear_support(&Device::flex(), DType::F32).unwrap();
    }

    #[test]
    fn wrong_shapes_are_typed_errors() {
        let device = Device::flex();
        let pattern = Arc::new(SparsePattern::from_mask(2, 3, &[true; 6]).unwrap());
        let err = sparse_linear(
            Tensor::zeros([4, 3], &device),
            Tensor::zeros([2, 3], &device),
            &pattern,
        )
        .unwrap_err();
        assert!(
            matches!(err, SparseError::Shape { operand: "x", .. }),
            "{err}"
        );
        let err = sparse_linear(
            Tensor::zeros([4, 2], &device),
            Tensor::zeros([3, 2], &device),
            &pattern,
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                SparseError::Shape {
                    operand: "weight rows",
                    ..
                }
            ),
            "{err}"
        );
    }
}
