//! SET (Mocanu et al.): drop the smallest-magnitude connections, grow at random.
//!
//! Random growth scores are Philox samples keyed by `(seed, parameter path, step + 1)` (step 0
//! of the stream keys the initial mask), so growth is reproducible for a seed on every device.

use super::drop_grow::{GrowScores, drop_and_grow};
use super::{LayerDecision, LayerView, MaskUpdater, Method, UpdateContext};
use crate::error::Result;
use rigl_kernels::{Philox, stream_id};

/// The counter-based step at which growth at update step `t` draws (step 0 is the initial mask).
pub fn growth_stream_step(t: i64) -> u32 {
    (t + 1) as u32
}

/// Drop by magnitude, grow uniformly at random.
pub struct Set;

impl MaskUpdater for Set {
    fn method(&self) -> Method {
        Method::Set
    }

    fn update_layer(&self, ctx: &UpdateContext, layer: &LayerView<'_>) -> Result<LayerDecision> {
        let mut keys = vec![0u32; layer.mask.len()];
        Philox::new(ctx.seed).fill_u32(
            stream_id(layer.path),
            growth_stream_step(ctx.step),
            &mut keys,
        );
        drop_and_grow(
            layer,
            ctx.drop_fraction,
            GrowScores::Random(&keys),
            ctx.allow_regrow,
        )
    }
}
