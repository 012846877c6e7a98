//! SNFS (Dettmers & Zettlemoyer, sparse momentum) as the reference implements it: drop by
//! magnitude, grow where the exponential moving average of the dense gradient is largest. The
//! average is updated every step, `avg = 0.9 * avg + 0.1 * g`, with no redistribution of
//! density between layers.

use super::drop_grow::{GrowScores, drop_and_grow};
use super::{LayerDecision, LayerView, MaskUpdater, Method, UpdateContext};
use crate::error::{Result, SparsityError};

/// Drop by magnitude, grow by |EMA of the dense gradient|.
pub struct Snfs;

impl MaskUpdater for Snfs {
    fn method(&self) -> Method {
        Method::Snfs
    }

    fn needs_dense_gradient(&self, _is_update_step: bool) -> bool {
        true
    }

    fn update_layer(&self, ctx: &UpdateContext, layer: &LayerView<'_>) -> Result<LayerDecision> {
        let avg = layer.average.ok_or_else(|| SparsityError::MissingInput {
            path: layer.path.to_string(),
            what: "the gradient moving average",
        })?;
        let scores: Vec<f32> = avg.iter().map(|g| g.abs()).collect();
        drop_and_grow(
            layer,
            ctx.drop_fraction,
            GrowScores::Float(&scores),
            ctx.allow_regrow,
        )
    }
}
