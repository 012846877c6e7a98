//! Sampled dense-dense matrix product: the weight gradient of a sparse linear layer at its
//! active positions only, `dW[i, j] = sum_b x[b, i] * dy[b, j]` for active `(i, j)`.
//!
//! # Order of sums
//! Eight lanes: lane `l` starts at `0.0` and adds `x[b, i] * dy[b, j]` for the batch indices
//! `b ≡ l (mod 8)` in increasing order; the result is
//! `((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))`. This is the order a SIMD dot product of
//! eight lanes takes, so the fast CPU path equals the reference bit for bit.

use super::sparse_pattern::{SparseError, SparsePattern};

/// Lanes of the weight-gradient sum (see the module docs).
pub const SDDMM_LANES: usize = 8;

/// The lane sum of `a[b] * c[b]` in the order of the module docs.
pub fn lane_dot(a: &[f32], c: &[f32]) -> f32 {
    let mut s = [0.0f32; SDDMM_LANES];
    for (b, (&x, &y)) in a.iter().zip(c).enumerate() {
        s[b % SDDMM_LANES] += x * y;
    }
    ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]))
}

/// The weight gradient of a sparse linear layer, dense: `dW[i, j] = sum_b x[b, i] * dy[b, j]`
/// at active `(i, j)`, `0.0` elsewhere.
///
/// # Shapes
/// - `x`: `[batch, rows]`, row-major
/// - `dy`: `[batch, cols]`, row-major
/// - output: `[rows, cols]`, row-major
///
/// # Errors
/// [`SparseError::Shape`] when `x` or `dy` has the wrong number of elements.
pub fn sddmm(
    x: &[f32],
    dy: &[f32],
    batch: usize,
    pattern: &SparsePattern,
) -> Result<Vec<f32>, SparseError> {
    let (rows, cols) = (pattern.rows(), pattern.cols());
    SparsePattern::check("x", batch * rows, x.len())?;
    SparsePattern::check("dy", batch * cols, dy.len())?;
    let mut dw = vec![0.0f32; rows * cols];
    for i in 0..rows {
        let xi: Vec<f32> = (0..batch).map(|b| x[b * rows + i]).collect();
        for &j in pattern.row(i) {
            let dyj: Vec<f32> = (0..batch).map(|b| dy[b * cols + j as usize]).collect();
            dw[i * cols + j as usize] = lane_dot(&xi, &dyj);
        }
    }
    Ok(dw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lane_order_is_the_documented_one() {
        // With a single non-zero product per lane the lane sum is the plain sum; with many
        // products in one lane the order is sequential within the lane.
        let a: Vec<f32> = (1..=9).map(|v| v as f32).collect();
        let ones = vec![1.0f32; 9];
        // Lane 0 holds 1 + 9, the others 2..=8.
        assert_eq!(lane_dot(&a, &ones), 45.0);
        // Catastrophic cancellation shows the order: 1e8 + 1 - 1e8 in lane 0 is 0, while the
        // 1.0 in lane 1 survives.
        let a = [
            1e8f32, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1e8,
        ];
        let ones = [1.0f32; 17];
        assert_eq!(lane_dot(&a, &ones), 1.0);
    }

    #[test]
    fn gradient_only_at_active_positions() {
        // x (2 x 2), dy (2 x 3), mask [[1, 0, 1], [0, 1, 1]].
        let x = [1.0, 2.0, 3.0, 4.0];
        let dy = [1.0, 0.5, -1.0, 2.0, 1.0, 0.0];
        let mask = [true, false, true, false, true, true];
        let p = SparsePattern::from_mask(2, 3, &mask).unwrap();
        // Dense dW = xᵀ dy = [[7, 3.5, -1], [10, 5, -2]].
        assert_eq!(
            sddmm(&x, &dy, 2, &p).unwrap(),
            [7.0, 0.0, -1.0, 0.0, 5.0, -2.0]
        );
        assert_eq!(
            sddmm(&x, &dy[..5], 2, &p),
            Err(SparseError::Shape {
                operand: "dy",
                expected: 6,
                actual: 5
            })
        );
    }
}
