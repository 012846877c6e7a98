//! `scratch`: the initial random mask, kept for the whole run (the true static baseline).

use super::{MaskUpdater, Method, UpdateContext, UpdateDecision, UpdateInput};
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

    fn update(&self, _ctx: &UpdateContext, input: &UpdateInput) -> Result<UpdateDecision> {
        Ok(UpdateDecision {
            mask: input.mask.clone(),
            reset: input.nothing(),
            changes: None,
            thresholds: None,
        })
    }
}
