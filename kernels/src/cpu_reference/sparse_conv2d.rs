//! Direct sparse 2-D convolution (groups 1): the forward, the input gradient and the weight
//! gradient at the active weights only, element by element. The weight `[out, in, kh, kw]` is
//! the row-major matrix `[out, in * kh * kw]` of its [`SparsePattern`]: row `o` lists the active
//! taps `k = (c * kh + i) * kw + j` of output channel `o`.
//!
//! # Order of sums
//! - forward: `y[b, o, oh, ow]` starts at `0.0` and adds `w[o, k] * x[b, c, ih, iw]` for the
//!   active taps `k` of row `o` in increasing `k`, skipping taps that fall in the padding;
//! - input gradient: `dx[b, c, ih, iw]` starts at `0.0` and adds `w[o, k] * dy[b, o, oh, ow]`
//!   for the taps `k` of channel `c` in increasing `k`, and for each tap the active outputs `o`
//!   in increasing `o` (each pair reaches an input through at most one output position);
//! - weight gradient: [`CONV_LANES`] (32) lanes per active tap; for `b`, then `oh`, then `ow`
//!   increasing, the products `dy[b, o, oh, ow] * x[b, c, ih, iw]` whose input is inside the
//!   image go to lane `(oh * pitch + ow) mod 32`, with `pitch = ceil((w + pad_left +
//!   pad_right) / stride_w)` ([`Conv2dGeometry::pitch`]); the lanes are then summed as
//!   [`lane_sum`] does. (Thirty-two lanes are eight independent four-wide vector sums: a
//!   weight gradient of long runs is not bound by the latency of one accumulator.)
//!
//! The fast CPU path ([`crate::cpu::sparse_conv2d`]) takes the same orders; it works on
//! zero-padded planes and adds products with the padding, which are zeros, so it equals this
//! reference bit for bit when the inputs are finite.

use super::sparse_pattern::{SparseError, SparsePattern};

/// Lanes of the convolution weight gradient's sums (see the module docs).
pub const CONV_LANES: usize = 32;

/// The sum of the lanes of a convolution weight gradient: `t[l] = (s[l] + s[l + 8]) + (s[l +
/// 16] + s[l + 24])` for `l < 8`, then `((t0 + t1) + (t2 + t3)) + ((t4 + t5) + (t6 + t7))`.
pub fn lane_sum(s: &[f32; CONV_LANES]) -> f32 {
    let t: [f32; 8] = std::array::from_fn(|l| (s[l] + s[l + 8]) + (s[l + 16] + s[l + 24]));
    ((t[0] + t[1]) + (t[2] + t[3])) + ((t[4] + t[5]) + (t[6] + t[7]))
}

/// The shape of a convolution the sparse kernels run: NCHW input, OIHW weight, groups 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Conv2dGeometry {
    /// Batch size.
    pub batch: usize,
    /// Input channels.
    pub channels_in: usize,
    /// Output channels.
    pub channels_out: usize,
    /// Input height and width.
    pub input: [usize; 2],
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Stride along height and width (non-zero).
    pub stride: [usize; 2],
    /// Padding `(begin, end)` along height and width.
    pub padding: [(usize, usize); 2],
    /// Dilation along height and width (non-zero).
    pub dilation: [usize; 2],
}

impl Conv2dGeometry {
    /// The geometry of a convolution of an input `[batch, channels_in, height, width]` by a
    /// weight `[channels_out, channels_in / groups, kh, kw]` with Burn's options.
    ///
    /// # Errors
    /// [`SparseError::Unsupported`] for grouped convolutions (groups > 1), zero stride or
    /// dilation; [`SparseError::Shape`] when the weight's input channels differ from the
    /// input's or the kernel does not fit in the padded input.
    pub fn new(
        x: [usize; 4],
        weight: [usize; 4],
        stride: [usize; 2],
        padding: [(usize, usize); 2],
        dilation: [usize; 2],
        groups: usize,
    ) -> Result<Self, SparseError> {
        if groups != 1 {
            return Err(SparseError::Unsupported {
                what: format!("grouped convolutions (groups {groups})"),
            });
        }
        if stride.contains(&0) || dilation.contains(&0) {
            return Err(SparseError::Unsupported {
                what: format!("stride {stride:?} or dilation {dilation:?} with a zero"),
            });
        }
        let [batch, channels_in, h, w] = x;
        let [channels_out, weight_in, kh, kw] = weight;
        if weight_in != channels_in {
            return Err(SparseError::Shape {
                operand: "weight input channels",
                expected: channels_in,
                actual: weight_in,
            });
        }
        let geometry = Self {
            batch,
            channels_in,
            channels_out,
            input: [h, w],
            kernel: [kh, kw],
            stride,
            padding,
            dilation,
        };
        for d in 0..2 {
            let span = dilation[d] * (geometry.kernel[d].max(1) - 1) + 1;
            let padded = geometry.input[d] + padding[d].0 + padding[d].1;
            if geometry.kernel[d] == 0 || span > padded {
                return Err(SparseError::Shape {
                    operand: "kernel extent",
                    expected: padded,
                    actual: span,
                });
            }
        }
        Ok(geometry)
    }

    /// Output height and width.
    pub fn output(&self) -> [usize; 2] {
        std::array::from_fn(|d| {
            let padded = self.input[d] + self.padding[d].0 + self.padding[d].1;
            (padded - self.dilation[d] * (self.kernel[d] - 1) - 1) / self.stride[d] + 1
        })
    }

    /// Taps per output channel: `channels_in * kh * kw` (the pattern's columns).
    pub fn taps(&self) -> usize {
        self.channels_in * self.kernel[0] * self.kernel[1]
    }

    /// Elements of the input, the output and the weight.
    pub fn sizes(&self) -> [usize; 3] {
        let [oh, ow] = self.output();
        [
            self.batch * self.channels_in * self.input[0] * self.input[1],
            self.batch * self.channels_out * oh * ow,
            self.channels_out * self.taps(),
        ]
    }

    /// The pattern is the weight's: `[channels_out, taps]`.
    ///
    /// # Errors
    /// [`SparseError::Shape`] otherwise.
    pub fn check_pattern(&self, pattern: &SparsePattern) -> Result<(), SparseError> {
        SparsePattern::check("pattern rows", self.channels_out, pattern.rows())?;
        SparsePattern::check("pattern columns", self.taps(), pattern.cols())
    }

    /// The pattern fits ([`check_pattern`](Self::check_pattern)) and each operand `(name,
    /// expected length, actual length)` has its length.
    ///
    /// # Errors
    /// [`SparseError::Shape`] naming the first that does not.
    pub fn check_operands(
        &self,
        pattern: &SparsePattern,
        operands: [(&'static str, usize, usize); 2],
    ) -> Result<(), SparseError> {
        self.check_pattern(pattern)?;
        for (name, expected, actual) in operands {
            SparsePattern::check(name, expected, actual)?;
        }
        Ok(())
    }

    /// The channel and kernel offsets `(c, i, j)` of tap `k`.
    pub fn tap(&self, k: usize) -> (usize, usize, usize) {
        let [kh, kw] = self.kernel;
        (k / (kh * kw), (k / kw) % kh, k % kw)
    }

    /// The output indices along dimension `d` (0 height, 1 width) whose input index for kernel
    /// offset `i` is inside the image: `lo..hi` (empty when none).
    pub fn valid(&self, d: usize, i: usize) -> std::ops::Range<usize> {
        let out = self.output()[d];
        let (s, p, off) = (self.stride[d], self.padding[d].0, i * self.dilation[d]);
        let lo = if p > off { (p - off).div_ceil(s) } else { 0 };
        let last = self.input[d] + p;
        let hi = if last > off {
            ((last - 1 - off) / s + 1).min(out)
        } else {
            0
        };
        lo.min(hi)..hi
    }

    /// The row pitch of the weight gradient's lanes: `ceil((w + pad_left + pad_right) /
    /// stride_w)`, the width of one stride phase of the zero-padded input (the padded width at
    /// stride 1).
    pub fn pitch(&self) -> usize {
        (self.input[1] + self.padding[1].0 + self.padding[1].1).div_ceil(self.stride[1])
    }

    /// The input index along dimension `d` of output index `o` and kernel offset `i` (valid
    /// when `o` is in [`valid`](Self::valid)`(d, i)`).
    #[inline]
    pub fn input_index(&self, d: usize, o: usize, i: usize) -> usize {
        o * self.stride[d] + i * self.dilation[d] - self.padding[d].0
    }
}

/// `y = conv2d(x, W)` over the active taps of `W`.
///
/// # Shapes
/// - `x`: `[batch, channels_in, h, w]`; `weight`: `[channels_out, channels_in, kh, kw]` dense
///   (inactive values not read); output `[batch, channels_out, oh, ow]`
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
    let ([h, w], [oh_n, ow_n], taps) = (g.input, g.output(), g.taps());
    let mut y = vec![0.0f32; ny];
    for b in 0..g.batch {
        for o in 0..g.channels_out {
            for oh in 0..oh_n {
                for ow in 0..ow_n {
                    let mut acc = 0.0f32;
                    for &k in pattern.row(o) {
                        let (c, i, j) = g.tap(k as usize);
                        if !g.valid(0, i).contains(&oh) || !g.valid(1, j).contains(&ow) {
                            continue;
                        }
                        let (ih, iw) = (g.input_index(0, oh, i), g.input_index(1, ow, j));
                        acc += weight[o * taps + k as usize]
                            * x[((b * g.channels_in + c) * h + ih) * w + iw];
                    }
                    y[((b * g.channels_out + o) * oh_n + oh) * ow_n + ow] = acc;
                }
            }
        }
    }
    Ok(y)
}

/// The input gradient of [`sparse_conv2d`]: `dx = conv2d_transpose(dy, W)` over the active
/// taps.
///
/// # Shapes
/// - `dy`: `[batch, channels_out, oh, ow]`; `weight` as [`sparse_conv2d`]; output the shape
///   of `x`
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
    g.check_operands(
        pattern,
        [("dy", ny, dy.len()), ("weight", nw, weight.len())],
    )?;
    let ([h, w], [oh_n, ow_n], taps) = (g.input, g.output(), g.taps());
    let [kh, kw] = g.kernel;
    let columns = pattern.columns();
    let mut dx = vec![0.0f32; nx];
    for b in 0..g.batch {
        for c in 0..g.channels_in {
            for ih in 0..h {
                for iw in 0..w {
                    let mut acc = 0.0f32;
                    for k in c * kh * kw..(c + 1) * kh * kw {
                        let (_, i, j) = g.tap(k);
                        // The output position whose tap (i, j) reads (ih, iw), if any.
                        let Some(oh) = (0..oh_n).find(|&oh| {
                            g.valid(0, i).contains(&oh) && g.input_index(0, oh, i) == ih
                        }) else {
                            continue;
                        };
                        let Some(ow) = (0..ow_n).find(|&ow| {
                            g.valid(1, j).contains(&ow) && g.input_index(1, ow, j) == iw
                        }) else {
                            continue;
                        };
                        let entries = columns.col_ptr[k] as usize..columns.col_ptr[k + 1] as usize;
                        for &o in &columns.col_row[entries] {
                            let o = o as usize;
                            acc += weight[o * taps + k]
                                * dy[((b * g.channels_out + o) * oh_n + oh) * ow_n + ow];
                        }
                    }
                    dx[((b * g.channels_in + c) * h + ih) * w + iw] = acc;
                }
            }
        }
    }
    Ok(dx)
}

/// The weight gradient of [`sparse_conv2d`] at the active taps, dense `[channels_out,
/// channels_in, kh, kw]` with `0.0` at inactive taps.
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
    g.check_operands(pattern, [("x", nx, x.len()), ("dy", ny, dy.len())])?;
    let ([h, w], [oh_n, ow_n], taps) = (g.input, g.output(), g.taps());
    let mut dw = vec![0.0f32; nw];
    for o in 0..g.channels_out {
        for &k in pattern.row(o) {
            let (c, i, j) = g.tap(k as usize);
            let mut s = [0.0f32; CONV_LANES];
            let pitch = g.pitch();
            for b in 0..g.batch {
                for oh in g.valid(0, i) {
                    let ih = g.input_index(0, oh, i);
                    for ow in g.valid(1, j) {
                        let iw = g.input_index(1, ow, j);
                        s[(oh * pitch + ow) % CONV_LANES] += dy
                            [((b * g.channels_out + o) * oh_n + oh) * ow_n + ow]
                            * x[((b * g.channels_in + c) * h + ih) * w + iw];
                    }
                }
            }
            dw[o * taps + k as usize] = lane_sum(&s);
        }
    }
    Ok(dw)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geometry(x: [usize; 4], w: [usize; 4], stride: usize, pad: usize) -> Conv2dGeometry {
        Conv2dGeometry::new(x, w, [stride; 2], [(pad, pad); 2], [1, 1], 1).unwrap()
    }

    /// A dense direct convolution, the textbook loop.
    fn dense_conv(x: &[f32], w: &[f32], g: &Conv2dGeometry) -> Vec<f32> {
        let [oh_n, ow_n] = g.output();
        let [h, wd] = g.input;
        let [kh, kw] = g.kernel;
        let mut y = vec![0.0; g.sizes()[1]];
        for b in 0..g.batch {
            for o in 0..g.channels_out {
                for oh in 0..oh_n {
                    for ow in 0..ow_n {
                        let mut acc = 0.0;
                        for c in 0..g.channels_in {
                            for i in 0..kh {
                                for j in 0..kw {
                                    let ih =
                                        (oh * g.stride[0] + i) as isize - g.padding[0].0 as isize;
                                    let iw =
                                        (ow * g.stride[1] + j) as isize - g.padding[1].0 as isize;
                                    if ih < 0 || iw < 0 || ih >= h as isize || iw >= wd as isize {
                                        continue;
                                    }
                                    acc += w[((o * g.channels_in + c) * kh + i) * kw + j]
                                        * x[((b * g.channels_in + c) * h + ih as usize) * wd
                                            + iw as usize];
                                }
                            }
                        }
                        y[((b * g.channels_out + o) * oh_n + oh) * ow_n + ow] = acc;
                    }
                }
            }
        }
        y
    }

    #[test]
    fn output_sizes_are_burns() {
        let g = geometry([2, 3, 7, 5], [4, 3, 3, 3], 2, 1);
        assert_eq!(g.output(), [4, 3]);
        let g = geometry([1, 1, 4, 4], [1, 1, 1, 1], 1, 0);
        assert_eq!(g.output(), [4, 4]);
        // Tap 0 with padding 1 and stride 2 reads row -1 at output 0: outputs 1.. are valid.
        let g = geometry([1, 1, 7, 7], [1, 1, 3, 3], 2, 1);
        assert_eq!(g.valid(0, 0), 1..4);
        assert_eq!(g.valid(0, 1), 0..4);
        assert_eq!(g.valid(0, 2), 0..3);
    }

    #[test]
    fn a_full_pattern_is_the_dense_convolution() {
        // Small integers: exact in any order of sums.
        for (stride, pad) in [(1, 0), (1, 1), (2, 1), (2, 0)] {
            let g = geometry([2, 3, 6, 5], [4, 3, 3, 3], stride, pad);
            let x: Vec<f32> = (0..g.sizes()[0]).map(|i| (i % 5) as f32 - 2.0).collect();
            let w: Vec<f32> = (0..g.sizes()[2]).map(|i| (i % 7) as f32 - 3.0).collect();
            let pattern = SparsePattern::from_mask(4, g.taps(), &vec![true; g.sizes()[2]]).unwrap();
            assert_eq!(
                sparse_conv2d(&x, &w, &pattern, &g).unwrap(),
                dense_conv(&x, &w, &g),
                "stride {stride} padding {pad}"
            );
        }
    }

    #[test]
    fn gradients_are_the_adjoints_of_the_forward() {
        // <conv(x, W), dy> = <x, dx(dy, W)> = <W, dW(x, dy)> on the active taps, exactly with
        // small integers.
        let g = geometry([2, 2, 5, 6], [3, 2, 3, 3], 2, 1);
        let mask: Vec<bool> = (0..g.sizes()[2]).map(|i| i % 3 != 0).collect();
        let pattern = SparsePattern::from_mask(3, g.taps(), &mask).unwrap();
        let x: Vec<f32> = (0..g.sizes()[0]).map(|i| (i % 5) as f32 - 2.0).collect();
        let w: Vec<f32> = (0..g.sizes()[2])
            .map(|i| {
                if mask[i] {
                    (i % 7) as f32 - 3.0
                } else {
                    f32::NAN
                }
            })
            .collect();
        let dy: Vec<f32> = (0..g.sizes()[1]).map(|i| (i % 3) as f32 - 1.0).collect();
        let y = sparse_conv2d(&x, &w, &pattern, &g).unwrap();
        let dx = sparse_conv2d_input_grad(&dy, &w, &pattern, &g).unwrap();
        let dw = sparse_conv2d_weight_grad(&x, &dy, &pattern, &g).unwrap();
        let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(a, b)| a * b).sum::<f32>();
        let w_active: Vec<f32> = w
            .iter()
            .map(|v| if v.is_nan() { 0.0 } else { *v })
            .collect();
        assert_eq!(dot(&y, &dy), dot(&x, &dx));
        assert_eq!(dot(&y, &dy), dot(&w_active, &dw));
        assert!(dw.iter().zip(&mask).all(|(v, &m)| m || *v == 0.0));
    }

    #[test]
    fn bad_geometry_is_a_typed_error() {
        let err = Conv2dGeometry::new([1, 4, 8, 8], [4, 1, 3, 3], [1; 2], [(1, 1); 2], [1; 2], 4)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "no sparse kernels for grouped convolutions (groups 4)"
        );
        let err = Conv2dGeometry::new([1, 3, 8, 8], [4, 2, 3, 3], [1; 2], [(1, 1); 2], [1; 2], 1)
            .unwrap_err();
        assert!(matches!(
            err,
            SparseError::Shape {
                operand: "weight input channels",
                ..
            }
        ));
        let err = Conv2dGeometry::new([1, 3, 2, 2], [4, 3, 5, 5], [1; 2], [(0, 0); 2], [1; 2], 1)
            .unwrap_err();
        assert!(matches!(
            err,
            SparseError::Shape {
                operand: "kernel extent",
                ..
            }
        ));
        let g = geometry([1, 3, 8, 8], [4, 3, 3, 3], 1, 1);
        let pattern = SparsePattern::from_mask(4, 26, &[true; 104]).unwrap();
        assert!(sparse_conv2d(&[0.0; 192], &[0.0; 108], &pattern, &g).is_err());
    }
}
