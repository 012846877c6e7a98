//! SNFS (Dettmers & Zettlemoyer, sparse momentum) as the reference implements it: drop by
//! magnitude, grow where the exponential moving average of the dense gradient is largest. The
//! average is updated every step, before the optimizer step, `avg = decay * avg + (1 - decay) *
//! g` from zero (TF's `ExponentialMovingAverage` of a tensor, without debiasing), with no
//! redistribution of density between layers. The averages are the method's state.

use super::drop_grow::{Growth, drop_and_grow};
use super::{MaskUpdater, Method, MethodState, UpdateContext, UpdateDecision, UpdateInput};
use crate::error::Result;
use burn::tensor::Tensor;
use std::collections::HashMap;

/// Drop by magnitude, grow by |EMA of the dense gradient|.
#[derive(Clone, Debug)]
pub struct Snfs {
    decay: f64,
    averages: HashMap<String, Tensor<1>>,
}

impl Snfs {
    /// SNFS with moving-average decay `decay` (the reference's `s_momentum`, 0.9) and no
    /// average yet.
    pub fn new(decay: f64) -> Self {
        Self {
            decay,
            averages: HashMap::new(),
        }
    }

    /// The moving average of the layer at `path`, once a step has observed it.
    pub fn average(&self, path: &str) -> Option<&Tensor<1>> {
        self.averages.get(path)
    }
}

impl MaskUpdater for Snfs {
    fn method(&self) -> Method {
        Method::Snfs
    }

    fn box_clone(&self) -> Box<dyn MaskUpdater> {
        Box::new(self.clone())
    }

    fn needs_dense_gradient(&self, _is_update_step: bool) -> bool {
        true
    }

    fn observe(&mut self, path: &str, dense_grad: &Tensor<1>) {
        let g = dense_grad.clone().mul_scalar(1.0 - self.decay);
        let avg = match self.averages.remove(path) {
            Some(a) => a.mul_scalar(self.decay) + g,
            None => g,
        };
        self.averages.insert(path.to_string(), avg);
    }

    fn state(&self) -> MethodState {
        let mut state: MethodState = self
            .averages
            .iter()
            .map(|(p, t)| (p.clone(), t.clone()))
            .collect();
        state.sort_by(|a, b| a.0.cmp(&b.0));
        state
    }

    fn load_state(&mut self, state: MethodState) -> Result<()> {
        self.averages = state.into_iter().collect();
        Ok(())
    }

    fn update(&mut self, ctx: &UpdateContext, input: &UpdateInput) -> Result<UpdateDecision> {
        let parts = input
            .layers
            .iter()
            .map(|l| {
                self.averages
                    .get(&l.path)
                    .map(|a| l.view(a.clone().to_device(&input.device())))
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| input.missing("the gradient moving average"))?;
        let average = Tensor::cat(parts, 0);
        drop_and_grow(
            input,
            ctx.drop_fraction,
            Growth::Magnitude(average),
            ctx.allow_regrow,
        )
    }
}
