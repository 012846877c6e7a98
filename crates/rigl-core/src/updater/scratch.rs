//! `scratch`: the initial random mask, kept for the whole run (the true static baseline).

use super::{MaskUpdater, Method, UpdateContext, UpdateDecision, UpdateInput};
use crate::error::Result;

/// Keeps the initial mask; never updates.
#[derive(Clone, Copy, Debug, Default)]
pub struct Scratch;

impl MaskUpdater for Scratch {
    fn method(&self) -> Method {
        Method::Scratch
    }

    fn box_clone(&self) -> Box<dyn MaskUpdater> {
        Box::new(*self)
    }

    fn updates(&self) -> bool {
        false
    }

    fn update(&mut self, _ctx: &UpdateContext, input: &UpdateInput) -> Result<UpdateDecision> {
        Ok(UpdateDecision {
            mask: input.mask.clone(),
            reset: input.nothing(),
            changes: None,
        })
    }
}
