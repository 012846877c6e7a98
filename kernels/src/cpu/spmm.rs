//! The fast CPU path of [`crate::cpu_reference::spmm`]: the forward and the input gradient of
//! a sparse linear layer, equal to the reference bit for bit (same order of sums).
//!
//! Both walk the rows of the pattern, reading each row's active weights in memory order from
//! the dense stored weight. With a batch of at least [`MIN_VECTOR_BATCH`], the batch is split
//! into tiles, one per parallel task: each active weight multiplies a contiguous run of the
//! tile in the feature-major (transposed) operand, which the compiler vectorises, and the tile's
//! result is transposed back into its rows of the output. Smaller batches run row by row,
//! in parallel over tiles of outputs.

use crate::cpu::transpose::{transpose, transpose_into};
use crate::cpu_reference::sparse_pattern::{SparseError, SparsePattern};
use rayon::prelude::*;

/// Smallest batch run with batch tiles.
pub const MIN_VECTOR_BATCH: usize = 8;
/// Largest batch tile.
pub const MAX_BATCH_TILE: usize = 64;
/// Outputs (forward) or inputs (input gradient) per task at small batches.
pub const FEATURE_TILE: usize = 512;

/// Multiply-adds below which a product runs on the calling thread: waking the pool costs more
/// than it saves.
pub const MIN_PARALLEL_WORK: usize = 1 << 21;

/// Batch tile: the whole batch when the product runs on one thread, else about two tiles per
/// thread, a multiple of 8, at most [`MAX_BATCH_TILE`].
fn batch_tile(batch: usize, work: usize) -> usize {
    if work < MIN_PARALLEL_WORK {
        return batch.max(1);
    }
    let tasks = 2 * rayon::current_num_threads().max(1);
    batch
        .div_ceil(tasks)
        .next_multiple_of(8)
        .clamp(8, MAX_BATCH_TILE)
}

/// Run `f` over the chunks of `out` in parallel, or in order on this thread when there is one
/// chunk.
fn for_chunks(out: &mut [f32], chunk: usize, f: impl Fn(usize, &mut [f32]) + Sync + Send) {
    if out.len() <= chunk {
        f(0, out);
    } else {
        out.par_chunks_mut(chunk)
            .enumerate()
            .for_each(|(t, c)| f(t, c));
    }
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
    let mut y = vec![0.0f32; batch * cols];
    if cols == 0 || batch == 0 {
        return Ok(y);
    }
    if batch < MIN_VECTOR_BATCH {
        for b in 0..batch {
            let xb = &x[b * rows..(b + 1) * rows];
            let chunk = if pattern.nnz() < MIN_PARALLEL_WORK {
                cols
            } else {
                FEATURE_TILE
            };
            for_chunks(&mut y[b * cols..(b + 1) * cols], chunk, |t, out| {
                let (c0, c1) = (t * chunk, t * chunk + out.len());
                for (i, &xi) in xb.iter().enumerate() {
                    let row = pattern.row(i);
                    let (lo, hi) = if c0 == 0 && c1 == cols {
                        (0, row.len())
                    } else {
                        (
                            row.partition_point(|&j| (j as usize) < c0),
                            row.partition_point(|&j| (j as usize) < c1),
                        )
                    };
                    let w = &weight[i * cols..(i + 1) * cols];
                    for &j in &row[lo..hi] {
                        out[j as usize - c0] += xi * w[j as usize];
                    }
                }
            });
        }
        return Ok(y);
    }
    let xt = transpose(x, batch, rows);
    let tile = batch_tile(batch, batch * pattern.nnz());
    for_chunks(&mut y, tile * cols, |t, out| {
        let b0 = t * tile;
        let len = out.len() / cols;
        // acc[j * len + k] = y[b0 + k, j]
        let mut acc = vec![0.0f32; cols * len];
        for i in 0..rows {
            let xs = &xt[i * batch + b0..i * batch + b0 + len];
            let w = &weight[i * cols..(i + 1) * cols];
            for &j in pattern.row(i) {
                let v = w[j as usize];
                let a = &mut acc[j as usize * len..(j as usize + 1) * len];
                for (a, &x) in a.iter_mut().zip(xs) {
                    *a += x * v;
                }
            }
        }
        transpose_into(&acc, cols, len, out);
    });
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
    if batch < MIN_VECTOR_BATCH {
        let mut dx = vec![0.0f32; batch * rows];
        for b in 0..batch {
            let dyb = &dy[b * cols..(b + 1) * cols];
            let chunk = if pattern.nnz() < MIN_PARALLEL_WORK {
                rows
            } else {
                FEATURE_TILE
            };
            for_chunks(&mut dx[b * rows..(b + 1) * rows], chunk, |t, out| {
                for (k, o) in out.iter_mut().enumerate() {
                    let i = t * chunk + k;
                    let w = &weight[i * cols..(i + 1) * cols];
                    let mut acc = 0.0f32;
                    for &j in pattern.row(i) {
                        acc += dyb[j as usize] * w[j as usize];
                    }
                    *o = acc;
                }
            });
        }
        return Ok(dx);
    }
    let dyt = transpose(dy, batch, cols);
    Ok(spmm_transposed_t(&dyt, batch, weight, pattern))
}

/// [`spmm_transposed`] from `dyᵀ` (`[cols, batch]`), for a batch of at least
/// [`MIN_VECTOR_BATCH`] (any batch gives the same result).
pub(crate) fn spmm_transposed_t(
    dyt: &[f32],
    batch: usize,
    weight: &[f32],
    pattern: &SparsePattern,
) -> Vec<f32> {
    let (rows, cols) = (pattern.rows(), pattern.cols());
    let mut dx = vec![0.0f32; batch * rows];
    if rows == 0 || batch == 0 {
        return dx;
    }
    let tile = batch_tile(batch, batch * pattern.nnz());
    for_chunks(&mut dx, tile * rows, |t, out| {
        let b0 = t * tile;
        let len = out.len() / rows;
        // acc[i * len + k] = dx[b0 + k, i]
        let mut acc = vec![0.0f32; rows * len];
        for (i, a) in acc.chunks_exact_mut(len).enumerate() {
            let w = &weight[i * cols..(i + 1) * cols];
            for &j in pattern.row(i) {
                let v = w[j as usize];
                let ds = &dyt[j as usize * batch + b0..j as usize * batch + b0 + len];
                for (a, &d) in a.iter_mut().zip(ds) {
                    *a += d * v;
                }
            }
        }
        transpose_into(&acc, rows, len, out);
    });
    dx
}
