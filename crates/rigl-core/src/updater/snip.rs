//! SNIP (Lee et al.): masks start all ones; at the first step the connections with the largest
//! `|g * w|` (g the dense gradient of the first batch) are kept, `N - floor(s * N)` per layer
//! with `s` from the chosen distribution. That iteration trains nothing; afterwards the mask is
//! fixed.

use super::{LayerDecision, LayerView, MaskUpdater, Method, UpdateContext};
use crate::error::{Result, SparsityError};
use rigl_kernels::top_k_mask_f32;

/// One-shot pruning at initialisation by connection sensitivity.
pub struct Snip;

impl MaskUpdater for Snip {
    fn method(&self) -> Method {
        Method::Snip
    }

    fn needs_dense_gradient(&self, is_update_step: bool) -> bool {
        is_update_step
    }

    fn trains_on_update_step(&self) -> bool {
        false
    }

    fn one_shot(&self) -> bool {
        true
    }

    fn update_layer(&self, _ctx: &UpdateContext, layer: &LayerView<'_>) -> Result<LayerDecision> {
        let g = layer
            .dense_grad
            .ok_or_else(|| SparsityError::MissingInput {
                path: layer.path.to_string(),
                what: "the dense gradient",
            })?;
        let scores: Vec<f32> = g
            .iter()
            .zip(layer.weights)
            .map(|(g, w)| (g * w).abs())
            .collect();
        let mask = top_k_mask_f32(&scores, None, layer.target_active)
            .map_err(|source| SparsityError::Select {
                path: layer.path.to_string(),
                source,
            })?
            .mask;
        Ok(LayerDecision {
            reset: vec![false; mask.len()],
            mask,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_top_connection_sensitivity() {
        let w = [1.0, -2.0, 0.5, 3.0];
        let g = [0.1, 0.1, 10.0, -0.01];
        // |g*w| = 0.1, 0.2, 5.0, 0.03
        let ctx = UpdateContext {
            step: 0,
            drop_fraction: 0.0,
            seed: 0,
            allow_regrow: true,
            begin_step: 0,
            end_step: 0,
        };
        let d = Snip
            .update_layer(
                &ctx,
                &LayerView {
                    path: "w",
                    weights: &w,
                    mask: &[true; 4],
                    dense_grad: Some(&g),
                    average: None,
                    target_active: 2,
                },
            )
            .unwrap();
        assert_eq!(d.mask, [false, true, true, false]);
    }
}
