//! The fast CPU path of [`crate::cpu_reference::sparse_conv2d`]: direct sparse convolution,
//! parallel over output planes, input planes or output channels, in the reference's order of
//! sums (equal bit for bit for finite inputs).
//!
//! At stride 1 every plane is zero-padded once, with rows of the padded width `wp`; a tap
//! `(i, j)` is then one offset `i * dh * wp + j * dw` and its contribution to a whole output
//! plane is one contiguous multiply-add of `oh * wp` values (the `wp - ow` extra columns are
//! dropped), long enough to vectorise on small images. Other strides work row by row.

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

/// Zero-padded planes of a stride-1 convolution: row width `wp`, plane stride `hp * wp + (kw -
/// 1) * dw` (room for the last tap's offset past the plane).
struct Padded {
    wp: usize,
    stride: usize,
    data: Vec<f32>,
}

impl Padded {
    /// The `planes` planes of `src` (`[planes, h, w]`) padded as `g` pads its input.
    fn input(src: &[f32], planes: usize, g: &Conv2dGeometry) -> Self {
        let [h, w] = g.input;
        let [(pt, pb), (pl, pr)] = g.padding;
        let (hp, wp) = (h + pt + pb, w + pl + pr);
        let stride = hp * wp + (g.kernel[1] - 1) * g.dilation[1];
        let mut data = vec![0.0f32; planes * stride];
        let copy = |t: usize, dst: &mut [f32]| {
            let plane = &src[t * h * w..(t + 1) * h * w];
            for (r, row) in plane.chunks_exact(w.max(1)).enumerate().take(h) {
                dst[(r + pt) * wp + pl..][..w].copy_from_slice(row);
            }
        };
        for_planes(&mut data, stride, planes * stride * 4, copy);
        Self { wp, stride, data }
    }

    /// The output gradient `dy` (`[planes, oh, ow]`) with rows of width `wp`, zero past `ow`.
    fn output(dy: &[f32], planes: usize, g: &Conv2dGeometry, wp: usize) -> Self {
        let [oh, ow] = g.output();
        let stride = oh * wp;
        let mut data = vec![0.0f32; planes * stride];
        let copy = |t: usize, dst: &mut [f32]| {
            let plane = &dy[t * oh * ow..(t + 1) * oh * ow];
            for (r, row) in plane.chunks_exact(ow.max(1)).enumerate().take(oh) {
                dst[r * wp..][..ow].copy_from_slice(row);
            }
        };
        for_planes(&mut data, stride, planes * stride * 4, copy);
        Self { wp, stride, data }
    }

    fn plane(&self, t: usize) -> &[f32] {
        &self.data[t * self.stride..(t + 1) * self.stride]
    }
}

/// The offset of tap `(i, j)` in a padded plane of row width `wp`.
fn tap_offset(g: &Conv2dGeometry, i: usize, j: usize, wp: usize) -> usize {
    i * g.dilation[0] * wp + j * g.dilation[1]
}

/// Whether the convolution takes the padded-plane path.
fn unit_stride(g: &Conv2dGeometry) -> bool {
    g.stride == [1, 1]
}

/// `d[t] += a * s[t]`.
#[inline]
fn axpy(d: &mut [f32], a: f32, s: &[f32]) {
    for (d, &s) in d.iter_mut().zip(s) {
        *d += a * s;
    }
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
    if unit_stride(g) {
        let xp = Padded::input(x, g.batch * g.channels_in, g);
        let wp = xp.wp;
        for_planes(&mut y, oh_n * ow_n, work(g, pattern), |t, plane| {
            let (b, o) = (t / g.channels_out, t % g.channels_out);
            let mut acc = vec![0.0f32; oh_n * wp];
            for &k in pattern.row(o) {
                let (c, i, j) = g.tap(k as usize);
                let src = &xp.plane(b * g.channels_in + c)[tap_offset(g, i, j, wp)..];
                axpy(&mut acc, weight[o * taps + k as usize], src);
            }
            for (dst, src) in plane.chunks_exact_mut(ow_n).zip(acc.chunks_exact(wp)) {
                dst.copy_from_slice(&src[..ow_n]);
            }
        });
        return Ok(y);
    }
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
    if unit_stride(g) {
        let [(pt, pb), (pl, pr)] = g.padding;
        let wp = w + pl + pr;
        let padded_len = (h + pt + pb) * wp + (kw - 1) * g.dilation[1];
        let dyp = Padded::output(dy, g.batch * g.channels_out, g, wp);
        for_planes(&mut dx, h * w, work(g, pattern), |t, plane| {
            let (b, c) = (t / g.channels_in, t % g.channels_in);
            let mut acc = vec![0.0f32; padded_len];
            for k in c * kh * kw..(c + 1) * kh * kw {
                let (_, i, j) = g.tap(k);
                let dst = &mut acc[tap_offset(g, i, j, wp)..];
                let entries = columns.col_ptr[k] as usize..columns.col_ptr[k + 1] as usize;
                for &o in &columns.col_row[entries] {
                    let o = o as usize;
                    axpy(dst, weight[o * taps + k], dyp.plane(b * g.channels_out + o));
                }
            }
            for (r, dst) in plane.chunks_exact_mut(w).enumerate() {
                dst.copy_from_slice(&acc[(r + pt) * wp + pl..][..w]);
            }
        });
        return Ok(dx);
    }
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
    let finish = |row: &mut [f32], active: &[u32], lanes: &[[f32; SDDMM_LANES]]| {
        for (&k, s) in active.iter().zip(lanes) {
            row[k as usize] = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
        }
    };
    if unit_stride(g) {
        let xp = Padded::input(x, g.batch * g.channels_in, g);
        let wp = xp.wp;
        let dyp = Padded::output(dy, g.batch * g.channels_out, g, wp);
        for_planes(&mut dw, taps, work(g, pattern), |o, row| {
            let active = pattern.row(o);
            let mut lanes = vec![[0.0f32; SDDMM_LANES]; active.len()];
            for b in 0..g.batch {
                let grads = dyp.plane(b * g.channels_out + o);
                for (&k, s) in active.iter().zip(lanes.iter_mut()) {
                    let (c, i, j) = g.tap(k as usize);
                    let src = &xp.plane(b * g.channels_in + c)[tap_offset(g, i, j, wp)..];
                    lane_add(s, grads, &src[..grads.len()]);
                }
            }
            finish(row, active, &lanes);
        });
        return Ok(dw);
    }
    let pitch = g.pitch();
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
                    // The reference's lane of (oh, lo) is (oh * pitch + lo) mod 8.
                    let r = (oh * pitch + cols.start) % SDDMM_LANES;
                    s.rotate_left(r);
                    lane_add(s, a, xs);
                    s.rotate_right(r);
                }
            }
        }
        finish(row, active, &lanes);
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
