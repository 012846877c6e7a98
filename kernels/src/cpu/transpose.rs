//! A parallel, cache-blocked matrix transpose: the batch-major operands of the sparse products
//! are read feature-major, so each active weight meets a contiguous run of the batch.

use rayon::prelude::*;

/// Side of the square tiles moved through a local buffer.
const TILE: usize = 32;

/// Elements below which a transpose runs on the calling thread.
const MIN_PARALLEL: usize = 1 << 18;

/// Transpose `src` (`[rows, cols]`, row-major) into `dst` (`[cols, rows]`), tile by tile:
/// every read and every write touches runs of [`TILE`] contiguous elements.
///
/// # Panics
/// When the lengths are not `rows * cols`.
pub fn transpose_into(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    assert_eq!(src.len(), rows * cols, "transpose: {rows}x{cols} source");
    assert_eq!(
        dst.len(),
        rows * cols,
        "transpose: {rows}x{cols} destination"
    );
    let mut buf = [0.0f32; TILE * TILE];
    for c0 in (0..cols).step_by(TILE) {
        let c1 = (c0 + TILE).min(cols);
        for r0 in (0..rows).step_by(TILE) {
            let r1 = (r0 + TILE).min(rows);
            for r in r0..r1 {
                for (k, &v) in src[r * cols + c0..r * cols + c1].iter().enumerate() {
                    buf[k * TILE + (r - r0)] = v;
                }
            }
            for c in c0..c1 {
                let k = c - c0;
                dst[c * rows + r0..c * rows + r1]
                    .copy_from_slice(&buf[k * TILE..k * TILE + r1 - r0]);
            }
        }
    }
}

/// `src` is `[rows, cols]` row-major; returns `[cols, rows]` row-major, in parallel over
/// blocks of output rows.
///
/// # Panics
/// When `src.len() != rows * cols`.
pub fn transpose(src: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    assert_eq!(
        src.len(),
        rows * cols,
        "transpose: {rows}x{cols} needs {} elements",
        rows * cols
    );
    if rows <= 1 || cols <= 1 {
        return src.to_vec();
    }
    let mut dst = vec![0.0f32; rows * cols];
    if rows * cols < MIN_PARALLEL {
        transpose_into(src, rows, cols, &mut dst);
        return dst;
    }
    // Output rows c0..c1 are the transpose of the source columns c0..c1.
    let block = TILE * 4;
    dst.par_chunks_mut(rows * block)
        .enumerate()
        .for_each(|(task, out)| {
            let c0 = task * block;
            let c1 = (c0 + block).min(cols);
            let mut buf = [0.0f32; TILE * TILE];
            for t0 in (c0..c1).step_by(TILE) {
                let t1 = (t0 + TILE).min(c1);
                for r0 in (0..rows).step_by(TILE) {
                    let r1 = (r0 + TILE).min(rows);
                    for r in r0..r1 {
                        for (k, &v) in src[r * cols + t0..r * cols + t1].iter().enumerate() {
                            buf[k * TILE + (r - r0)] = v;
                        }
                    }
                    for c in t0..t1 {
                        let k = c - t0;
                        let at = (c - c0) * rows;
                        out[at + r0..at + r1].copy_from_slice(&buf[k * TILE..k * TILE + r1 - r0]);
                    }
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
        for (rows, cols) in [
            (0, 3),
            (1, 5),
            (5, 1),
            (3, 17),
            (33, 20),
            (100, 300),
            (129, 257),
        ] {
            let src: Vec<f32> = (0..rows * cols).map(|v| v as f32).collect();
            let t = transpose(&src, rows, cols);
            let mut t2 = vec![0.0; rows * cols];
            transpose_into(&src, rows, cols, &mut t2);
            assert_eq!(t, t2);
            for r in 0..rows {
                for c in 0..cols {
                    assert_eq!(t[c * rows + r], src[r * cols + c]);
                }
            }
            assert_eq!(transpose(&t, cols, rows), src);
        }
    }
}
