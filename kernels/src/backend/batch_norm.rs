//! The backend extension of training-mode batch normalisation: the two-pass CPU kernels of
//! [`crate::cpu::batch_norm`] for the CPU backend (Flex) and Autodiff, whose backward runs them
//! (the same single-node graph as Burn's `batch_norm_train`).
//!
//! Call it through [`crate::batch_norm_train()`].

use crate::cpu::batch_norm::{self as kernel, BatchNormShape};
use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, AutodiffBackend, Backend, Flex, Shape, TensorMetadata};
use burn::tensor::TensorData;

/// Batch normalisation with the batch's statistics.
#[burn::backend::backend_extension(Flex, Autodiff)]
pub trait BatchNormBackend: burn::backend::Backend {
    /// The output like `x` (`[batch, channels, ...]`), and the mean and biased variance of
    /// each channel (`[channels]`).
    fn fused_batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

    /// The gradients with respect to `x`, `gamma` and `beta` from the output gradient `dy`.
    fn fused_batch_norm_train_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        variance: FloatTensor<Self>,
        epsilon: f64,
        dy: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

fn layout(shape: &Shape) -> BatchNormShape {
    let channels = shape[1];
    BatchNormShape {
        batch: shape[0],
        channels,
        positions: shape.num_elements() / (shape[0] * channels).max(1),
    }
}

fn tensor(values: Vec<f32>, shape: Shape, like: &FloatTensor<Flex>) -> FloatTensor<Flex> {
    Flex::float_from_data(TensorData::new(values, shape), &like.device())
}

impl BatchNormBackend for Flex {
    fn fused_batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let (shape, like) = (x.shape(), x.clone());
        let l = layout(&shape);
        let (y, mean, var) = super::flex::with_f32(x, |x| {
            super::flex::with_f32(gamma, |g| {
                super::flex::with_f32(beta, |b| kernel::batch_norm_train(x, g, b, epsilon, l))
            })
        });
        let c = Shape::new([l.channels]);
        (
            tensor(y, shape, &like),
            tensor(mean, c.clone(), &like),
            tensor(var, c, &like),
        )
    }

    fn fused_batch_norm_train_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        variance: FloatTensor<Self>,
        epsilon: f64,
        dy: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let (shape, like) = (x.shape(), x.clone());
        let l = layout(&shape);
        let host = |t: FloatTensor<Self>| super::flex::with_f32(t, |v| v.to_vec());
        let (gamma, mean, variance) = (host(gamma), host(mean), host(variance));
        let (dx, dg, db) = super::flex::with_f32(x, |x| {
            super::flex::with_f32(dy, |dy| {
                kernel::batch_norm_train_backward(x, &gamma, &mean, &variance, epsilon, dy, l)
            })
        });
        let c = Shape::new([l.channels]);
        (
            tensor(dx, shape, &like),
            tensor(dg, c.clone(), &like),
            tensor(db, c, &like),
        )
    }
}

#[derive(Debug)]
struct BatchNormTrainBackward;

impl<B: Backend + BatchNormBackend> Backward<B, 3> for BatchNormTrainBackward {
    type State = (NodeId, NodeId, FloatTensor<B>, FloatTensor<B>, f64);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let dy = grads.consume::<B>(&ops.node);
        let (x, gamma, mean, variance, epsilon) = ops.state;
        let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(x);
        let gamma = checkpointer.retrieve_node_output::<FloatTensor<B>>(gamma);
        let (dx, dg, db) =
            B::fused_batch_norm_train_backward(x, gamma, mean, variance, epsilon, dy);
        for (node, grad) in [(node_x, dx), (node_gamma, dg), (node_beta, db)] {
            if let Some(node) = node {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

impl<B: Backend + BatchNormBackend, C: CheckpointStrategy> BatchNormBackend for Autodiff<B, C> {
    fn fused_batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let stats = |mean, var| {
            (
                <Self as AutodiffBackend>::from_inner(mean),
                <Self as AutodiffBackend>::from_inner(var),
            )
        };
        match BatchNormTrainBackward
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let gamma_state = prep.checkpoint(&gamma);
                let (y, mean, var) = B::fused_batch_norm_train(
                    x.into_primitive(),
                    gamma.into_primitive(),
                    beta.into_primitive(),
                    epsilon,
                );
                let y = prep.finish(
                    (x_state, gamma_state, mean.clone(), var.clone(), epsilon),
                    y,
                );
                let (mean, var) = stats(mean, var);
                (y, mean, var)
            }
            OpsKind::UnTracked(prep) => {
                let (y, mean, var) = B::fused_batch_norm_train(
                    x.into_primitive(),
                    gamma.into_primitive(),
                    beta.into_primitive(),
                    epsilon,
                );
                let (mean, var) = stats(mean, var);
                (prep.finish(y), mean, var)
            }
        }
    }

    fn fused_batch_norm_train_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        variance: FloatTensor<Self>,
        epsilon: f64,
        dy: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let (dx, dg, db) = B::fused_batch_norm_train_backward(
            x.into_primitive(),
            gamma.into_primitive(),
            mean.into_primitive(),
            variance.into_primitive(),
            epsilon,
            dy.into_primitive(),
        );
        (
            <Self as AutodiffBackend>::from_inner(dx),
            <Self as AutodiffBackend>::from_inner(dg),
            <Self as AutodiffBackend>::from_inner(db),
        )
    }
}
