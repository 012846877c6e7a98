//! One layer's FLOPs and bits.

use super::{LayerCount, SpatialRule};
use crate::spec::{LayerKind, LayerSpec};
use rigl_core::{Structure, n_ones};

/// Bits per stored weight or bias.
pub const PARAM_BITS: f64 = 32.0;

/// 'Same'-padding output size of the reference counter.
pub(super) fn same_output(input: usize, kernel: usize, stride: usize) -> usize {
    let num = (input + 2 * (kernel / 2) + 1).saturating_sub(kernel);
    num.div_ceil(stride.max(1))
}

/// Bits that record which of a sparse layer's `numel` weights are the `nnz` stored ones.
///
/// Unstructured and constant fan-in layers keep a 1-bit mask, `numel` bits (the reference's
/// rule). An N:M layer stores each kept weight's position in its group of `m`,
/// `ceil(log2 m)` bits per kept weight (the compressed format of 2:4 sparse tensor cores:
/// 2 bits per kept weight, half the values), when that is fewer bits than the mask: 2:4 costs
/// `numel` bits either way, 1:4 half of it, 3:4 keeps the mask.
pub fn mask_bits(structure: Structure, numel: usize, nnz: usize) -> f64 {
    match structure {
        Structure::NM { m, .. } => {
            let index_bits = (usize::BITS - (m.max(2) - 1).leading_zeros()) as f64;
            (nnz as f64 * index_bits).min(numel as f64)
        }
        Structure::Unstructured | Structure::ConstantFanIn => numel as f64,
    }
}

/// Count one layer at `sparsity`, its mask a 1-bit mask ([`count_layer_structured`] counts
/// N:M metadata instead).
pub fn count_layer(spec: &LayerSpec, sparsity: f64, masked: bool, rule: SpatialRule) -> LayerCount {
    count_layer_structured(spec, sparsity, masked, rule, Structure::Unstructured)
}

/// Count one layer at `sparsity` whose mask has `structure` (see [`mask_bits`]).
pub fn count_layer_structured(
    spec: &LayerSpec,
    sparsity: f64,
    masked: bool,
    rule: SpatialRule,
    structure: Structure,
) -> LayerCount {
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
    let nnz = n_ones(sparsity.clamp(0.0, 1.0), numel);
    let mut bits = numel as f64 * PARAM_BITS * density + c_out as f64 * PARAM_BITS;
    if sparsity > 0.0 {
        bits += mask_bits(structure, numel, nnz);
    }
    LayerCount {
        path: spec.path.clone(),
        kind: spec.kind,
        shape: spec.shape.clone(),
        masked,
        sparsity,
        numel,
        nnz,
        input_size,
        output_size,
        mults,
        adds,
        flops: mults + adds,
        bits,
    }
}
