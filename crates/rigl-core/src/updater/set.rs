//! SET (Mocanu et al.): drop the smallest-magnitude connections, grow at random.
//!
//! Random growth scores are Philox samples keyed by `(seed, parameter path, step + 1)` (step 0
//! of the stream keys the initial mask), so growth is reproducible for a seed on every device.

use super::drop_grow::{Growth, drop_and_grow};
use super::{MaskUpdater, Method, UpdateContext, UpdateDecision, UpdateInput};
use crate::error::Result;

/// The counter-based step at which growth at update step `t` draws (step 0 is the initial mask).
pub fn growth_stream_step(t: i64) -> u32 {
    (t + 1) as u32
}

/// Drop by magnitude, grow uniformly at random.
#[derive(Clone, Copy, Debug, Default)]
pub struct Set;

impl MaskUpdater for Set {
    fn method(&self) -> Method {
        Method::Set
    }

    fn box_clone(&self) -> Box<dyn MaskUpdater> {
        Box::new(*self)
    }

    fn update(&mut self, ctx: &UpdateContext, input: &UpdateInput) -> Result<UpdateDecision> {
        let grow = Growth::Random {
            seed: ctx.seed,
            step: growth_stream_step(ctx.step),
        };
        drop_and_grow(input, ctx.drop_fraction, grow, ctx.allow_regrow)
    }
}
