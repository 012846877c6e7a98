//! `static_rezero`: the reference's `static` method. The mask never changes, but at every update
//! the lowest-magnitude `int(n_ones * drop_fraction)` active weights, and their optimizer state,
//! are reset to zero (they "drop and regrow in place").

use super::drop_grow::n_prune;
use super::{LayerDecision, LayerView, MaskUpdater, Method, UpdateContext};
use crate::error::{Result, SparsityError};
use rigl_kernels::top_k_mask_f32;

/// Re-zeroes the smallest active weights at each update; keeps the mask.
pub struct StaticRezero;

impl MaskUpdater for StaticRezero {
    fn method(&self) -> Method {
        Method::StaticRezero
    }

    fn update_layer(&self, ctx: &UpdateContext, layer: &LayerView<'_>) -> Result<LayerDecision> {
        let n_ones = layer.mask.iter().filter(|&&m| m).count();
        let keep = n_ones - n_prune(n_ones, ctx.drop_fraction);
        let magnitude: Vec<f32> = layer.weights.iter().map(|w| w.abs()).collect();
        let kept = top_k_mask_f32(&magnitude, Some(layer.mask), keep)
            .map_err(|source| SparsityError::Select {
                path: layer.path.to_string(),
                source,
            })?
            .mask;
        let reset = layer
            .mask
            .iter()
            .zip(&kept)
            .map(|(m, k)| *m && !*k)
            .collect();
        Ok(LayerDecision {
            mask: layer.mask.to_vec(),
            reset,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rezeroes_lowest_active_and_keeps_mask() {
        let w = [0.5, -0.05, 0.0, 0.3, 0.01];
        let m = [true, true, false, true, true];
        let ctx = UpdateContext {
            step: 0,
            drop_fraction: 0.5,
            seed: 0,
            allow_regrow: true,
            begin_step: 0,
            end_step: 10,
        };
        let d = StaticRezero
            .update_layer(
                &ctx,
                &LayerView {
                    path: "w",
                    weights: &w,
                    mask: &m,
                    dense_grad: None,
                    average: None,
                    target_active: 4,
                },
            )
            .unwrap();
        assert_eq!(d.mask, m);
        assert_eq!(d.reset, [false, true, false, false, true]);
    }
}
