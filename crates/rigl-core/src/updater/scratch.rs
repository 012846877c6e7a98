//! `scratch`: the initial random mask, kept for the whole run (the true static baseline).

use super::{LayerDecision, LayerView, MaskUpdater, Method, UpdateContext};
use crate::error::Result;

/// Keeps the initial mask; never updates.
pub struct Scratch;

impl MaskUpdater for Scratch {
    fn method(&self) -> Method {
        Method::Scratch
    }

    fn updates(&self) -> bool {
        false
    }

    fn update_layer(&self, _ctx: &UpdateContext, layer: &LayerView<'_>) -> Result<LayerDecision> {
        Ok(LayerDecision {
            mask: layer.mask.to_vec(),
            reset: vec![false; layer.mask.len()],
        })
    }
}
