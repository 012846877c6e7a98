//! What a model tells the sparsity planner and the counter: its maskable layers, in forward
//! order, with kernel shapes and spatial sizes, known from the configuration alone.

use crate::error::{ModelError, Result};
use burn::module::Module;
use rigl_core::{LayerShape, SparsityConfig, SparsityPlan, kernel_params};
use serde::{Deserialize, Serialize};

/// The kind of a maskable layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerKind {
    /// A 2-D convolution (`Conv2d`, one group).
    Conv,
    /// A depthwise 2-D convolution (`Conv2d` with one group per channel).
    Depthwise,
    /// A fully connected layer (`Linear`).
    Dense,
}

impl LayerKind {
    /// Short name (`conv`, `depthwise`, `dense`).
    pub fn name(&self) -> &'static str {
        match self {
            LayerKind::Conv => "conv",
            LayerKind::Depthwise => "depthwise",
            LayerKind::Dense => "dense",
        }
    }
}

impl core::fmt::Display for LayerKind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// One maskable layer of a model.
///
/// Shapes are in Burn's layout: a conv kernel is `[c_out, c_in / groups, k_h, k_w]` (a depthwise
/// kernel `[channels, 1, k_h, k_w]`), a dense kernel `[d_in, d_out]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerSpec {
    /// The kernel's parameter path in the Burn module, e.g. `layer1.0.conv1.weight`.
    pub path: String,
    /// Conv, depthwise conv or dense.
    pub kind: LayerKind,
    /// Kernel shape in Burn's layout.
    pub shape: Vec<usize>,
    /// Stride `[h, w]` (`[1, 1]` for dense layers).
    pub stride: [usize; 2],
    /// Spatial size `[h, w]` of the layer's input (`[1, 1]` for dense layers).
    pub input_size: [usize; 2],
    /// Spatial size `[h, w]` of the layer's output as the Burn module computes it.
    pub output_size: [usize; 2],
    /// Spatial size `[h, w]` of the input as the reference counts it: the input itself, or the
    /// zero-padded input where the reference network pads explicitly before a 'valid'
    /// convolution (ResNet-50's 7x7 stem, MobileNet's strided 3x3 convolutions). See
    /// [`SpatialRule`](crate::counter::SpatialRule).
    pub counted_input_size: [usize; 2],
}

/// Output size of a convolution or pooling along one dimension: `(in + 2p - k) / s + 1`.
///
/// # Errors
/// [`ModelError::InvalidConfig`] when the padded input is smaller than the kernel.
pub(crate) fn conv_output(
    model: &'static str,
    input: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
) -> Result<usize> {
    if stride == 0 || input + 2 * padding < kernel {
        return Err(ModelError::InvalidConfig {
            model,
            reason: format!(
                "a {kernel}x{kernel} window with stride {stride} and padding {padding} does not fit a {input}x{input} input; use a larger input size"
            ),
        });
    }
    Ok((input + 2 * padding - kernel) / stride + 1)
}

impl LayerSpec {
    /// A square `kernel` x `kernel` convolution from `c_in` to `c_out` channels in `groups`
    /// groups (`groups == c_in == c_out` makes it depthwise), on a square `input` x `input`
    /// map with symmetric `padding`.
    ///
    /// # Errors
    /// [`ModelError::InvalidConfig`] when the input is too small for the kernel.
    #[allow(clippy::too_many_arguments)]
    pub fn conv(
        model: &'static str,
        path: impl Into<String>,
        c_in: usize,
        c_out: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        groups: usize,
        input: usize,
    ) -> Result<Self> {
        let out = conv_output(model, input, kernel, stride, padding)?;
        let depthwise = groups > 1 && groups == c_in && groups == c_out;
        Ok(Self {
            path: path.into(),
            kind: if depthwise {
                LayerKind::Depthwise
            } else {
                LayerKind::Conv
            },
            shape: vec![c_out, c_in / groups.max(1), kernel, kernel],
            stride: [stride, stride],
            input_size: [input, input],
            output_size: [out, out],
            counted_input_size: [input, input],
        })
    }

    /// A dense layer from `d_in` to `d_out` features.
    pub fn dense(path: impl Into<String>, d_in: usize, d_out: usize) -> Self {
        Self {
            path: path.into(),
            kind: LayerKind::Dense,
            shape: vec![d_in, d_out],
            stride: [1, 1],
            input_size: [1, 1],
            output_size: [1, 1],
            counted_input_size: [1, 1],
        }
    }

    /// The same layer, counted by the reference on an input padded by `extra` rows and
    /// columns (explicit zero padding in the reference network).
    pub fn with_counted_padding(mut self, extra: usize) -> Self {
        self.counted_input_size = [self.input_size[0] + extra, self.input_size[1] + extra];
        self
    }

    /// The kernel shape with its fan-in and fan-out, as rigl-core's distributions see it.
    pub fn layer_shape(&self) -> LayerShape {
        let module = match self.kind {
            LayerKind::Dense => "Struct:Linear",
            LayerKind::Conv | LayerKind::Depthwise => "Struct:Conv2d",
        };
        LayerShape::burn(&self.shape, module)
    }

    /// Number of weights in the kernel.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Kernel size `[h, w]` (`[1, 1]` for dense layers).
    pub fn kernel_size(&self) -> [usize; 2] {
        match self.kind {
            LayerKind::Dense => [1, 1],
            _ => [self.shape[2], self.shape[3]],
        }
    }

    /// Output channels (output features for dense layers).
    pub fn out_channels(&self) -> usize {
        match self.kind {
            LayerKind::Dense => self.shape[1],
            _ => self.shape[0],
        }
    }

    /// Input channels seen by one output (input features for dense layers): `c_in / groups`.
    pub fn in_channels_per_group(&self) -> usize {
        match self.kind {
            LayerKind::Dense => self.shape[0],
            _ => self.shape[1],
        }
    }
}

/// A model (described by its configuration, so no weights are needed) whose maskable layers
/// are known in forward order.
///
/// The layer list is the source of truth for first- and last-layer rules and for counting:
/// Burn's traversal order (struct field order) need not be the forward order.
pub trait SparseArchitecture {
    /// Short model name, e.g. `resnet50`.
    fn arch_name(&self) -> String;

    /// Every maskable kernel (conv, depthwise conv, dense) in forward order.
    ///
    /// # Errors
    /// [`ModelError::InvalidConfig`] when the configuration describes no valid network.
    fn layer_specs(&self) -> Result<Vec<LayerSpec>>;

    /// The per-layer sparsities `config` gives this model, from shapes alone, with first- and
    /// last-layer rules applied in forward order.
    ///
    /// # Errors
    /// As [`layer_specs`](Self::layer_specs), and any [`SparsityPlan::build`] error.
    fn sparsity_plan(&self, config: &SparsityConfig) -> Result<SparsityPlan> {
        plan_for(&self.layer_specs()?, config)
    }

    /// The parameter paths of the depthwise kernels, which the reference's MobileNets never
    /// mask and never decay (its depthwise convolutions are plain `separable_conv2d` layers
    /// without a regulariser); `rigl train` leaves them dense and without weight decay unless
    /// told otherwise (`mask-depthwise = true`).
    ///
    /// # Errors
    /// As [`layer_specs`](Self::layer_specs).
    fn depthwise_kernels(&self) -> Result<Vec<String>> {
        Ok(self
            .layer_specs()?
            .into_iter()
            .filter(|l| l.kind == LayerKind::Depthwise)
            .map(|l| l.path)
            .collect())
    }
}

/// The plan for `layers` (in forward order) under `config`.
///
/// # Errors
/// Any [`SparsityPlan::build`] error.
pub(crate) fn plan_for(layers: &[LayerSpec], config: &SparsityConfig) -> Result<SparsityPlan> {
    let kernels: Vec<_> = layers
        .iter()
        .map(|l| (l.path.clone(), l.layer_shape()))
        .collect();
    Ok(SparsityPlan::build(&kernels, config)?)
}

/// Check that `module`'s kernels (float parameters of rank >= 2) are exactly the layers of
/// `layers`, path for path and shape for shape (in any order).
///
/// # Errors
/// [`ModelError::LayerMismatch`] naming the first difference.
pub(crate) fn check_layers<M: Module>(module: &M, layers: &[LayerSpec]) -> Result<()> {
    let kernels = kernel_params(module);
    for l in layers {
        match kernels.iter().find(|k| k.path == l.path) {
            None => {
                return Err(ModelError::LayerMismatch(format!(
                    "the model has no kernel `{}`",
                    l.path
                )));
            }
            Some(k) if k.shape.dims != l.shape => {
                return Err(ModelError::LayerMismatch(format!(
                    "kernel `{}` has shape {:?}, the layer list says {:?}",
                    l.path, k.shape.dims, l.shape
                )));
            }
            Some(_) => {}
        }
    }
    if let Some(k) = kernels
        .iter()
        .find(|k| !layers.iter().any(|l| l.path == k.path))
    {
        return Err(ModelError::LayerMismatch(format!(
            "the model's kernel `{}` is not in the layer list",
            k.path
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conv_and_dense_specs() {
        let c = LayerSpec::conv("m", "c.weight", 3, 64, 7, 2, 3, 1, 224).unwrap();
        assert_eq!(c.kind, LayerKind::Conv);
        assert_eq!(c.shape, [64, 3, 7, 7]);
        assert_eq!(c.output_size, [112, 112]);
        assert_eq!(c.with_counted_padding(6).counted_input_size, [230, 230]);
        let d = LayerSpec::conv("m", "d.weight", 32, 32, 3, 2, 1, 32, 112).unwrap();
        assert_eq!(d.kind, LayerKind::Depthwise);
        assert_eq!(d.shape, [32, 1, 3, 3]);
        assert_eq!(d.output_size, [56, 56]);
        assert_eq!((d.in_channels_per_group(), d.out_channels()), (1, 32));
        let f = LayerSpec::dense("fc.weight", 2048, 1000);
        assert_eq!(
            (f.numel(), f.out_channels(), f.in_channels_per_group()),
            (2_048_000, 1000, 2048)
        );
        assert_eq!(f.layer_shape().fan_in, 2048);
        assert!(matches!(
            LayerSpec::conv("m", "x", 3, 8, 7, 2, 0, 1, 5),
            Err(ModelError::InvalidConfig { .. })
        ));
    }
}
