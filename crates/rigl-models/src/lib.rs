//! # rigl-models
//!
//! Sparse-ready models of the RigL paper and the FLOP / model-size counter.
//!
//! - Models in burn-nn style (`XConfig::new().init(&device)`, `forward`): [`Mlp`] (MNIST
//!   784-300-100-10), [`WideResNet`] (WRN-22-2 for CIFAR-10 by default), [`ResNet`] (ResNet-50
//!   v1.5 with torchvision's parameter names), [`MobileNetV1`] (width multiplier) and
//!   [`MobileNetV2`] (torchvision's structure and names).
//! - [`SparseArchitecture`]: each configuration lists its maskable layers in forward order
//!   ([`LayerSpec`]: parameter path, kernel shape, kind, stride, spatial sizes), without
//!   building any weights; [`SparseArchitecture::sparsity_plan`] applies first/last-layer
//!   rules in that order.
//! - [`counter`]: inference FLOPs, training FLOPs per method and model size, with the
//!   conventions of the paper's tables, from a configuration, a plan or a sparsified model.
//! - [`pretrained`]: torchvision weights (safetensors) for ResNet-50 and MobileNet v2, then
//!   magnitude-initialised masks.
//!
//! ```
//! use rigl_core::SparsityConfig;
//! use rigl_models::counter::{CountOptions, count};
//! use rigl_models::ResNetConfig;
//!
//! let c = count(&ResNetConfig::resnet50(), &SparsityConfig::erk(0.9), &CountOptions::default())?;
//! assert_eq!(format!("{:.2}", c.totals.inference_flops_ratio), "0.24");
//! assert_eq!(format!("{:.3}", c.totals.size_mb), "13.499");
//! # Ok::<(), rigl_models::ModelError>(())
//! ```

pub mod counter;
mod error;
mod mlp;
mod mobilenet_v1;
mod mobilenet_v2;
pub mod pretrained;
mod registry;
mod resnet;
mod spec;
mod wide_resnet;

#[cfg(test)]
mod test_util;

pub use error::{ModelError, Result};
pub use mlp::{Mlp, MlpConfig};
pub use mobilenet_v1::{MobileNetV1, MobileNetV1Config, SeparableBlock};
pub use mobilenet_v2::{ConvBn, Features, InvertedResidual, MobileNetV2, MobileNetV2Config};
pub use pretrained::AsBurnLayers;
pub use registry::{Classifier, ModelBuilder, ModelConfig, ModelKind, ModelOptions, WithModel};
pub use resnet::{Bottleneck, ResNet, ResNetConfig};
pub use spec::{LayerKind, LayerSpec, SparseArchitecture};
pub use wide_resnet::{WideBlock, WideResNet, WideResNetConfig};
