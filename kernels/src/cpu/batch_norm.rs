//! Batch normalisation with the batch's statistics (training mode) and its gradients on the
//! CPU: two passes forward (statistics, then normalise) and two backward (per-channel sums,
//! then the input gradient), where Burn's composition of tensor operations makes about a dozen.
//!
//! The statistics are summed in `f64` per channel (the batch order, then the positions), so they
//! are as accurate as Burn's `f32` means or more.

use super::spmm::MIN_PARALLEL_WORK;
use rayon::prelude::*;

/// The layout of a batch-norm input `[batch, channels, rest...]`: `positions` = product of
/// the rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchNormShape {
    /// Batch size.
    pub batch: usize,
    /// Channels.
    pub channels: usize,
    /// Elements per channel and sample.
    pub positions: usize,
}

impl BatchNormShape {
    fn count(&self) -> f64 {
        (self.batch * self.positions) as f64
    }

    /// The runs of channel `c`: one per sample, `positions` long.
    fn runs<'a>(&self, x: &'a [f32], c: usize) -> impl Iterator<Item = &'a [f32]> + 'a {
        let (p, stride) = (self.positions, self.channels * self.positions);
        (0..self.batch).map(move |b| &x[b * stride + c * p..b * stride + (c + 1) * p])
    }

    fn parallel(&self) -> bool {
        self.batch * self.channels * self.positions >= MIN_PARALLEL_WORK / 4
    }
}

/// Per-channel values computed in parallel when the input is large.
fn per_channel(
    shape: &BatchNormShape,
    f: impl Fn(usize) -> [f64; 2] + Sync + Send,
) -> Vec<[f64; 2]> {
    if shape.parallel() {
        (0..shape.channels).into_par_iter().map(f).collect()
    } else {
        (0..shape.channels).map(f).collect()
    }
}

/// The output, the mean and the biased variance of each channel.
///
/// # Panics
/// When `x` is not `batch * channels * positions` long or `gamma`, `beta` not `channels`.
pub fn batch_norm_train(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    epsilon: f64,
    shape: BatchNormShape,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let n = shape.batch * shape.channels * shape.positions;
    assert_eq!(x.len(), n, "batch-norm input length");
    assert_eq!(gamma.len(), shape.channels, "gamma length");
    assert_eq!(beta.len(), shape.channels, "beta length");
    let stats = per_channel(&shape, |c| {
        let sum: f64 = shape
            .runs(x, c)
            .map(|r| r.iter().map(|&v| v as f64).sum::<f64>())
            .sum();
        let mean = sum / shape.count();
        let sq: f64 = shape
            .runs(x, c)
            .map(|r| r.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>())
            .sum();
        [mean, sq / shape.count()]
    });
    // y = (x - mean) * scale + beta: centred first, so a large mean does not cancel.
    let affine: Vec<(f32, f32, f32)> = stats
        .iter()
        .zip(gamma.iter().zip(beta))
        .map(|(&[mean, var], (&g, &b))| {
            (mean as f32, (g as f64 / (var + epsilon).sqrt()) as f32, b)
        })
        .collect();
    let mut y = vec![0.0f32; n];
    let p = shape.positions;
    // The planes of `y` line up with those of `x`.
    let fill = |(t, out): (usize, &mut [f32])| {
        let (mean, scale, beta) = affine[t % shape.channels];
        for (o, &v) in out.iter_mut().zip(&x[t * p..(t + 1) * p]) {
            *o = (v - mean) * scale + beta;
        }
    };
    if shape.parallel() {
        y.par_chunks_mut(p.max(1)).enumerate().for_each(fill);
    } else {
        y.chunks_mut(p.max(1)).enumerate().for_each(fill);
    }
    let mean = stats.iter().map(|s| s[0] as f32).collect();
    let var = stats.iter().map(|s| s[1] as f32).collect();
    (y, mean, var)
}

/// The gradients of [`batch_norm_train`] with respect to the input, `gamma` and `beta`, from
/// the output gradient `dy` and the statistics the forward returned.
///
/// # Panics
/// When a length does not fit `shape`.
pub fn batch_norm_train_backward(
    x: &[f32],
    gamma: &[f32],
    mean: &[f32],
    var: &[f32],
    epsilon: f64,
    dy: &[f32],
    shape: BatchNormShape,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let n = shape.batch * shape.channels * shape.positions;
    assert_eq!(x.len(), n, "batch-norm input length");
    assert_eq!(dy.len(), n, "batch-norm output gradient length");
    let inv_std: Vec<f64> = var
        .iter()
        .map(|&v| 1.0 / (v as f64 + epsilon).sqrt())
        .collect();
    // Per channel: sum(dy) and sum(dy * x̂).
    let sums = per_channel(&shape, |c| {
        let (m, s) = (mean[c] as f64, inv_std[c]);
        let mut acc = [0.0f64; 2];
        for (xr, dr) in shape.runs(x, c).zip(shape.runs(dy, c)) {
            for (&xv, &dv) in xr.iter().zip(dr) {
                acc[0] += dv as f64;
                acc[1] += dv as f64 * (xv as f64 - m) * s;
            }
        }
        acc
    });
    let count = shape.count();
    // dx = gamma inv_std (dy - mean(dy) - (x - mean) inv_std mean(dy x̂)), centred first.
    let coef: Vec<[f32; 4]> = (0..shape.channels)
        .map(|c| {
            let s = inv_std[c];
            let (mdy, mdx) = (sums[c][0] / count, sums[c][1] / count);
            [
                (gamma[c] as f64 * s) as f32,
                mdy as f32,
                mean[c],
                (s * mdx) as f32,
            ]
        })
        .collect();
    let p = shape.positions;
    let mut dx = vec![0.0f32; n];
    let fill = |(t, out): (usize, &mut [f32])| {
        let [g, mdy, m, q] = coef[t % shape.channels];
        let (xs, ds) = (&x[t * p..(t + 1) * p], &dy[t * p..(t + 1) * p]);
        for ((o, &xv), &dv) in out.iter_mut().zip(xs).zip(ds) {
            *o = g * (dv - mdy - (xv - m) * q);
        }
    };
    if shape.parallel() {
        dx.par_chunks_mut(p.max(1)).enumerate().for_each(fill);
    } else {
        dx.chunks_mut(p.max(1)).enumerate().for_each(fill);
    }
    let dgamma = sums.iter().map(|s| s[1] as f32).collect();
    let dbeta = sums.iter().map(|s| s[0] as f32).collect();
    (dx, dgamma, dbeta)
}
