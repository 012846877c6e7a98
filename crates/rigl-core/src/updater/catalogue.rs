//! Mask-update problems for benchmarks, built from [`rigl_kernels::catalogue`] so that the
//! kernel benchmarks, `cargo bench` and `rigl bench` time the same data.

use super::{LayerSlot, UpdateContext, UpdateInput};
use burn::tensor::{Bool, Device, Tensor, TensorData};
use rigl_kernels::catalogue::{self, KRule, Layout, Pattern};

/// RigL's update of the 54 ResNet-50 kernels (25.5M weights) at 90% sparsity: the catalogue's
/// magnitude-pattern scores as weights with 10% of each layer active, a uniform draw as dense
/// gradients, drop fraction 0.3. Returns the input on `device` and the update context.
pub fn resnet50_rigl(device: &Device) -> (UpdateInput, UpdateContext) {
    let weights = catalogue::resnet50(Some(0.1));
    let grads = catalogue::problem(
        Pattern::Uniform,
        Layout::ResNet50,
        weights.len(),
        KRule::Fraction(0.3),
        None,
        51,
    );
    let n = weights.len();
    let mask = weights.eligible.unwrap_or_else(|| vec![true; n]);
    let layers = weights
        .segments
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let n_active = mask[s.offset..s.offset + s.len]
                .iter()
                .filter(|&&b| b)
                .count();
            LayerSlot {
                path: format!("layer{i}.weight"),
                offset: s.offset,
                len: s.len,
                n_active,
                target_active: n_active,
                target_sparsity: 1.0 - n_active as f64 / s.len.max(1) as f64,
                groups: None,
                global: true,
            }
        })
        .collect();
    let floats = |v: Vec<f32>| Tensor::<1>::from_data(TensorData::new(v, [n]), device);
    let input = UpdateInput {
        layers,
        weights: floats(weights.scores),
        mask: Tensor::<1, Bool>::from_data(TensorData::new(mask, [n]), device),
        dense_grad: Some(floats(grads.scores)),
    };
    let ctx = UpdateContext {
        step: 100,
        drop_fraction: 0.3,
        seed: 0,
        allow_regrow: true,
        begin_step: 0,
        end_step: 10_000,
        threshold_decay: 0.0,
        weight_decay: 0.0,
    };
    (input, ctx)
}
