//! The fast CPU path of [`crate::cpu_reference::condensed_linear`], equal to it bit for bit
//! (the same order of sums).
//!
//! The outputs are split into tiles of [`OUTPUT_TILE`], one parallel task each: a tile's values
//! and indices (`8 * OUTPUT_TILE * k` bytes) stay in cache while the task walks every row of
//! the batch, gathering from that row (`4 * d_in` bytes, in the first-level cache). Each value
//! is read from memory once per product, where a row-by-row walk would read all of them once
//! per row.
//!
//! From a batch of [`MIN_VECTOR_BATCH`] on, the input is transposed to feature-major once and
//! the batch split into tiles of at most [`BATCH_TILE`]: each active weight then adds `v * x`
//! to a contiguous run of the tile's accumulators, which the compiler vectorises. Every output
//! still sums its terms from 0.0 in increasing `t`, so both paths equal the reference.

use crate::cpu::transpose::transpose;
use crate::cpu_reference::condensed_linear::{Condensed, check_input};
use crate::cpu_reference::sparse_pattern::SparseError;
use rayon::prelude::*;

/// Outputs per task.
pub const OUTPUT_TILE: usize = 32;

/// Multiply-adds below which the product runs on the calling thread.
pub const MIN_PARALLEL_WORK: usize = 1 << 18;

/// Smallest batch run feature-major with batch tiles.
pub const MIN_VECTOR_BATCH: usize = 8;

/// Largest batch tile of the feature-major path.
pub const BATCH_TILE: usize = 64;

/// `y = x W` for a condensed `W` (see [`crate::cpu_reference::condensed_linear`]).
///
/// # Shapes
/// - `x`: `[batch, d_in]` row-major
/// - output: `[batch, d_out]` row-major
///
/// # Errors
/// [`SparseError::Shape`] when `x` does not have `batch * d_in` elements.
pub fn condensed_linear(x: &[f32], batch: usize, w: &Condensed) -> Result<Vec<f32>, SparseError> {
    check_input(x, batch, w)?;
    if batch >= MIN_VECTOR_BATCH {
        return Ok(feature_major(x, batch, w));
    }
    let (d_in, d_out, k) = (w.d_in(), w.d_out(), w.k());
    let (values, indices) = (w.values(), w.indices());
    let tiles = d_out.div_ceil(OUTPUT_TILE);
    // One tile: its outputs for every row, `[batch, width]`.
    let tile = |t: usize| -> Vec<f32> {
        let j0 = t * OUTPUT_TILE;
        let width = OUTPUT_TILE.min(d_out - j0);
        let mut out = vec![0.0f32; batch * width];
        for b in 0..batch {
            let row = &x[b * d_in..(b + 1) * d_in];
            for (jj, o) in out[b * width..(b + 1) * width].iter_mut().enumerate() {
                let at = (j0 + jj) * k;
                let mut acc = 0.0f32;
                for (v, &i) in values[at..at + k].iter().zip(&indices[at..at + k]) {
                    acc += v * row[i as usize];
                }
                *o = acc;
            }
        }
        out
    };
    let parts: Vec<Vec<f32>> = if batch * d_out * k < MIN_PARALLEL_WORK {
        (0..tiles).map(tile).collect()
    } else {
        (0..tiles).into_par_iter().map(tile).collect()
    };
    let mut y = vec![0.0f32; batch * d_out];
    for (t, part) in parts.iter().enumerate() {
        let j0 = t * OUTPUT_TILE;
        let width = OUTPUT_TILE.min(d_out - j0);
        for b in 0..batch {
            y[b * d_out + j0..b * d_out + j0 + width]
                .copy_from_slice(&part[b * width..(b + 1) * width]);
        }
    }
    Ok(y)
}

/// The batched path: `x` transposed once, tasks over (output tile, batch tile).
fn feature_major(x: &[f32], batch: usize, w: &Condensed) -> Vec<f32> {
    let (d_in, d_out, k) = (w.d_in(), w.d_out(), w.k());
    let (values, indices) = (w.values(), w.indices());
    let xt = transpose(x, batch, d_in);
    let batch_tiles = batch.div_ceil(BATCH_TILE);
    let out_tiles = d_out.div_ceil(OUTPUT_TILE);
    // One task: outputs `j0..j0 + width` for rows `b0..b0 + rows`, `[width, rows]`.
    let task = |n: usize| -> Vec<f32> {
        let (t, bt) = (n / batch_tiles, n % batch_tiles);
        let (j0, b0) = (t * OUTPUT_TILE, bt * BATCH_TILE);
        let width = OUTPUT_TILE.min(d_out - j0);
        let rows = BATCH_TILE.min(batch - b0);
        let mut out = vec![0.0f32; width * rows];
        for (jj, acc) in out.chunks_exact_mut(rows).enumerate() {
            let at = (j0 + jj) * k;
            for (&v, &i) in values[at..at + k].iter().zip(&indices[at..at + k]) {
                let src = &xt[i as usize * batch + b0..i as usize * batch + b0 + rows];
                for (a, &s) in acc.iter_mut().zip(src) {
                    *a += v * s;
                }
            }
        }
        out
    };
    let tasks = out_tiles * batch_tiles;
    let parts: Vec<Vec<f32>> = if batch * d_out * k < MIN_PARALLEL_WORK {
        (0..tasks).map(task).collect()
    } else {
        (0..tasks).into_par_iter().map(task).collect()
    };
    let mut y = vec![0.0f32; batch * d_out];
    for (n, part) in parts.iter().enumerate() {
        let (t, bt) = (n / batch_tiles, n % batch_tiles);
        let (j0, b0) = (t * OUTPUT_TILE, bt * BATCH_TILE);
        let rows = BATCH_TILE.min(batch - b0);
        for (jj, acc) in part.chunks_exact(rows).enumerate() {
            for (r, &a) in acc.iter().enumerate() {
                y[(b0 + r) * d_out + j0 + jj] = a;
            }
        }
    }
    y
}
