//! The backend extension of sparse convolutions: [`crate::cpu_reference::sparse_conv2d()`] and
//! its two gradients as backend operations, implemented for the CPU backend (Flex, the fast CPU
//! path of [`crate::cpu::sparse_conv2d`]), the CubeCL backends (wgpu, CUDA:
//! [`crate::components::sparse_conv2d`]) and Autodiff, whose hand-written backward runs the
//! sparse input and weight gradients.
//!
//! Call them through [`crate::sparse_conv2d()`]; these are the primitives, with shapes already
//! checked.

use crate::cpu;
use crate::cpu_reference::sparse_conv2d::Conv2dGeometry;
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

/// Sparse 2-D convolutions over the active taps of a [`SparsePattern`] (`[channels_out,
/// channels_in * kh * kw]`).
#[burn::backend::backend_extension(Cube: cfg(feature = "cube"), Flex, Fusion: cfg(feature = "cube"), Autodiff)]
pub trait SparseConv2dBackend: burn::backend::Backend {
    /// `y = conv2d(x, W)`: `x` `[batch, channels_in, h, w]`, `weight` `[channels_out,
    /// channels_in, kh, kw]` (inactive values not read); returns `[batch, channels_out, oh, ow]`.
    #[fusion(meta = |x, _weight, _pattern, geometry| forward_spec(x, geometry))]
    fn sparse_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        pattern: Arc<SparsePattern>,
        geometry: Conv2dGeometry,
    ) -> FloatTensor<Self>;

    /// Both gradients of [`sparse_conv2d`](SparseConv2dBackend::sparse_conv2d) from the output
    /// gradient `dy`: `dx` like `x` (an empty tensor unless `input_grad`) and `dW` like the
    /// weight, zero at inactive taps.
    #[fusion(meta = |x, _dy, _weight, _pattern, geometry, input_grad| backward_specs(x, geometry, *input_grad))]
    fn sparse_conv2d_backward(
        x: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        pattern: Arc<SparsePattern>,
        geometry: Conv2dGeometry,
        input_grad: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);
}

/// Output metadata for fusion: `y` like the convolution's output, in `x`'s dtype.
#[cfg(feature = "cube")]
fn forward_spec(
    x: &burn::backend::fusion::custom::TensorSpec,
    g: &Conv2dGeometry,
) -> burn::backend::fusion::custom::TensorSpec {
    burn::backend::fusion::custom::TensorSpec::new(
        burn::backend::Shape::new(output_shape(g)),
        x.dtype,
    )
}

/// Output metadata for fusion: `dx` like the input (empty unless `input_grad`), `dW` like the
/// weight.
#[cfg(feature = "cube")]
fn backward_specs(
    x: &burn::backend::fusion::custom::TensorSpec,
    g: &Conv2dGeometry,
    input_grad: bool,
) -> (
    burn::backend::fusion::custom::TensorSpec,
    burn::backend::fusion::custom::TensorSpec,
) {
    use burn::backend::fusion::custom::TensorSpec;
    let dx = if input_grad {
        input_shape(g)
    } else {
        [0, 0, 0, 0]
    };
    (
        TensorSpec::new(burn::backend::Shape::new(dx), x.dtype),
        TensorSpec::new(burn::backend::Shape::new(weight_shape(g)), x.dtype),
    )
}

#[cfg(feature = "cube")]
impl SparseConv2dBackend for burn_cubecl::CubeBackend {
    fn sparse_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        pattern: Arc<SparsePattern>,
        geometry: Conv2dGeometry,
    ) -> FloatTensor<Self> {
        crate::launch::sparse_conv_forward(x, weight, &pattern, &geometry)
    }

    fn sparse_conv2d_backward(
        x: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        pattern: Arc<SparsePattern>,
        geometry: Conv2dGeometry,
        input_grad: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        crate::launch::sparse_conv_backward(x, dy, weight, &pattern, &geometry, input_grad)
    }
}

fn from_vec(values: Vec<f32>, shape: [usize; 4], like: &FloatTensor<Flex>) -> FloatTensor<Flex> {
    Flex::float_from_data(TensorData::new(values, shape), &like.device())
}

fn output_shape(g: &Conv2dGeometry) -> [usize; 4] {
    let [oh, ow] = g.output();
    [g.batch, g.channels_out, oh, ow]
}

fn input_shape(g: &Conv2dGeometry) -> [usize; 4] {
    [g.batch, g.channels_in, g.input[0], g.input[1]]
}

fn weight_shape(g: &Conv2dGeometry) -> [usize; 4] {
    [g.channels_out, g.channels_in, g.kernel[0], g.kernel[1]]
}

impl SparseConv2dBackend for Flex {
    fn sparse_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        pattern: Arc<SparsePattern>,
        geometry: Conv2dGeometry,
    ) -> FloatTensor<Self> {
        let like = x.clone();
        let y = super::flex::with_f32(x, |x| {
            super::flex::with_f32(weight, |w| cpu::sparse_conv2d(x, w, &pattern, &geometry))
        })
        .expect("shapes checked by the caller");
        from_vec(y, output_shape(&geometry), &like)
    }

    fn sparse_conv2d_backward(
        x: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        pattern: Arc<SparsePattern>,
        geometry: Conv2dGeometry,
        input_grad: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let like = x.clone();
        let (dx, dw) = super::flex::with_f32(x, |x| {
            super::flex::with_f32(dy, |dy| {
                super::flex::with_f32(weight, |w| {
                    cpu::sparse_conv2d_backward(x, dy, w, &pattern, &geometry, input_grad)
                })
            })
        })
        .expect("shapes checked by the caller");
        let dx = match dx {
            Some(dx) => from_vec(dx, input_shape(&geometry), &like),
            None => from_vec(Vec::new(), [0, 0, 0, 0], &like),
        };
        (dx, from_vec(dw, weight_shape(&geometry), &like))
    }
}

/// The backward of [`SparseConv2dBackend::sparse_conv2d`]: `dx` (when the input is tracked)
/// and `dW` at the active taps, in one call.
#[derive(Debug)]
struct SparseConv2dBackward;

impl<B: Backend + SparseConv2dBackend> Backward<B, 2> for SparseConv2dBackward {
    type State = (NodeId, NodeId, Arc<SparsePattern>, Conv2dGeometry);

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let (x, weight, pattern, geometry) = ops.state;
        let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(x);
        let weight = checkpointer.retrieve_node_output::<FloatTensor<B>>(weight);
        let [node_x, node_w] = ops.parents;
        let dy = grads.consume::<B>(&ops.node);
        let (dx, dw) =
            B::sparse_conv2d_backward(x, dy, weight, pattern, geometry, node_x.is_some());
        if let Some(node) = node_x {
            grads.register::<B>(node.id, dx);
        }
        if let Some(node) = node_w {
            grads.register::<B>(node.id, dw);
        }
    }
}

impl<B: Backend + SparseConv2dBackend, C: CheckpointStrategy> SparseConv2dBackend
    for Autodiff<B, C>
{
    fn sparse_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        pattern: Arc<SparsePattern>,
        geometry: Conv2dGeometry,
    ) -> FloatTensor<Self> {
        match SparseConv2dBackward
            .prepare::<C>([x.node(), weight.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let weight_state = prep.checkpoint(&weight);
                let y = B::sparse_conv2d(
                    x.into_primitive(),
                    weight.into_primitive(),
                    pattern.clone(),
                    geometry,
                );
                prep.finish((x_state, weight_state, pattern, geometry), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::sparse_conv2d(
                x.into_primitive(),
                weight.into_primitive(),
                pattern,
                geometry,
            )),
        }
    }

    fn sparse_conv2d_backward(
        x: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        pattern: Arc<SparsePattern>,
        geometry: Conv2dGeometry,
        input_grad: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (dx, dw) = B::sparse_conv2d_backward(
            x.into_primitive(),
            dy.into_primitive(),
            weight.into_primitive(),
            pattern,
            geometry,
            input_grad,
        );
        (
            <Self as AutodiffBackend>::from_inner(dx),
            <Self as AutodiffBackend>::from_inner(dw),
        )
    }
}
