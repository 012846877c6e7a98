//! The direct sparse convolution (see [`crate::cpu_reference::sparse_conv2d()`]), one thread
//! per output element, per input element or per active tap, summing in the reference's order.
//!
//! The geometry comes as a `u32` table `geo`: `[batch, channels_in, channels_out, h, w, oh, ow,
//! kh, kw, stride_h, stride_w, pad_top, pad_left, dilation_h, dilation_w, pitch]`.

// Cube functions index buffers by position and take `%`: CubeCL has no iterators or
// `is_multiple_of` inside kernels.
#![allow(clippy::needless_range_loop, clippy::manual_is_multiple_of)]

use cubecl::prelude::*;

/// `y[b, o, oh, ow]`: the active taps of row `o` in increasing order, taps in the padding
/// skipped.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn sparse_conv_forward<F: Float>(
    x: &[F],
    weight: &[F],
    row_ptr: &[u32],
    row_col: &[u32],
    geo: &[u32],
    y: &mut [F],
    #[define(F)] _dtype: ElemType,
) {
    let id = ABSOLUTE_POS;
    if id < y.len() {
        let cin = geo[1] as usize;
        let cout = geo[2] as usize;
        let h = geo[3] as usize;
        let w = geo[4] as usize;
        let oh_n = geo[5] as usize;
        let ow_n = geo[6] as usize;
        let kh = geo[7] as usize;
        let kw = geo[8] as usize;
        let taps = cin * kh * kw;
        let ow = id % ow_n;
        let t = id / ow_n;
        let oh = t % oh_n;
        let t = t / oh_n;
        let o = t % cout;
        let b = t / cout;
        let mut acc = F::new(0.0);
        for e in row_ptr[o] as usize..row_ptr[o + 1] as usize {
            let k = row_col[e] as usize;
            let c = k / (kh * kw);
            let i = (k / kw) % kh;
            let j = k % kw;
            let r = oh * geo[9] as usize + i * geo[13] as usize;
            let q = ow * geo[10] as usize + j * geo[14] as usize;
            let pt = geo[11] as usize;
            let pl = geo[12] as usize;
            if r >= pt && r < pt + h && q >= pl && q < pl + w {
                acc += weight[o * taps + k] * x[((b * cin + c) * h + r - pt) * w + q - pl];
            }
        }
        y[id] = acc;
    }
}

/// `dx[b, c, ih, iw]`: the taps of channel `c` in increasing order, for each the active outputs
/// in increasing order (column view).
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn sparse_conv_input_grad<F: Float>(
    dy: &[F],
    weight: &[F],
    col_ptr: &[u32],
    col_row: &[u32],
    geo: &[u32],
    dx: &mut [F],
    #[define(F)] _dtype: ElemType,
) {
    let id = ABSOLUTE_POS;
    if id < dx.len() {
        let cin = geo[1] as usize;
        let cout = geo[2] as usize;
        let h = geo[3] as usize;
        let w = geo[4] as usize;
        let oh_n = geo[5] as usize;
        let ow_n = geo[6] as usize;
        let kh = geo[7] as usize;
        let kw = geo[8] as usize;
        let sh = geo[9] as usize;
        let sw = geo[10] as usize;
        let taps = cin * kh * kw;
        let iw = id % w;
        let t = id / w;
        let ih = t % h;
        let t = t / h;
        let c = t % cin;
        let b = t / cin;
        let r = ih + geo[11] as usize;
        let q = iw + geo[12] as usize;
        let mut acc = F::new(0.0);
        for k in c * kh * kw..(c + 1) * kh * kw {
            let i = (k / kw) % kh;
            let j = k % kw;
            let di = i * geo[13] as usize;
            let dj = j * geo[14] as usize;
            if r >= di && q >= dj && (r - di) % sh == 0 && (q - dj) % sw == 0 {
                let oh = (r - di) / sh;
                let ow = (q - dj) / sw;
                if oh < oh_n && ow < ow_n {
                    for e in col_ptr[k] as usize..col_ptr[k + 1] as usize {
                        let o = col_row[e] as usize;
                        acc += weight[o * taps + k] * dy[((b * cout + o) * oh_n + oh) * ow_n + ow];
                    }
                }
            }
        }
        dx[id] = acc;
    }
}

/// The sum of lane `lane` of active tap `k` of output channel `o`: the products at the
/// positions `t = oh * pitch + ow ≡ lane (mod 32)`, samples in order, positions increasing.
#[cube]
#[allow(clippy::too_many_arguments)]
fn conv_lane<F: Float>(x: &[F], dy: &[F], geo: &[u32], o: usize, k: usize, lane: usize) -> F {
    let batch = geo[0] as usize;
    let cin = geo[1] as usize;
    let cout = geo[2] as usize;
    let h = geo[3] as usize;
    let w = geo[4] as usize;
    let oh_n = geo[5] as usize;
    let ow_n = geo[6] as usize;
    let kh = geo[7] as usize;
    let kw = geo[8] as usize;
    let pt = geo[11] as usize;
    let pl = geo[12] as usize;
    let pitch = geo[15] as usize;
    let c = k / (kh * kw);
    let i = (k / kw) % kh;
    let j = k % kw;
    let mut s = F::new(0.0);
    for b in 0..batch {
        let mut t = lane;
        while t < oh_n * pitch {
            let oh = t / pitch;
            let ow = t % pitch;
            let r = oh * geo[9] as usize + i * geo[13] as usize;
            let q = ow * geo[10] as usize + j * geo[14] as usize;
            if ow < ow_n && r >= pt && r < pt + h && q >= pl && q < pl + w {
                s += dy[((b * cout + o) * oh_n + oh) * ow_n + ow]
                    * x[((b * cin + c) * h + r - pt) * w + q - pl];
            }
            t += 32;
        }
    }
    s
}

/// Lanes `l, l + 8, l + 16, l + 24` summed as the reference's `lane_sum` does.
#[cube]
fn conv_lane_group<F: Float>(x: &[F], dy: &[F], geo: &[u32], o: usize, k: usize, l: usize) -> F {
    (conv_lane::<F>(x, dy, geo, o, k, l) + conv_lane::<F>(x, dy, geo, o, k, l + 8))
        + (conv_lane::<F>(x, dy, geo, o, k, l + 16) + conv_lane::<F>(x, dy, geo, o, k, l + 24))
}

/// `dW[o, k]` at every active tap in the 32-lane order of the reference: one thread per entry
/// of the row-ordered list, writing into a zero-filled `dw`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn sparse_conv_weight_grad<F: Float>(
    x: &[F],
    dy: &[F],
    entry_row: &[u32],
    row_col: &[u32],
    geo: &[u32],
    dw: &mut [F],
    #[define(F)] _dtype: ElemType,
) {
    let e = ABSOLUTE_POS;
    if e < entry_row.len() {
        let o = entry_row[e] as usize;
        let k = row_col[e] as usize;
        let taps = geo[1] as usize * geo[7] as usize * geo[8] as usize;
        let t0 = conv_lane_group::<F>(x, dy, geo, o, k, 0);
        let t1 = conv_lane_group::<F>(x, dy, geo, o, k, 1);
        let t2 = conv_lane_group::<F>(x, dy, geo, o, k, 2);
        let t3 = conv_lane_group::<F>(x, dy, geo, o, k, 3);
        let t4 = conv_lane_group::<F>(x, dy, geo, o, k, 4);
        let t5 = conv_lane_group::<F>(x, dy, geo, o, k, 5);
        let t6 = conv_lane_group::<F>(x, dy, geo, o, k, 6);
        let t7 = conv_lane_group::<F>(x, dy, geo, o, k, 7);
        dw[o * taps + k] = ((t0 + t1) + (t2 + t3)) + ((t4 + t5) + (t6 + t7));
    }
}
