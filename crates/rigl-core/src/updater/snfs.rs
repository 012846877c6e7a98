//! SNFS (Dettmers & Zettlemoyer, sparse momentum) as the reference implements it: drop by
//! magnitude, grow where the exponential moving average of the dense gradient is largest. The
//! average is updated every step, `avg = 0.9 * avg + 0.1 * g`, with no redistribution of
//! density between layers.

use super::drop_grow::{Growth, drop_and_grow};
use super::{MaskUpdater, Method, UpdateContext, UpdateDecision, UpdateInput};
use crate::error::Result;

/// Drop by magnitude, grow by |EMA of the dense gradient|.
pub struct Snfs;

impl MaskUpdater for Snfs {
    fn method(&self) -> Method {
        Method::Snfs
    }

    fn needs_dense_gradient(&self, _is_update_step: bool) -> bool {
        true
    }

    fn update(&self, ctx: &UpdateContext, input: &UpdateInput) -> Result<UpdateDecision> {
        let average = input.require_average()?;
        drop_and_grow(
            input,
            ctx.drop_fraction,
            Growth::Magnitude(average),
            ctx.allow_regrow,
        )
    }
}
