//! RigL (Evci et al.): drop the smallest-magnitude connections, grow where the dense gradient
//! `|dL/d(w*m)|` of the current batch is largest (inactive positions included; kept positions
//! excluded).
//!
//! As in the reference, an update step trains nothing by default: that batch only updates the
//! mask and the step counter does not advance (see
//! [`DstConfig::train_on_update_steps`](crate::DstConfig::train_on_update_steps)).

use super::drop_grow::{Growth, drop_and_grow};
use super::{MaskUpdater, Method, UpdateContext, UpdateDecision, UpdateInput};
use crate::error::Result;

/// Drop by magnitude, grow by |dense gradient|.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rigl;

impl MaskUpdater for Rigl {
    fn method(&self) -> Method {
        Method::Rigl
    }

    fn box_clone(&self) -> Box<dyn MaskUpdater> {
        Box::new(*self)
    }

    fn needs_dense_gradient(&self, is_update_step: bool) -> bool {
        is_update_step
    }

    fn trains_on_update_step(&self) -> bool {
        false
    }

    fn schedule_step(&self, t: i64) -> i64 {
        t
    }

    fn update(&mut self, ctx: &UpdateContext, input: &UpdateInput) -> Result<UpdateDecision> {
        let grad = input.require_dense_grad()?;
        drop_and_grow(
            input,
            ctx.drop_fraction,
            Growth::Magnitude(grad),
            ctx.allow_regrow,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::updater::HostLayer;
    use burn::tensor::Device;

    #[test]
    fn grows_at_largest_dense_gradient_among_non_kept() {
        // 10 positions, 4 active (0..4) with weights 4,3,2,1: drop 0.5 keeps positions 0 and 1.
        let w = [4.0, 3.0, 2.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        let m = [
            true, true, true, true, false, false, false, false, false, false,
        ];
        // Largest |g| at 0 (kept: excluded), then 9 and 7; position 2 (dropped) scores low.
        let g = [100.0, 0.0, 0.5, 0.0, 1.0, -2.0, 0.0, -50.0, 0.0, 60.0];
        let ctx = UpdateContext {
            step: 0,
            drop_fraction: 0.5,
            seed: 0,
            allow_regrow: true,
            begin_step: 0,
            end_step: 100,
            threshold_decay: 0.0,
            weight_decay: 0.0,
        };
        let input = UpdateInput::from_host(
            &[HostLayer {
                path: "w",
                weights: &w,
                mask: &m,
                dense_grad: Some(&g),
                target_active: 4,
            }],
            &Device::default(),
        );
        let (mask, reset) = Rigl.update(&ctx, &input).unwrap().to_host();
        let on: Vec<usize> = (0..10).filter(|&i| mask[i]).collect();
        assert_eq!(on, [0, 1, 7, 9]);
        let new: Vec<usize> = (0..10).filter(|&i| reset[i]).collect();
        assert_eq!(new, [7, 9]);
    }
}
