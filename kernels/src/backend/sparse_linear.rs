//! The backend extension of sparse linear layers: the three products of
//! [`crate::cpu_reference::spmm()`] and [`crate::cpu_reference::sddmm()`] as backend
//! operations, implemented for the CPU backend (Flex, the fast CPU path) and for Autodiff, whose
//! hand-written backward runs the sparse input and weight gradients.
//!
//! Call them through [`crate::sparse_linear()`]; these are the primitives, with shapes already
//! checked.

use crate::cpu;
use crate::cpu_reference::sparse_pattern::SparsePattern;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, binary};
use burn::backend::autodiff::NodeId;
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, AutodiffBackend, Backend, Flex, TensorMetadata};
use burn::tensor::TensorData;
use std::sync::Arc;

/// Sparse linear products over the active positions of a [`SparsePattern`].
#[burn::backend::backend_extension(Flex, Autodiff)]
pub trait SparseLinearBackend: burn::backend::Backend {
    /// `y = x W`: `x` `[batch, rows]`, `weight` `[rows, cols]` (inactive values not read);
    /// returns `[batch, cols]`.
    fn sparse_linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        pattern: Arc<SparsePattern>,
    ) -> FloatTensor<Self>;

    /// `dx = dy Wᵀ`: `dy` `[batch, cols]`, `weight` `[rows, cols]`; returns `[batch, rows]`.
    fn sparse_linear_input_grad(
        dy: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        pattern: Arc<SparsePattern>,
    ) -> FloatTensor<Self>;

    /// `dW` at the active positions, zero elsewhere: `x` `[batch, rows]`, `dy` `[batch, cols]`;
    /// returns `[rows, cols]`.
    fn sparse_linear_weight_grad(
        x: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        pattern: Arc<SparsePattern>,
    ) -> FloatTensor<Self>;
}

fn batch_of(t: &FloatTensor<Flex>) -> usize {
    t.shape()[0]
}

fn from_vec(values: Vec<f32>, shape: [usize; 2], like: &FloatTensor<Flex>) -> FloatTensor<Flex> {
    Flex::float_from_data(TensorData::new(values, shape), &like.device())
}

impl SparseLinearBackend for Flex {
    fn sparse_linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        pattern: Arc<SparsePattern>,
    ) -> FloatTensor<Self> {
        let batch = batch_of(&x);
        let like = x.clone();
        let y = super::flex::with_f32(x, |x| {
            super::flex::with_f32(weight, |w| cpu::spmm(x, batch, w, &pattern))
        })
        .expect("shapes checked by the caller");
        from_vec(y, [batch, pattern.cols()], &like)
    }

    fn sparse_linear_input_grad(
        dy: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        pattern: Arc<SparsePattern>,
    ) -> FloatTensor<Self> {
        let batch = batch_of(&dy);
        let like = dy.clone();
        let dx = super::flex::with_f32(dy, |dy| {
            super::flex::with_f32(weight, |w| cpu::spmm_transposed(dy, batch, w, &pattern))
        })
        .expect("shapes checked by the caller");
        from_vec(dx, [batch, pattern.rows()], &like)
    }

    fn sparse_linear_weight_grad(
        x: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        pattern: Arc<SparsePattern>,
    ) -> FloatTensor<Self> {
        let batch = batch_of(&x);
        let like = x.clone();
        let dw = super::flex::with_f32(x, |x| {
            super::flex::with_f32(dy, |dy| cpu::sddmm(x, dy, batch, &pattern))
        })
        .expect("shapes checked by the caller");
        from_vec(dw, [pattern.rows(), pattern.cols()], &like)
    }
}

/// The backward of [`SparseLinearBackend::sparse_linear`]: `dx = dy Wᵀ` and `dW = xᵀ dy` at
/// the active positions, each only when its input is tracked.
#[derive(Debug)]
struct SparseLinearBackward;

impl<B: Backend + SparseLinearBackend> Backward<B, 2> for SparseLinearBackward {
    type State = (Option<NodeId>, Option<NodeId>, Arc<SparsePattern>);

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let (x, weight, pattern) = ops.state;
        let x = x.map(|id| checkpointer.retrieve_node_output::<FloatTensor<B>>(id));
        let weight = weight.map(|id| checkpointer.retrieve_node_output::<FloatTensor<B>>(id));
        let pattern_x = pattern.clone();
        binary::<B, _, _>(
            ops.parents,
            ops.node,
            grads,
            |dy| {
                B::sparse_linear_input_grad(dy, weight.expect("weight kept for dx"), pattern_x)
            },
            |dy| B::sparse_linear_weight_grad(x.expect("input kept for dW"), dy, pattern),
        );
    }
}

impl<B: Backend + SparseLinearBackend, C: CheckpointStrategy> SparseLinearBackend
    for Autodiff<B, C>
{
    fn sparse_linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        pattern: Arc<SparsePattern>,
    ) -> FloatTensor<Self> {
        let (x_tracked, weight_tracked) = (x.is_tracked(), weight.is_tracked());
        match SparseLinearBackward
            .prepare::<C>([x.node(), weight.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                // dx needs the weight, dW needs the input.
                let x_state = weight_tracked.then(|| prep.checkpoint(&x));
                let weight_state = x_tracked.then(|| prep.checkpoint(&weight));
                let y = B::sparse_linear(x.into_primitive(), weight.into_primitive(), pattern.clone());
                prep.finish((x_state, weight_state, pattern), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::sparse_linear(
                x.into_primitive(),
                weight.into_primitive(),
                pattern,
            )),
        }
    }

    fn sparse_linear_input_grad(
        dy: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        pattern: Arc<SparsePattern>,
    ) -> FloatTensor<Self> {
        <Self as AutodiffBackend>::from_inner(B::sparse_linear_input_grad(
            dy.into_primitive(),
            weight.into_primitive(),
            pattern,
        ))
    }

    fn sparse_linear_weight_grad(
        x: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        pattern: Arc<SparsePattern>,
    ) -> FloatTensor<Self> {
        <Self as AutodiffBackend>::from_inner(B::sparse_linear_weight_grad(
            x.into_primitive(),
            dy.into_primitive(),
            pattern,
        ))
    }
}
