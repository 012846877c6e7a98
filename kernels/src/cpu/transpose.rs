//! A parallel matrix transpose: the batch-major operands of the sparse products are read
//! feature-major, so each active weight meets a contiguous run of the batch.

use rayon::prelude::*;

/// Output rows per parallel task: their source reads share cache lines.
const ROWS_PER_TASK: usize = 16;

/// `src` is `[rows, cols]` row-major; returns `[cols, rows]` row-major.
///
/// # Panics
/// When `src.len() != rows * cols`.
pub fn transpose(src: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    assert_eq!(src.len(), rows * cols, "transpose: {rows}x{cols} needs {} elements", rows * cols);
    if rows <= 1 || cols <= 1 {
        return src.to_vec();
    }
    let mut dst = vec![0.0f32; rows * cols];
    dst.par_chunks_mut(rows * ROWS_PER_TASK)
        .enumerate()
        .for_each(|(task, block)| {
            for (k, out) in block.chunks_mut(rows).enumerate() {
                let c = task * ROWS_PER_TASK + k;
                for (r, o) in out.iter_mut().enumerate() {
                    *o = src[r * cols + c];
                }
            }
        });
    dst
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transposes_odd_shapes() {
        for (rows, cols) in [(0, 3), (1, 5), (5, 1), (3, 17), (33, 20)] {
            let src: Vec<f32> = (0..rows * cols).map(|v| v as f32).collect();
            let t = transpose(&src, rows, cols);
            for r in 0..rows {
                for c in 0..cols {
                    assert_eq!(t[c * rows + r], src[r * cols + c]);
                }
            }
            assert_eq!(transpose(&t, cols, rows), src);
        }
    }
}
