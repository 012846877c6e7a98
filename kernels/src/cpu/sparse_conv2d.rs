//! The fast CPU path of [`crate::cpu_reference::sparse_conv2d`]: direct sparse convolution on
//! whole image rows (a contiguous multiply-add per active tap and output row), parallel over
//! output planes, input planes or output channels, in the reference's order of sums (equal bit
//! for bit).

use super::spmm::MIN_PARALLEL_WORK;
use crate::cpu_reference::sddmm::SDDMM_LANES;
use crate::cpu_reference::sparse_conv2d::Conv2dGeometry;
use crate::cpu_reference::sparse_pattern::{SparseError, SparsePattern};
use rayon::prelude::*;

/// Run `f` over the chunks of `out` (each with its index), in parallel when `work`
/// multiply-adds are worth waking the pool.
fn for_planes(
    out: &mut [f32],
    plane: usize,
    work: usize,
    f: impl Fn(usize, &mut [f32]) + Sync + Send,
) {
    if plane == 0 {
        return;
    }
    if work < MIN_PARALLEL_WORK {
        out.chunks_mut(plane).enumerate().for_each(|(t, c)| f(t, c));
    } else {
        out.par_chunks_mut(plane)
            .enumerate()
            .for_each(|(t, c)| f(t, c));
    }
}

fn check(
    g: &Conv2dGeometry,
    pattern: &SparsePattern,
    operands: [(&'static str, usize, usize); 2],
) -> Result<(), SparseError> {
    g.check_pattern(pattern)?;
    for (name, expected, actual) in operands {
        SparsePattern::check(name, expected, actual)?;
    }
    Ok(())
}

/// Multiply-adds of one pass over the active taps.
fn work(g: &Conv2dGeometry, pattern: &SparsePattern) -> usize {
    let [oh, ow] = g.output();
    g.batch * pattern.nnz() * oh * ow
}

/// `y = conv2d(x, W)` over the active taps (see [`crate::cpu_reference::sparse_conv2d()`]).
///
/// # Errors
/// [`SparseError::Shape`] when an operand or the pattern does not fit the geometry.
pub fn sparse_conv2d(
    x: &[f32],
    weight: &[f32],
    pattern: &SparsePattern,
    g: &Conv2dGeometry,
) -> Result<Vec<f32>, SparseError> {
    let [nx, ny, nw] = g.sizes();
    check(
        g,
        pattern,
        [("x", nx, x.len()), ("weight", nw, weight.len())],
    )?;
    let ([h, w], [oh_n, ow_n], taps) = (g.input, g.output(), g.taps());
    let (sw, in_plane) = (g.stride[1], h * w);
    let mut y = vec![0.0f32; ny];
    for_planes(&mut y, oh_n * ow_n, work(g, pattern), |t, plane| {
        let (b, o) = (t / g.channels_out, t % g.channels_out);
        let image = &x[b * g.channels_in * in_plane..(b + 1) * g.channels_in * in_plane];
        for &k in pattern.row(o) {
            let (c, i, j) = g.tap(k as usize);
            let wv = weight[o * taps + k as usize];
            let cols = g.valid(1, j);
            if cols.is_empty() {
                continue;
            }
            let iw0 = g.input_index(1, cols.start, j);
            for oh in g.valid(0, i) {
                let ih = g.input_index(0, oh, i);
                let src = &image[c * in_plane + ih * w..c * in_plane + (ih + 1) * w];
                let dst = &mut plane[oh * ow_n + cols.start..oh * ow_n + cols.end];
                if sw == 1 {
                    for (d, &s) in dst.iter_mut().zip(&src[iw0..]) {
                        *d += wv * s;
                    }
                } else {
                    for (d, &s) in dst.iter_mut().zip(src[iw0..].iter().step_by(sw)) {
                        *d += wv * s;
                    }
                }
            }
        }
    });
    Ok(y)
}

/// The input gradient (see [`crate::cpu_reference::sparse_conv2d_input_grad()`]).
///
/// # Errors
/// [`SparseError::Shape`] when an operand or the pattern does not fit the geometry.
pub fn sparse_conv2d_input_grad(
    dy: &[f32],
    weight: &[f32],
    pattern: &SparsePattern,
    g: &Conv2dGeometry,
) -> Result<Vec<f32>, SparseError> {
    let [nx, ny, nw] = g.sizes();
    check(
        g,
        pattern,
        [("dy", ny, dy.len()), ("weight", nw, weight.len())],
    )?;
    let ([h, w], [oh_n, ow_n], taps) = (g.input, g.output(), g.taps());
    let [kh, kw] = g.kernel;
    let (sw, out_plane) = (g.stride[1], oh_n * ow_n);
    let columns = pattern.columns();
    let mut dx = vec![0.0f32; nx];
    for_planes(&mut dx, h * w, work(g, pattern), |t, plane| {
        let (b, c) = (t / g.channels_in, t % g.channels_in);
        let grads = &dy[b * g.channels_out * out_plane..(b + 1) * g.channels_out * out_plane];
        for k in c * kh * kw..(c + 1) * kh * kw {
            let (_, i, j) = g.tap(k);
            let cols = g.valid(1, j);
            if cols.is_empty() {
                continue;
            }
            let iw0 = g.input_index(1, cols.start, j);
            let entries = columns.col_ptr[k] as usize..columns.col_ptr[k + 1] as usize;
            for &o in &columns.col_row[entries] {
                let o = o as usize;
                let wv = weight[o * taps + k];
                for oh in g.valid(0, i) {
                    let ih = g.input_index(0, oh, i);
                    let src = &grads[o * out_plane + oh * ow_n + cols.start
                        ..o * out_plane + oh * ow_n + cols.end];
                    let dst = &mut plane[ih * w..(ih + 1) * w];
                    if sw == 1 {
                        for (d, &s) in dst[iw0..].iter_mut().zip(src) {
                            *d += wv * s;
                        }
                    } else {
                        for (d, &s) in dst[iw0..].iter_mut().step_by(sw).zip(src) {
                            *d += wv * s;
                        }
                    }
                }
            }
        }
    });
    Ok(dx)
}

/// The weight gradient at the active taps (see
/// [`crate::cpu_reference::sparse_conv2d_weight_grad()`]), parallel over output channels.
///
/// # Errors
/// [`SparseError::Shape`] when an operand or the pattern does not fit the geometry.
pub fn sparse_conv2d_weight_grad(
    x: &[f32],
    dy: &[f32],
    pattern: &SparsePattern,
    g: &Conv2dGeometry,
) -> Result<Vec<f32>, SparseError> {
    let [nx, ny, nw] = g.sizes();
    check(g, pattern, [("x", nx, x.len()), ("dy", ny, dy.len())])?;
    let ([h, w], [oh_n, ow_n], taps) = (g.input, g.output(), g.taps());
    let (sw, in_plane, out_plane) = (g.stride[1], h * w, oh_n * ow_n);
    let mut dw = vec![0.0f32; nw];
    for_planes(&mut dw, taps, work(g, pattern), |o, row| {
        let active = pattern.row(o);
        let mut lanes = vec![[0.0f32; SDDMM_LANES]; active.len()];
        let mut gathered = vec![0.0f32; ow_n];
        for b in 0..g.batch {
            let grads = &dy[(b * g.channels_out + o) * out_plane..][..out_plane];
            let image = &x[b * g.channels_in * in_plane..(b + 1) * g.channels_in * in_plane];
            for (&k, s) in active.iter().zip(lanes.iter_mut()) {
                let (c, i, j) = g.tap(k as usize);
                let cols = g.valid(1, j);
                if cols.is_empty() {
                    continue;
                }
                let iw0 = g.input_index(1, cols.start, j);
                for oh in g.valid(0, i) {
                    let ih = g.input_index(0, oh, i);
                    let a = &grads[oh * ow_n + cols.start..oh * ow_n + cols.end];
                    let src = &image[c * in_plane + ih * w..c * in_plane + (ih + 1) * w];
                    let xs: &[f32] = if sw == 1 {
                        &src[iw0..iw0 + a.len()]
                    } else {
                        for (d, &v) in gathered.iter_mut().zip(src[iw0..].iter().step_by(sw)) {
                            *d = v;
                        }
                        &gathered[..a.len()]
                    };
                    lane_add(s, a, xs);
                }
            }
        }
        for (&k, s) in active.iter().zip(&lanes) {
            row[k as usize] = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
        }
    });
    Ok(dw)
}

/// `s[t mod 8] += a[t] * c[t]`, vectorisable.
#[inline]
fn lane_add(s: &mut [f32; SDDMM_LANES], a: &[f32], c: &[f32]) {
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
}
