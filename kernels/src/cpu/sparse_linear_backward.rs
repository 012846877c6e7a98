//! Both gradients of a sparse linear layer in one pass over the operands: `dyᵀ` is computed once
//! for the input gradient ([`crate::cpu_reference::spmm_transposed`]) and the weight gradient
//! ([`crate::cpu_reference::sddmm()`]); each result equals its reference bit for bit.

use crate::cpu::sddmm::sddmm_t;
use crate::cpu::spmm::{MIN_PARALLEL_WORK, MIN_VECTOR_BATCH, spmm_transposed, spmm_transposed_t};
use crate::cpu::transpose::transpose;
use crate::cpu_reference::sparse_pattern::{SparseError, SparsePattern};

/// The input gradient (when `input_grad`) and the dense weight gradient of `y = x W`.
///
/// # Shapes
/// - `x`: `[batch, rows]`; `dy`: `[batch, cols]`; `weight`: `[rows, cols]` dense
/// - outputs: `[batch, rows]` and `[rows, cols]`
///
/// # Errors
/// [`SparseError::Shape`] when an operand has the wrong number of elements.
pub fn sparse_linear_backward(
    x: &[f32],
    dy: &[f32],
    batch: usize,
    weight: &[f32],
    pattern: &SparsePattern,
    input_grad: bool,
) -> Result<(Option<Vec<f32>>, Vec<f32>), SparseError> {
    let (rows, cols) = (pattern.rows(), pattern.cols());
    SparsePattern::check("x", batch * rows, x.len())?;
    SparsePattern::check("dy", batch * cols, dy.len())?;
    SparsePattern::check("weight", rows * cols, weight.len())?;
    let xt = transpose(x, batch, rows);
    let dyt = transpose(dy, batch, cols);
    let dx = || {
        input_grad.then(|| {
            if batch < MIN_VECTOR_BATCH {
                spmm_transposed(dy, batch, weight, pattern).expect("shapes checked")
            } else {
                spmm_transposed_t(&dyt, batch, weight, pattern)
            }
        })
    };
    let dw = || sddmm_t(&xt, &dyt, batch, pattern);
    Ok(if batch * pattern.nnz() < MIN_PARALLEL_WORK {
        (dx(), dw())
    } else {
        rayon::join(dx, dw)
    })
}
