//! The fast CPU path of [`crate::cpu_reference::spmm`]: the forward and the input gradient of
//! a sparse linear layer, parallel over tiles of outputs and of the batch, equal to the
//! reference bit for bit (same order of sums).
//!
//! Both walk the rows of the pattern, reading each row's active weights in memory order from
//! the dense stored weight, and multiply each active weight with a contiguous run of up to
//! [`BATCH_TILE`] batch entries of the feature-major operand, which the compiler vectorises.

use crate::cpu::transpose::transpose;
use crate::cpu_reference::sparse_pattern::{SparseError, SparsePattern};
use rayon::prelude::*;

/// Batch entries per tile.
pub const BATCH_TILE: usize = 64;
/// Outputs per tile of the forward.
pub const COL_TILE: usize = 256;
/// Rows per tile of the input gradient.
pub const ROW_TILE: usize = 64;

fn tiles(n: usize, tile: usize) -> impl Iterator<Item = (usize, usize)> + Clone {
    (0..n.div_ceil(tile)).map(move |t| (t * tile, ((t + 1) * tile).min(n)))
}

/// `y = x W` over the active positions of `W` (see [`crate::cpu_reference::spmm()`]).
///
/// # Shapes
/// - `x`: `[batch, rows]`; `weight`: `[rows, cols]` dense; output `[batch, cols]`
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
    let xt = transpose(x, batch, rows);
    let grid: Vec<_> = tiles(batch, BATCH_TILE)
        .flat_map(|b| tiles(cols, COL_TILE).map(move |c| (b, c)))
        .collect();
    let blocks: Vec<Vec<f32>> = grid
        .par_iter()
        .map(|&((b0, b1), (c0, c1))| {
            let len = b1 - b0;
            // acc[(j - c0) * len + t] = y[b0 + t, j]
            let mut acc = vec![0.0f32; (c1 - c0) * len];
            for i in 0..rows {
                let row = pattern.row(i);
                let lo = row.partition_point(|&j| (j as usize) < c0);
                let hi = row.partition_point(|&j| (j as usize) < c1);
                let xs = &xt[i * batch + b0..i * batch + b1];
                let w = &weight[i * cols..(i + 1) * cols];
                for &j in &row[lo..hi] {
                    let v = w[j as usize];
                    let a = &mut acc[(j as usize - c0) * len..(j as usize - c0 + 1) * len];
                    for (a, &x) in a.iter_mut().zip(xs) {
                        *a += x * v;
                    }
                }
            }
            acc
        })
        .collect();
    let mut y = vec![0.0f32; batch * cols];
    for (&((b0, b1), (c0, c1)), acc) in grid.iter().zip(&blocks) {
        let len = b1 - b0;
        for j in c0..c1 {
            for t in 0..len {
                y[(b0 + t) * cols + j] = acc[(j - c0) * len + t];
            }
        }
    }
    Ok(y)
}

/// `dx = dy Wᵀ` over the active positions of `W` (see
/// [`crate::cpu_reference::spmm_transposed`]).
///
/// # Shapes
/// - `dy`: `[batch, cols]`; `weight`: `[rows, cols]` dense; output `[batch, rows]`
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
    let dyt = transpose(dy, batch, cols);
    let grid: Vec<_> = tiles(batch, BATCH_TILE)
        .flat_map(|b| tiles(rows, ROW_TILE).map(move |r| (b, r)))
        .collect();
    let blocks: Vec<Vec<f32>> = grid
        .par_iter()
        .map(|&((b0, b1), (r0, r1))| {
            let len = b1 - b0;
            // out[(i - r0) * len + t] = dx[b0 + t, i]
            let mut out = vec![0.0f32; (r1 - r0) * len];
            for i in r0..r1 {
                let acc = &mut out[(i - r0) * len..(i - r0 + 1) * len];
                let w = &weight[i * cols..(i + 1) * cols];
                for &j in pattern.row(i) {
                    let v = w[j as usize];
                    let ds = &dyt[j as usize * batch + b0..j as usize * batch + b1];
                    for (a, &d) in acc.iter_mut().zip(ds) {
                        *a += d * v;
                    }
                }
            }
            out
        })
        .collect();
    let mut dx = vec![0.0f32; batch * rows];
    for (&((b0, b1), (r0, r1)), out) in grid.iter().zip(&blocks) {
        let len = b1 - b0;
        for i in r0..r1 {
            for t in 0..len {
                dx[(b0 + t) * rows + i] = out[(i - r0) * len + t];
            }
        }
    }
    Ok(dx)
}
