//! The autodiff state of a parameter, kept across an update made on the inner backend.

use burn::module::ParamId;
use burn::tensor::{GradientCheckpointingStrategy, Tensor};

/// What a parameter carries besides its value: taken before the value is rewritten without
/// autodiff (an optimizer step, new connections set to their initial weight) and put back on
/// the new value, the way Burn's module optimizer does. `Tensor::from_inner` alone would give
/// the default state and the next forward pass would fail or stop tracking the parameter.
pub(crate) struct ParamContext {
    require_grad: bool,
    distributed: bool,
    checkpointing: Option<GradientCheckpointingStrategy>,
}

impl ParamContext {
    /// The state of `param`.
    pub(crate) fn capture<const D: usize>(param: &Tensor<D>) -> Self {
        Self {
            require_grad: param.is_require_grad(),
            distributed: param.is_distributed(),
            checkpointing: param.gradient_checkpointing_strategy(),
        }
    }

    /// `updated` (a value on the inner backend) with the state of the parameter `id`.
    pub(crate) fn restore<const D: usize>(self, updated: Tensor<D>, id: ParamId) -> Tensor<D> {
        let mut p = Tensor::from_inner(updated);
        if let Some(s) = self.checkpointing {
            p = p.with_gradient_checkpointing_strategy(s);
        }
        if self.require_grad {
            p = p.require_grad();
        }
        if self.distributed {
            p = p.set_distributed(id);
        }
        p
    }
}
