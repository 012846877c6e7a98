//! The fast CPU path of [`crate::cpu_reference::sddmm()`]: the weight gradient at the active
//! positions, parallel over rows, as eight-lane dot products of contiguous batch runs, equal to
//! the reference bit for bit (same lanes, same order).

use crate::cpu::transpose::transpose;
use crate::cpu_reference::sddmm::SDDMM_LANES;
use crate::cpu_reference::sparse_pattern::{SparseError, SparsePattern};
use rayon::prelude::*;

/// The lane sum of [`crate::cpu_reference::lane_dot`], vectorisable.
#[inline]
pub fn lane_dot(a: &[f32], c: &[f32]) -> f32 {
    let n = a.len().min(c.len());
    let (a, c) = (&a[..n], &c[..n]);
    let mut s = [0.0f32; SDDMM_LANES];
    let mut ca = a.chunks_exact(SDDMM_LANES);
    let mut cc = c.chunks_exact(SDDMM_LANES);
    for (x, y) in (&mut ca).zip(&mut cc) {
        for ((s, &x), &y) in s.iter_mut().zip(x).zip(y) {
            *s += x * y;
        }
    }
    for (l, (&x, &y)) in ca.remainder().iter().zip(cc.remainder()).enumerate() {
        s[l] += x * y;
    }
    ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]))
}

/// The dense weight gradient, non-zero only at active positions (see
/// [`crate::cpu_reference::sddmm()`]).
///
/// # Shapes
/// - `x`: `[batch, rows]`; `dy`: `[batch, cols]`; output `[rows, cols]`
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
    if cols == 0 || batch == 0 {
        return Ok(vec![0.0f32; rows * cols]);
    }
    let xt = transpose(x, batch, rows);
    let dyt = transpose(dy, batch, cols);
    Ok(sddmm_t(&xt, &dyt, batch, pattern))
}

/// [`sddmm`] from `xᵀ` (`[rows, batch]`) and `dyᵀ` (`[cols, batch]`).
pub(crate) fn sddmm_t(xt: &[f32], dyt: &[f32], batch: usize, pattern: &SparsePattern) -> Vec<f32> {
    let (rows, cols) = (pattern.rows(), pattern.cols());
    let mut dw = vec![0.0f32; rows * cols];
    if cols == 0 || batch == 0 {
        return dw;
    }
    let row = |i: usize, out: &mut [f32]| {
        let xi = &xt[i * batch..(i + 1) * batch];
        for &j in pattern.row(i) {
            let j = j as usize;
            out[j] = lane_dot(xi, &dyt[j * batch..(j + 1) * batch]);
        }
    };
    if batch * pattern.nnz() < crate::cpu::spmm::MIN_PARALLEL_WORK {
        dw.chunks_mut(cols)
            .enumerate()
            .for_each(|(i, out)| row(i, out));
    } else {
        dw.par_chunks_mut(cols)
            .enumerate()
            .with_min_len(8)
            .for_each(|(i, out)| row(i, out));
    }
    dw
}
