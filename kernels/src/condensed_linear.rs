//! The tensor-level condensed product of a constant fan-in (or N:M) layer: `y = x W` with `W`
//! in the condensed layout ([`Condensed`]), for inference.
//!
//! On the CPU backend it runs [`crate::cpu::condensed_linear`] (bit for bit the reference); on
//! the other backends it gathers the inputs with Burn's `select` and sums over the fan-in,
//! output block by output block ([`condensed_linear_gather`], within the bound stated there).
//! Training keeps the masked layers and [`crate::sparse_linear`]: the condensed layout fixes
//! the pattern, which is what inference wants.

use crate::cpu_reference::condensed_linear::Condensed;
use crate::cpu_reference::sparse_pattern::SparseError;
use burn::backend::DispatchDevice;
use burn::tensor::{DType, Int, Tensor, TensorData};

/// Gathered elements per block of the portable path (`batch * outputs * k`).
pub const GATHER_BLOCK: usize = 1 << 22;

/// `y = x W` for a condensed `W`.
///
/// # Shapes
/// - `x`: `[batch, d_in]`
/// - output: `[batch, d_out]`
///
/// # Errors
/// [`SparseError::Shape`] when `x` does not have `d_in` columns; [`SparseError::Unsupported`]
/// for an element type other than `f32`.
pub fn condensed_linear(x: Tensor<2>, w: &Condensed) -> Result<Tensor<2>, SparseError> {
    let [batch, d_in] = x.dims();
    if d_in != w.d_in() {
        return Err(SparseError::Shape {
            operand: "x columns",
            expected: w.d_in(),
            actual: d_in,
        });
    }
    if x.dtype() != DType::F32 {
        return Err(SparseError::Unsupported {
            what: format!("dtype {:?}", x.dtype()),
        });
    }
    let device = x.device();
    if matches!(
        device.as_dispatch().clone().inner(),
        DispatchDevice::Flex(_)
    ) {
        let host = x
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| SparseError::Unsupported {
                what: format!("input data: {e:?}"),
            })?;
        let y = crate::cpu::condensed_linear(&host, batch, w)?;
        return Ok(Tensor::from_data(
            TensorData::new(y, [batch, w.d_out()]),
            &device,
        ));
    }
    let values = Tensor::<2>::from_data(
        TensorData::new(w.values().to_vec(), [w.d_out(), w.k()]),
        &device,
    );
    let indices: Vec<i64> = w.indices().iter().map(|&i| i64::from(i)).collect();
    let n = indices.len();
    let indices = Tensor::<1, Int>::from_data(TensorData::new(indices, [n]), &device);
    Ok(condensed_linear_gather(x, values, indices))
}

/// The portable condensed product: `y[b, j] = sum_t values[j, t] * x[b, indices[j * k + t]]`
/// with Burn's `select`, `mul` and `sum_dim`, in blocks of outputs of at most
/// [`GATHER_BLOCK`] gathered elements. The order of the sum over `t` is the backend's: the
/// result is within `k * eps * sum_t |values[j, t] * x[b, i_t]|` of the reference.
///
/// # Shapes
/// - `x`: `[batch, d_in]`
/// - `values`: `[d_out, k]`
/// - `indices`: `[d_out * k]`, inputs in `0..d_in`
/// - output: `[batch, d_out]`
pub fn condensed_linear_gather(
    x: Tensor<2>,
    values: Tensor<2>,
    indices: Tensor<1, Int>,
) -> Tensor<2> {
    let [batch, _] = x.dims();
    let [d_out, k] = values.dims();
    let device = x.device();
    if k == 0 || d_out == 0 || batch == 0 {
        return Tensor::zeros([batch, d_out], &device);
    }
    let block = (GATHER_BLOCK / (batch * k).max(1)).clamp(1, d_out);
    let mut parts = Vec::with_capacity(d_out.div_ceil(block));
    let mut j0 = 0;
    while j0 < d_out {
        let width = block.min(d_out - j0);
        let idx = indices.clone().narrow(0, j0 * k, width * k);
        let gathered = x.clone().select(1, idx).reshape([batch, width, k]);
        let v = values.clone().narrow(0, j0, width).unsqueeze_dim::<3>(0);
        parts.push((gathered * v).sum_dim(2).reshape([batch, width]));
        j0 += width;
    }
    Tensor::cat(parts, 1)
}
