//! Sparse-dense matrix products of a layer with a sparse weight: the forward `y = x W` and the
//! input gradient `dx = dy Wᵀ`, reading only the active positions of `W`.
//!
//! # Order of sums
//! `y[b, j]` starts at `0.0` and adds `x[b, i] * W[i, j]` over the active rows `i` of column
//! `j` in increasing order; `dx[b, i]` starts at `0.0` and adds `dy[b, j] * W[i, j]` over the
//! active columns `j` of row `i` in increasing order. Products and sums are separate `f32`
//! operations (no fused multiply-add), so the fast CPU path, which keeps this order, equals
//! these bit for bit. A dense matmul sums in another order: against it, results agree within
//! `rows * f32::EPSILON * sum_i |x[b, i] * W[i, j]|` (see the tests).

use super::sparse_pattern::{SparseError, SparsePattern};

/// The forward of a sparse linear layer: `y = x W` over the active positions of `W`.
///
/// # Shapes
/// - `x`: `[batch, rows]`, row-major
/// - `weight`: `[rows, cols]`, row-major, dense (inactive values are not read)
/// - output: `[batch, cols]`
///
/// # Errors
/// [`SparseError::Shape`] when `x` or `weight` has the wrong number of elements.
pub fn spmm(
    x: &[f32],
    batch: usize,
    weight: &[f32],
    pattern: &SparsePattern,
) -> Result<Vec<f32>, SparseError> {
    let (rows, cols) = (pattern.rows(), pattern.cols());
    SparsePattern::check("x", batch * rows, x.len())?;
    SparsePattern::check("weight", rows * cols, weight.len())?;
    // Row by row, in increasing order: each output accumulates its active rows in order.
    let mut y = vec![0.0f32; batch * cols];
    for i in 0..rows {
        for &j in pattern.row(i) {
            let w = weight[i * cols + j as usize];
            for b in 0..batch {
                y[b * cols + j as usize] += x[b * rows + i] * w;
            }
        }
    }
    Ok(y)
}

/// The input gradient of a sparse linear layer: `dx = dy Wᵀ` over the active positions of `W`.
///
/// # Shapes
/// - `dy`: `[batch, cols]`, row-major
/// - `weight`: `[rows, cols]`, row-major, dense (inactive values are not read)
/// - output: `[batch, rows]`
///
/// # Errors
/// [`SparseError::Shape`] when `dy` or `weight` has the wrong number of elements.
pub fn spmm_transposed(
    dy: &[f32],
    batch: usize,
    weight: &[f32],
    pattern: &SparsePattern,
) -> Result<Vec<f32>, SparseError> {
    let (rows, cols) = (pattern.rows(), pattern.cols());
    SparsePattern::check("dy", batch * cols, dy.len())?;
    SparsePattern::check("weight", rows * cols, weight.len())?;
    let mut dx = vec![0.0f32; batch * rows];
    for b in 0..batch {
        for i in 0..rows {
            let mut acc = 0.0f32;
            for &j in pattern.row(i) {
                acc += dy[b * cols + j as usize] * weight[i * cols + j as usize];
            }
            dx[b * rows + i] = acc;
        }
    }
    Ok(dx)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dense_matmul(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut c = vec![0.0; m * n];
        for r in 0..m {
            for col in 0..n {
                c[r * n + col] = (0..k).map(|t| a[r * k + t] * b[t * n + col]).sum();
            }
        }
        c
    }

    #[test]
    fn hand_computed_product() {
        // W (2 x 3) with mask [[1, 0, 1], [0, 1, 0]]; the masked-out values must not be read.
        let w = [1.0, 100.0, 2.0, 100.0, 3.0, 100.0];
        let mask = [true, false, true, false, true, false];
        let p = SparsePattern::from_mask(2, 3, &mask).unwrap();
        let x = [1.0, 10.0, -1.0, 0.5];
        assert_eq!(
            spmm(&x, 2, &w, &p).unwrap(),
            [1.0, 30.0, 2.0, -1.0, 1.5, -2.0]
        );
        let dy = [1.0, 1.0, 1.0, 2.0, 0.0, -1.0];
        assert_eq!(
            spmm_transposed(&dy, 2, &w, &p).unwrap(),
            [3.0, 3.0, 0.0, 0.0]
        );
    }

    #[test]
    fn equals_the_dense_product_of_the_masked_weight() {
        let (batch, rows, cols) = (3, 5, 4);
        let w: Vec<f32> = (0..rows * cols).map(|i| i as f32 * 0.25 - 2.0).collect();
        let mask: Vec<bool> = (0..rows * cols).map(|i| i % 3 != 1).collect();
        let masked: Vec<f32> = w
            .iter()
            .zip(&mask)
            .map(|(&v, &m)| if m { v } else { 0.0 })
            .collect();
        let p = SparsePattern::from_mask(rows, cols, &mask).unwrap();
        let x: Vec<f32> = (0..batch * rows).map(|i| (i % 7) as f32 - 3.0).collect();
        // Small integers times quarters: every sum is exact, in any order.
        assert_eq!(
            spmm(&x, batch, &w, &p).unwrap(),
            dense_matmul(&x, &masked, batch, rows, cols)
        );
        let mut masked_t = vec![0.0; rows * cols];
        for i in 0..rows {
            for j in 0..cols {
                masked_t[j * rows + i] = masked[i * cols + j];
            }
        }
        let dy: Vec<f32> = (0..batch * cols).map(|i| (i % 5) as f32 - 2.0).collect();
        assert_eq!(
            spmm_transposed(&dy, batch, &w, &p).unwrap(),
            dense_matmul(&dy, &masked_t, batch, cols, rows)
        );
    }

    #[test]
    fn wrong_operands_are_typed_errors() {
        let p = SparsePattern::from_mask(2, 2, &[true; 4]).unwrap();
        assert_eq!(
            spmm(&[0.0; 3], 2, &[0.0; 4], &p),
            Err(SparseError::Shape {
                operand: "x",
                expected: 4,
                actual: 3
            })
        );
        assert_eq!(
            spmm_transposed(&[0.0; 4], 2, &[0.0; 5], &p),
            Err(SparseError::Shape {
                operand: "weight",
                expected: 4,
                actual: 5
            })
        );
    }
}
