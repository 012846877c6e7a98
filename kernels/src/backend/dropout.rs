//! The backend extension of dropout: [`crate::cpu::dropout`] for the CPU backend (Flex) and
//! Autodiff, whose backward applies the same seed's mask to the output gradient (no mask is
//! stored).
//!
//! Call it through [`crate::dropout()`].

use crate::cpu;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Flex, TensorMetadata};
use burn::tensor::TensorData;

/// Dropout with a counter-based mask.
#[burn::backend::backend_extension(Flex, Autodiff)]
pub trait DropoutBackend: burn::backend::Backend {
    /// `x * mask / keep` for the mask of `seed`, like `x`.
    fn fused_dropout(x: FloatTensor<Self>, keep: f64, seed: u64) -> FloatTensor<Self>;
}

impl DropoutBackend for Flex {
    fn fused_dropout(x: FloatTensor<Self>, keep: f64, seed: u64) -> FloatTensor<Self> {
        let (shape, device) = (x.shape(), x.device());
        let y = super::flex::with_f32(x, |x| cpu::dropout::dropout(x, keep, seed));
        Flex::float_from_data(TensorData::new(y, shape), &device)
    }
}

#[derive(Debug)]
struct DropoutBackward;

impl<B: Backend + DropoutBackend> Backward<B, 1> for DropoutBackward {
    type State = (f64, u64);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (keep, seed) = ops.state;
        let [node] = ops.parents;
        let dy = grads.consume::<B>(&ops.node);
        if let Some(node) = node {
            grads.register::<B>(node.id, B::fused_dropout(dy, keep, seed));
        }
    }
}

impl<B: Backend + DropoutBackend, C: CheckpointStrategy> DropoutBackend for Autodiff<B, C> {
    fn fused_dropout(x: FloatTensor<Self>, keep: f64, seed: u64) -> FloatTensor<Self> {
        match DropoutBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(
                (keep, seed),
                B::fused_dropout(x.into_primitive(), keep, seed),
            ),
            OpsKind::UnTracked(prep) => {
                prep.finish(B::fused_dropout(x.into_primitive(), keep, seed))
            }
        }
    }
}
