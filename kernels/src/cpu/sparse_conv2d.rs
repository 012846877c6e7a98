//! The fast CPU path of [`crate::cpu_reference::sparse_conv2d`]: direct sparse convolution,
//! parallel over output planes, input planes or output channels, in the reference's order of
//! sums (equal bit for bit for finite inputs).
//!
//! Every input plane is zero-padded once and split into its `sh * sw` stride phases (phase
//! `(p, q)` holds the padded pixels `(sh * r + p, sw * c + q)`; at stride 1 the one phase is the
//! padded plane), with rows of the phase width `wq`. A tap `(i, j)` then reads one phase at one
//! offset, and its contribution to a whole output plane is one contiguous multiply-add of
//! `oh * wq` values (the `wq - ow` extra columns are dropped): long runs that vectorise, on
//! small images and at any stride.

use super::spmm::MIN_PARALLEL_WORK;
use crate::cpu_reference::sparse_conv2d::{CONV_LANES, Conv2dGeometry, lane_sum};
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

/// Scratch buffers of the padded planes, reused across calls: a fresh multi-megabyte buffer
/// costs a page fault per 4 KiB on first touch, which parallel threads take in turn.
static SCRATCH: std::sync::Mutex<Vec<Vec<f32>>> = std::sync::Mutex::new(Vec::new());

/// Buffers the scratch pool keeps at most.
const SCRATCH_BUFFERS: usize = 4;

/// The largest buffer the scratch pool keeps, in bytes.
const SCRATCH_BYTES: usize = 256 << 20;

/// A zeroed buffer of `len` values, from the pool when one is large enough.
fn scratch(len: usize) -> Vec<f32> {
    let reused = {
        let mut pool = SCRATCH.lock().unwrap_or_else(|e| e.into_inner());
        pool.iter()
            .position(|b| b.capacity() >= len)
            .map(|i| pool.swap_remove(i))
    };
    let mut v = reused.unwrap_or_default();
    v.clear();
    v.resize(len, 0.0);
    v
}

/// Give a scratch buffer back to the pool (dropped when the pool is full of larger ones).
fn recycle(v: Vec<f32>) {
    if v.capacity() * 4 > SCRATCH_BYTES {
        return;
    }
    let mut pool = SCRATCH.lock().unwrap_or_else(|e| e.into_inner());
    if pool.len() < SCRATCH_BUFFERS {
        pool.push(v);
    } else if let Some(small) = pool.iter_mut().min_by_key(|b| b.capacity())
        && small.capacity() < v.capacity()
    {
        *small = v;
    }
}

/// Multiply-adds of one pass over the active taps.
fn work(g: &Conv2dGeometry, pattern: &SparsePattern) -> usize {
    let [oh, ow] = g.output();
    g.batch * pattern.nnz() * oh * ow
}

/// The phase layout of a geometry: the strides, the phase width `wq`
/// ([`Conv2dGeometry::pitch`]) and the length of one phase plane (its rows and one spare row,
/// for the taps' offsets).
#[derive(Clone, Copy)]
struct Phases {
    s: [usize; 2],
    wq: usize,
    len: usize,
}

impl Phases {
    fn of(g: &Conv2dGeometry) -> Self {
        let (pt, pb) = g.padding[0];
        let hq = (g.input[0] + pt + pb).div_ceil(g.stride[0]);
        let wq = g.pitch();
        Self {
            s: g.stride,
            wq,
            len: (hq + 1) * wq,
        }
    }

    /// Phase planes per input plane.
    fn count(&self) -> usize {
        self.s[0] * self.s[1]
    }

    /// The phase of tap `(i, j)` and its offset in that phase.
    fn tap(&self, g: &Conv2dGeometry, i: usize, j: usize) -> (usize, usize) {
        let (a, b) = (i * g.dilation[0], j * g.dilation[1]);
        let phase = (a % self.s[0]) * self.s[1] + b % self.s[1];
        (phase, (a / self.s[0]) * self.wq + b / self.s[1])
    }

    /// Where input pixel `(ih, iw)` lies: phase and position in it.
    #[inline]
    fn locate(&self, g: &Conv2dGeometry, ih: usize, iw: usize) -> (usize, usize) {
        let (r, c) = (ih + g.padding[0].0, iw + g.padding[1].0);
        (
            (r % self.s[0]) * self.s[1] + c % self.s[1],
            (r / self.s[0]) * self.wq + c / self.s[1],
        )
    }

    /// The phase planes of every input plane of `x` (`[planes, h, w]`), zero-padded.
    fn split(&self, x: &[f32], planes: usize, g: &Conv2dGeometry) -> Vec<f32> {
        let [h, w] = g.input;
        let group = self.count() * self.len;
        // Room for the weight gradient's whole-lane runs past the last plane.
        let mut data = scratch(planes * group + CONV_LANES);
        let unit = self.s == [1, 1];
        for_planes(
            &mut data[..planes * group],
            group,
            planes * group * 4,
            |t, dst| {
                let plane = &x[t * h * w..(t + 1) * h * w];
                for ih in 0..h {
                    let row = &plane[ih * w..(ih + 1) * w];
                    if unit {
                        let (_, at) = self.locate(g, ih, 0);
                        dst[at..at + w].copy_from_slice(row);
                    } else {
                        for (iw, &v) in row.iter().enumerate() {
                            let (phase, at) = self.locate(g, ih, iw);
                            dst[phase * self.len + at] = v;
                        }
                    }
                }
            },
        );
        data
    }

    /// Sum the phase planes `acc` back into an input plane `dst` (`[h, w]`).
    fn merge(&self, acc: &[f32], dst: &mut [f32], g: &Conv2dGeometry) {
        let [h, w] = g.input;
        for ih in 0..h {
            let row = &mut dst[ih * w..(ih + 1) * w];
            if self.s == [1, 1] {
                let (_, at) = self.locate(g, ih, 0);
                row.copy_from_slice(&acc[at..at + w]);
            } else {
                for (iw, d) in row.iter_mut().enumerate() {
                    let (phase, at) = self.locate(g, ih, iw);
                    *d = acc[phase * self.len + at];
                }
            }
        }
    }
}

/// The output gradient `dy` (`[planes, oh, ow]`) with rows of width `wq`, zero past `ow`, one
/// plane every `stride >= oh * wq` values (zero past the rows).
fn pitched(dy: &[f32], planes: usize, g: &Conv2dGeometry, wq: usize, stride: usize) -> Vec<f32> {
    let [oh, ow] = g.output();
    let mut data = scratch(planes * stride);
    for_planes(&mut data, stride, planes * stride * 4, |t, dst| {
        let plane = &dy[t * oh * ow..(t + 1) * oh * ow];
        for r in 0..oh {
            dst[r * wq..r * wq + ow].copy_from_slice(&plane[r * ow..(r + 1) * ow]);
        }
    });
    data
}

/// `d[t] += a * s[t]`.
#[inline]
fn axpy(d: &mut [f32], a: f32, s: &[f32]) {
    for (d, &s) in d.iter_mut().zip(s) {
        *d += a * s;
    }
}

/// `s[t mod 32] += a[t] * c[t]`, vectorisable (the lanes stay in registers).
#[inline]
fn lane_add(s: &mut [f32; CONV_LANES], a: &[f32], c: &[f32]) {
    let mut acc = *s;
    let mut ca = a.chunks_exact(CONV_LANES);
    let mut cc = c.chunks_exact(CONV_LANES);
    for (x, y) in (&mut ca).zip(&mut cc) {
        let (x, y): (&[f32; CONV_LANES], &[f32; CONV_LANES]) = (
            x.try_into().expect("a full chunk"),
            y.try_into().expect("a full chunk"),
        );
        for l in 0..CONV_LANES {
            acc[l] += x[l] * y[l];
        }
    }
    for (l, (&x, &y)) in ca.remainder().iter().zip(cc.remainder()).enumerate() {
        acc[l] += x * y;
    }
    *s = acc;
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
    g.check_operands(pattern, [("x", nx, x.len()), ("weight", nw, weight.len())])?;
    let ([oh_n, ow_n], taps) = (g.output(), g.taps());
    let ph = Phases::of(g);
    let group = ph.count() * ph.len;
    let xp = ph.split(x, g.batch * g.channels_in, g);
    let mut y = vec![0.0f32; ny];
    for_planes(&mut y, oh_n * ow_n, work(g, pattern), |t, plane| {
        let (b, o) = (t / g.channels_out, t % g.channels_out);
        let mut acc = vec![0.0f32; oh_n * ph.wq];
        for &k in pattern.row(o) {
            let (c, i, j) = g.tap(k as usize);
            let (phase, offset) = ph.tap(g, i, j);
            let at = (b * g.channels_in + c) * group + phase * ph.len + offset;
            axpy(&mut acc, weight[o * taps + k as usize], &xp[at..]);
        }
        for (dst, src) in plane.chunks_exact_mut(ow_n).zip(acc.chunks_exact(ph.wq)) {
            dst.copy_from_slice(&src[..ow_n]);
        }
    });
    recycle(xp);
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
    let [_, ny, nw] = g.sizes();
    g.check_operands(
        pattern,
        [("dy", ny, dy.len()), ("weight", nw, weight.len())],
    )?;
    let ph = Phases::of(g);
    let stride = g.output()[0] * ph.wq;
    let dyp = pitched(dy, g.batch * g.channels_out, g, ph.wq, stride);
    let dx = input_grad(&dyp, stride, weight, pattern, g, &ph);
    recycle(dyp);
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
    let [nx, ny, _] = g.sizes();
    g.check_operands(pattern, [("x", nx, x.len()), ("dy", ny, dy.len())])?;
    let ph = Phases::of(g);
    let run = weight_grad_run(g, &ph);
    let xp = ph.split(x, g.batch * g.channels_in, g);
    let dyp = pitched(dy, g.batch * g.channels_out, g, ph.wq, run);
    let dw = weight_grad(&xp, &dyp, run, pattern, g, &ph);
    recycle(xp);
    recycle(dyp);
    Ok(dw)
}

/// Both gradients (the input gradient only when `with_input_grad`), sharing one pitched copy
/// of `dy`: equal to [`sparse_conv2d_input_grad`] and [`sparse_conv2d_weight_grad`].
///
/// # Errors
/// [`SparseError::Shape`] when an operand or the pattern does not fit the geometry.
pub fn sparse_conv2d_backward(
    x: &[f32],
    dy: &[f32],
    weight: &[f32],
    pattern: &SparsePattern,
    g: &Conv2dGeometry,
    with_input_grad: bool,
) -> Result<(Option<Vec<f32>>, Vec<f32>), SparseError> {
    let [nx, ny, nw] = g.sizes();
    g.check_operands(pattern, [("x", nx, x.len()), ("dy", ny, dy.len())])?;
    SparsePattern::check("weight", nw, weight.len())?;
    let ph = Phases::of(g);
    let run = weight_grad_run(g, &ph);
    let dyp = pitched(dy, g.batch * g.channels_out, g, ph.wq, run);
    let dx = with_input_grad.then(|| input_grad(&dyp, run, weight, pattern, g, &ph));
    let xp = ph.split(x, g.batch * g.channels_in, g);
    let dw = weight_grad(&xp, &dyp, run, pattern, g, &ph);
    recycle(xp);
    recycle(dyp);
    Ok((dx, dw))
}

/// The input gradient from the pitched output gradient `dyp` (one plane every `stride`).
fn input_grad(
    dyp: &[f32],
    stride: usize,
    weight: &[f32],
    pattern: &SparsePattern,
    g: &Conv2dGeometry,
    ph: &Phases,
) -> Vec<f32> {
    let ([h, w], [oh_n, _], taps) = (g.input, g.output(), g.taps());
    let [kh, kw] = g.kernel;
    let out_plane = oh_n * ph.wq;
    let columns = pattern.columns();
    let mut dx = vec![0.0f32; g.sizes()[0]];
    for_planes(&mut dx, h * w, work(g, pattern), |t, plane| {
        let (b, c) = (t / g.channels_in, t % g.channels_in);
        let mut acc = vec![0.0f32; ph.count() * ph.len];
        for k in c * kh * kw..(c + 1) * kh * kw {
            let (_, i, j) = g.tap(k);
            let (phase, offset) = ph.tap(g, i, j);
            let dst = &mut acc[phase * ph.len + offset..];
            let entries = columns.col_ptr[k] as usize..columns.col_ptr[k + 1] as usize;
            for &o in &columns.col_row[entries] {
                let o = o as usize;
                let src = &dyp[(b * g.channels_out + o) * stride..][..out_plane];
                axpy(dst, weight[o * taps + k], src);
            }
        }
        ph.merge(&acc, plane, g);
    });
    dx
}

/// The weight gradient's run per output plane: whole runs of 32 lanes (the padding of the
/// pitched `dy` is zero, so its products are too).
fn weight_grad_run(g: &Conv2dGeometry, ph: &Phases) -> usize {
    (g.output()[0] * ph.wq).next_multiple_of(CONV_LANES)
}

/// The weight gradient from the phase planes `xp` and the pitched `dyp` (planes every `run`).
fn weight_grad(
    xp: &[f32],
    dyp: &[f32],
    run: usize,
    pattern: &SparsePattern,
    g: &Conv2dGeometry,
    ph: &Phases,
) -> Vec<f32> {
    let (group, taps) = (ph.count() * ph.len, g.taps());
    let mut dw = vec![0.0f32; g.sizes()[2]];
    for_planes(&mut dw, taps, work(g, pattern), |o, row| {
        // Sample by sample, so that one image's planes stay in cache for every tap.
        let active = pattern.row(o);
        let mut lanes = vec![[0.0f32; CONV_LANES]; active.len()];
        for b in 0..g.batch {
            let grads = &dyp[(b * g.channels_out + o) * run..][..run];
            for (&k, s) in active.iter().zip(lanes.iter_mut()) {
                let (c, i, j) = g.tap(k as usize);
                let (phase, offset) = ph.tap(g, i, j);
                let at = (b * g.channels_in + c) * group + phase * ph.len + offset;
                lane_add(s, grads, &xp[at..at + run]);
            }
        }
        for (&k, s) in active.iter().zip(&lanes) {
            row[k as usize] = lane_sum(s);
        }
    });
    dw
}
