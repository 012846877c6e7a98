//! One layer's FLOPs and bits.

use super::{LayerCount, SpatialRule};
use crate::spec::{LayerKind, LayerSpec};
use rigl_core::n_ones;

/// Bits per stored weight or bias.
pub const PARAM_BITS: f64 = 32.0;

/// 'Same'-padding output size of the reference counter.
pub(super) fn same_output(input: usize, kernel: usize, stride: usize) -> usize {
    let num = (input + 2 * (kernel / 2) + 1).saturating_sub(kernel);
    num.div_ceil(stride.max(1))
}

/// Count one layer at `sparsity`.
pub fn count_layer(spec: &LayerSpec, sparsity: f64, masked: bool, rule: SpatialRule) -> LayerCount {
    let [k_h, k_w] = spec.kernel_size();
    let (c_in, c_out) = match spec.kind {
        LayerKind::Dense => (spec.shape[0], spec.shape[1]),
        LayerKind::Conv => (spec.in_channels_per_group(), spec.out_channels()),
        // The reference counts a [k, k, C, 1] depthwise kernel like a convolution.
        LayerKind::Depthwise => (spec.out_channels(), 1),
    };
    let (input_size, output_size) = match (spec.kind, rule) {
        (LayerKind::Dense, _) => ([1, 1], [1, 1]),
        (_, SpatialRule::Actual) => (spec.input_size, spec.output_size),
        (_, SpatialRule::Reference) => {
            let i = spec.counted_input_size;
            (
                i,
                [
                    same_output(i[0], k_h, spec.stride[0]),
                    same_output(i[1], k_w, spec.stride[1]),
                ],
            )
        }
    };
    let density = 1.0 - sparsity;
    let n_out = (output_size[0] * output_size[1] * c_out) as f64;
    let vector = (k_h * k_w * c_in) as f64 * density;
    let mults = vector * n_out + n_out;
    let adds = (vector - 1.0) * n_out + n_out;
    let numel = spec.numel();
    let mut bits = numel as f64 * PARAM_BITS * density + c_out as f64 * PARAM_BITS;
    if sparsity > 0.0 {
        bits += numel as f64;
    }
    LayerCount {
        path: spec.path.clone(),
        kind: spec.kind,
        shape: spec.shape.clone(),
        masked,
        sparsity,
        numel,
        nnz: n_ones(sparsity.clamp(0.0, 1.0), numel),
        input_size,
        output_size,
        mults,
        adds,
        flops: mults + adds,
        bits,
    }
}
