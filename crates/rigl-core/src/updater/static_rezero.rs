//! `static_rezero`: the reference's `static` method. The mask never changes, but at every update
//! the lowest-magnitude `int(n_ones * drop_fraction)` active weights, and their optimizer state,
//! are reset to zero (they "drop and regrow in place").

use super::drop_grow::n_prune;
use super::{MaskUpdater, Method, UpdateContext, UpdateDecision, UpdateInput};
use crate::error::Result;
use rigl_kernels::segmented_top_k_mask_abs;

/// Re-zeroes the smallest active weights at each update; keeps the mask.
#[derive(Clone, Copy, Debug, Default)]
pub struct StaticRezero;

impl MaskUpdater for StaticRezero {
    fn method(&self) -> Method {
        Method::StaticRezero
    }

    fn box_clone(&self) -> Box<dyn MaskUpdater> {
        Box::new(*self)
    }

    fn update(&mut self, ctx: &UpdateContext, input: &UpdateInput) -> Result<UpdateDecision> {
        let keep = input.segments(|l| l.n_active - n_prune(l.n_active, ctx.drop_fraction));
        let kept = segmented_top_k_mask_abs(input.weights.clone(), Some(input.mask.clone()), &keep)
            .map_err(|e| input.select_error(e))?
            .mask;
        Ok(UpdateDecision {
            reset: input.mask.clone().bool_and(kept.bool_not()),
            mask: input.mask.clone(),
            changes: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::updater::HostLayer;
    use burn::tensor::Device;

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
            threshold_decay: 0.0,
            weight_decay: 0.0,
        };
        let input = UpdateInput::from_host(
            &[HostLayer {
                path: "w",
                weights: &w,
                mask: &m,
                dense_grad: None,
                target_active: 4,
            }],
            &Device::default(),
        );
        let (mask, reset) = StaticRezero.update(&ctx, &input).unwrap().to_host();
        assert_eq!(mask, m);
        assert_eq!(reset, [false, true, false, false, true]);
    }
}
