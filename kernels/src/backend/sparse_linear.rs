//! The backend extension of sparse linear layers: the three products of
//! [`crate::cpu_reference::spmm()`] and [`crate::cpu_reference::sddmm()`] as backend
//! operations, implemented for the CPU backend (Flex, the fast CPU path), the CubeCL backends
//! (wgpu, CUDA: [`crate::components::sparse_linear`]) and Autodiff, whose
//! hand-written backward runs the sparse input and weight gradients.
//!
//! Call them through [`crate::sparse_linear()`]; these are the primitives, with shapes already
//! checked.

use crate::cpu;
use crate::cpu_reference::sparse_pattern::SparsePattern;
use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, AutodiffBackend, Backend, Flex, TensorMetadata};
use burn::tensor::TensorData;
use std::sync::Arc;

/// Sparse linear products over the active positions of a [`SparsePattern`].
#[burn::backend::backend_extension(Cube: cfg(feature = "cube"), Flex, Fusion: cfg(feature = "cube"), Autodiff)]
pub trait SparseLinearBackend: burn::backend::Backend {
    /// `y = x W`: `x` `[batch, rows]`, `weight` `[rows, cols]` (inactive values not read);
    /// returns `[batch, cols]`.
    #[fusion(meta = |x, _weight, pattern| forward_spec(x, pattern))]
    fn sparse_linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        pattern: Arc<SparsePattern>,
    ) -> FloatTensor<Self>;

    /// Both gradients of [`sparse_linear`](SparseLinearBackend::sparse_linear) from the
    /// output gradient `dy` `[batch, cols]`: `dx = dy Wᵀ` `[batch, rows]` (a `[0, rows]` tensor
    /// unless `input_grad`) and `dW` `[rows, cols]`, zero at inactive positions.
    #[fusion(meta = |x, _dy, _weight, pattern, input_grad| backward_specs(x, pattern, *input_grad))]
    fn sparse_linear_backward(
        x: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        pattern: Arc<SparsePattern>,
        input_grad: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);
}

/// Output metadata for fusion: `y` is `[batch, cols]` like `x`'s dtype.
#[cfg(feature = "cube")]
fn forward_spec(
    x: &burn::backend::fusion::custom::TensorSpec,
    pattern: &SparsePattern,
) -> burn::backend::fusion::custom::TensorSpec {
    burn::backend::fusion::custom::TensorSpec::new(
        burn::backend::Shape::new([x.shape[0], pattern.cols()]),
        x.dtype,
    )
}

/// Output metadata for fusion: `dx` `[batch or 0, rows]` and `dW` `[rows, cols]`.
#[cfg(feature = "cube")]
fn backward_specs(
    x: &burn::backend::fusion::custom::TensorSpec,
    pattern: &SparsePattern,
    input_grad: bool,
) -> (
    burn::backend::fusion::custom::TensorSpec,
    burn::backend::fusion::custom::TensorSpec,
) {
    use burn::backend::fusion::custom::TensorSpec;
    let batch = if input_grad { x.shape[0] } else { 0 };
    (
        TensorSpec::new(burn::backend::Shape::new([batch, pattern.rows()]), x.dtype),
        TensorSpec::new(
            burn::backend::Shape::new([pattern.rows(), pattern.cols()]),
            x.dtype,
        ),
    )
}

#[cfg(feature = "cube")]
impl SparseLinearBackend for burn_cubecl::CubeBackend {
    fn sparse_linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        pattern: Arc<SparsePattern>,
    ) -> FloatTensor<Self> {
        crate::launch::sparse_forward(x, weight, &pattern)
    }

    fn sparse_linear_backward(
        x: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        pattern: Arc<SparsePattern>,
        input_grad: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        crate::launch::sparse_backward(x, dy, weight, &pattern, input_grad)
    }
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

    fn sparse_linear_backward(
        x: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        pattern: Arc<SparsePattern>,
        input_grad: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let batch = batch_of(&x);
        let like = x.clone();
        let (dx, dw) = super::flex::with_f32(x, |x| {
            super::flex::with_f32(dy, |dy| {
                super::flex::with_f32(weight, |w| {
                    cpu::sparse_linear_backward(x, dy, batch, w, &pattern, input_grad)
                })
            })
        })
        .expect("shapes checked by the caller");
        let dx = match dx {
            Some(dx) => from_vec(dx, [batch, pattern.rows()], &like),
            None => from_vec(Vec::new(), [0, pattern.rows()], &like),
        };
        (dx, from_vec(dw, [pattern.rows(), pattern.cols()], &like))
    }
}

/// The backward of [`SparseLinearBackend::sparse_linear`]: `dx = dy Wᵀ` (when the input is
/// tracked) and `dW = xᵀ dy` at the active positions, in one call.
#[derive(Debug)]
struct SparseLinearBackward;

impl<B: Backend + SparseLinearBackend> Backward<B, 2> for SparseLinearBackward {
    type State = (NodeId, NodeId, Arc<SparsePattern>);

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let (x, weight, pattern) = ops.state;
        let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(x);
        let weight = checkpointer.retrieve_node_output::<FloatTensor<B>>(weight);
        let [node_x, node_w] = ops.parents;
        let dy = grads.consume::<B>(&ops.node);
        let (dx, dw) = B::sparse_linear_backward(x, dy, weight, pattern, node_x.is_some());
        if let Some(node) = node_x {
            grads.register::<B>(node.id, dx);
        }
        if let Some(node) = node_w {
            grads.register::<B>(node.id, dw);
        }
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
        match SparseLinearBackward
            .prepare::<C>([x.node(), weight.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                // dx needs the weight, dW needs the input.
                let x_state = prep.checkpoint(&x);
                let weight_state = prep.checkpoint(&weight);
                let y =
                    B::sparse_linear(x.into_primitive(), weight.into_primitive(), pattern.clone());
                prep.finish((x_state, weight_state, pattern), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::sparse_linear(
                x.into_primitive(),
                weight.into_primitive(),
                pattern,
            )),
        }
    }

    fn sparse_linear_backward(
        x: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        pattern: Arc<SparsePattern>,
        input_grad: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (dx, dw) = B::sparse_linear_backward(
            x.into_primitive(),
            dy.into_primitive(),
            weight.into_primitive(),
            pattern,
            input_grad,
        );
        (
            <Self as AutodiffBackend>::from_inner(dx),
            <Self as AutodiffBackend>::from_inner(dw),
        )
    }
}
