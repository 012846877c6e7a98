//! The sparse linear products (see [`crate::cpu_reference::spmm()`] and
//! [`crate::cpu_reference::sddmm()`]), one thread per output element, summing in the
//! reference's order.

use cubecl::prelude::*;

/// `y[b, j] = sum over column j's active rows i (increasing) of x[b, i] * W[i, j]`: one thread
/// per element of `y` (`[batch, cols]`).
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn sparse_forward<F: Float>(
    x: &[F],
    weight: &[F],
    col_ptr: &[u32],
    col_row: &[u32],
    col_pos: &[u32],
    y: &mut [F],
    rows: u32,
    cols: u32,
    #[define(F)] _dtype: ElemType,
) {
    let id = ABSOLUTE_POS;
    if id < y.len() {
        let b = id / cols as usize;
        let j = id % cols as usize;
        let start = col_ptr[j] as usize;
        let end = col_ptr[j + 1] as usize;
        let mut acc = F::new(0.0);
        for k in start..end {
            acc += x[b * rows as usize + col_row[k] as usize] * weight[col_pos[k] as usize];
        }
        y[id] = acc;
    }
}

/// `dx[b, i] = sum over row i's active columns j (increasing) of dy[b, j] * W[i, j]`: one thread
/// per element of `dx` (`[batch, rows]`).
#[cube(launch)]
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
pub fn sparse_input_grad<F: Float>(
    dy: &[F],
    weight: &[F],
    row_ptr: &[u32],
    row_col: &[u32],
    dx: &mut [F],
    rows: u32,
    cols: u32,
    #[define(F)] _dtype: ElemType,
) {
    let id = ABSOLUTE_POS;
    if id < dx.len() {
        let b = id / rows as usize;
        let i = id % rows as usize;
        let start = row_ptr[i] as usize;
        let end = row_ptr[i + 1] as usize;
        let mut acc = F::new(0.0);
        for k in start..end {
            let j = row_col[k] as usize;
            acc += dy[b * cols as usize + j] * weight[i * cols as usize + j];
        }
        dx[id] = acc;
    }
}

/// `dW[i, j]` at every active entry, in the eight-lane order of the reference: one thread per
/// entry of the row-ordered list, writing into a zero-filled `[rows, cols]` `dw`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn sparse_weight_grad<F: Float>(
    x: &[F],
    dy: &[F],
    entry_row: &[u32],
    row_col: &[u32],
    dw: &mut [F],
    batch: u32,
    rows: u32,
    cols: u32,
    #[define(F)] _dtype: ElemType,
) {
    let e = ABSOLUTE_POS;
    if e < entry_row.len() {
        let i = entry_row[e] as usize;
        let j = row_col[e] as usize;
        let r = rows as usize;
        let c = cols as usize;
        let mut s0 = F::new(0.0);
        let mut s1 = F::new(0.0);
        let mut s2 = F::new(0.0);
        let mut s3 = F::new(0.0);
        let mut s4 = F::new(0.0);
        let mut s5 = F::new(0.0);
        let mut s6 = F::new(0.0);
        let mut s7 = F::new(0.0);
        let n = batch as usize;
        let full = n / 8;
        for q in 0..full {
            let b = q * 8;
            s0 += x[b * r + i] * dy[b * c + j];
            s1 += x[(b + 1) * r + i] * dy[(b + 1) * c + j];
            s2 += x[(b + 2) * r + i] * dy[(b + 2) * c + j];
            s3 += x[(b + 3) * r + i] * dy[(b + 3) * c + j];
            s4 += x[(b + 4) * r + i] * dy[(b + 4) * c + j];
            s5 += x[(b + 5) * r + i] * dy[(b + 5) * c + j];
            s6 += x[(b + 6) * r + i] * dy[(b + 6) * c + j];
            s7 += x[(b + 7) * r + i] * dy[(b + 7) * c + j];
        }
        let b = full * 8;
        let rest = n - b;
        if rest > 0 {
            s0 += x[b * r + i] * dy[b * c + j];
        }
        if rest > 1 {
            s1 += x[(b + 1) * r + i] * dy[(b + 1) * c + j];
        }
        if rest > 2 {
            s2 += x[(b + 2) * r + i] * dy[(b + 2) * c + j];
        }
        if rest > 3 {
            s3 += x[(b + 3) * r + i] * dy[(b + 3) * c + j];
        }
        if rest > 4 {
            s4 += x[(b + 4) * r + i] * dy[(b + 4) * c + j];
        }
        if rest > 5 {
            s5 += x[(b + 5) * r + i] * dy[(b + 5) * c + j];
        }
        if rest > 6 {
            s6 += x[(b + 6) * r + i] * dy[(b + 6) * c + j];
        }
        dw[i * c + j] = ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7));
    }
}
