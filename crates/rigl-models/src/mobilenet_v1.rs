//! MobileNet v1 (Howard et al.) with a width multiplier, as the reference trains it: a 3x3
//! stride-2 stem, 13 depthwise-separable blocks, global average pooling and a linear
//! classifier.

use crate::error::{ModelError, Result};
use crate::spec::{LayerSpec, SparseArchitecture};
use burn::config::Config;
use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use rigl_core::nn::{
    FusedBatchNorm, FusedBatchNormConfig, SparseConv2d, SparseConv2dConfig, SparseExecution,
    SparseLinear, SparseLinearConfig,
};

const MODEL: &str = "mobilenet_v1";

/// Output channels and stride of the 13 depthwise-separable blocks.
const BLOCKS: [(usize, usize); 13] = [
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
];

/// Round `v` to a multiple of `divisor` (at least `divisor`), never below 90% of `v`: the
/// channel rounding of the MobileNet reference implementations.
pub(crate) fn make_divisible(v: f64, divisor: usize) -> usize {
    let d = divisor as f64;
    let mut new_v = (((v + d / 2.0) as usize) / divisor * divisor).max(divisor);
    if (new_v as f64) < 0.9 * v {
        new_v += divisor;
    }
    new_v
}

/// Configuration of a [`MobileNetV1`].
///
/// ```
/// use rigl_models::{MobileNetV1Config, SparseArchitecture};
/// let layers = MobileNetV1Config::new().layer_specs()?;
/// assert_eq!(layers.len(), 1 + 13 * 2 + 1);
/// # Ok::<(), rigl_models::ModelError>(())
/// ```
#[derive(Config, Debug, PartialEq)]
pub struct MobileNetV1Config {
    /// Width multiplier applied to every channel count (rounded to multiples of 8).
    #[config(default = 1.0)]
    pub width_multiplier: f64,
    /// Number of classes.
    #[config(default = 1000)]
    pub num_classes: usize,
    /// Input channels.
    #[config(default = 3)]
    pub in_channels: usize,
    /// Input resolution (square), used to describe spatial sizes for counting.
    #[config(default = 224)]
    pub input_size: usize,
    /// When the sparse-aware layers run their sparse kernels (see [`SparseConv2d`],
    /// [`SparseLinear`]).
    #[config(default = "SparseExecution::default()")]
    pub execution: SparseExecution,
}

/// A depthwise-separable block: 3x3 depthwise conv, BN, ReLU, 1x1 pointwise conv, BN, ReLU.
#[derive(Module, Debug)]
pub struct SeparableBlock {
    /// 3x3 depthwise convolution (one group per channel), carrying the stride.
    pub depthwise: SparseConv2d,
    /// Batch norm after the depthwise convolution.
    pub bn1: FusedBatchNorm,
    /// 1x1 pointwise convolution.
    pub pointwise: SparseConv2d,
    /// Batch norm after the pointwise convolution.
    pub bn2: FusedBatchNorm,
}

impl SeparableBlock {
    /// # Shapes
    /// - input: `[batch, c_in, h, w]`
    /// - output: `[batch, c_out, h / stride, w / stride]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = relu(self.bn1.forward(self.depthwise.forward(x)));
        relu(self.bn2.forward(self.pointwise.forward(x)))
    }
}

/// MobileNet v1. Parameter paths: `conv1`, `bn1`, `blocks.{i}.depthwise`,
/// `blocks.{i}.pointwise`, `blocks.{i}.bn1` / `bn2`, `classifier`.
#[derive(Module, Debug)]
pub struct MobileNetV1 {
    /// 3x3 stride-2 stem convolution.
    pub conv1: SparseConv2d,
    /// Batch norm after the stem.
    pub bn1: FusedBatchNorm,
    /// The 13 depthwise-separable blocks.
    pub blocks: Vec<SeparableBlock>,
    /// Global average pooling.
    pub avgpool: AdaptiveAvgPool2d,
    /// Classifier.
    pub classifier: SparseLinear,
}

fn conv(
    c_in: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    groups: usize,
    d: &Device,
) -> SparseConv2d {
    let p = k / 2;
    SparseConv2dConfig::new([c_in, c_out], [k, k])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
        .with_groups(groups)
        .with_bias(false)
        .init(d)
}

impl MobileNetV1 {
    /// The network with another execution policy on every sparse-aware layer (depthwise
    /// convolutions always compute masked dense).
    pub fn with_execution(mut self, execution: SparseExecution) -> Self {
        self.conv1 = self.conv1.with_execution(execution);
        for block in &mut self.blocks {
            block.depthwise = block.depthwise.clone().with_execution(execution);
            block.pointwise = block.pointwise.clone().with_execution(execution);
        }
        self.classifier = self.classifier.with_execution(execution);
        self
    }
}

impl MobileNetV1Config {
    /// Check the configuration.
    ///
    /// # Errors
    /// [`ModelError::InvalidConfig`] for a width multiplier that is not a positive number,
    /// zero classes or channels, or an input too small for the network.
    pub fn validate(&self) -> Result<()> {
        self.layer_specs().map(|_| ())
    }

    fn check(&self) -> Result<()> {
        if !(self.width_multiplier.is_finite() && self.width_multiplier > 0.0) {
            return Err(ModelError::InvalidConfig {
                model: MODEL,
                reason: format!(
                    "width multiplier {} is not a positive number",
                    self.width_multiplier
                ),
            });
        }
        if self.num_classes == 0 || self.in_channels == 0 {
            return Err(ModelError::InvalidConfig {
                model: MODEL,
                reason: "num_classes and in_channels must be positive".into(),
            });
        }
        Ok(())
    }

    /// Channels of the stem and of each block's output, after the width multiplier.
    pub fn channels(&self) -> (usize, Vec<usize>) {
        let w = self.width_multiplier;
        let stem = make_divisible(32.0 * w, 8);
        let blocks = BLOCKS
            .iter()
            .enumerate()
            .map(|(i, (c, _))| {
                // The reference rounds the first block's output to a multiple of 1 only.
                let v = (w * *c as f64) as usize as f64;
                make_divisible(v, if i == 0 { 1 } else { 8 })
            })
            .collect();
        (stem, blocks)
    }

    /// Build the network.
    ///
    /// # Panics
    /// If the width multiplier is not a positive number.
    pub fn init(&self, device: &Device) -> MobileNetV1 {
        self.init_layers(device).with_execution(self.execution)
    }

    fn init_layers(&self, device: &Device) -> MobileNetV1 {
        if let Err(e) = self.check() {
            panic!("{e}");
        }
        let (stem, outs) = self.channels();
        let mut c_in = stem;
        let blocks = BLOCKS
            .iter()
            .zip(&outs)
            .map(|((_, stride), &c_out)| {
                let block = SeparableBlock {
                    depthwise: conv(c_in, c_in, 3, *stride, c_in, device),
                    bn1: FusedBatchNormConfig::new(c_in).init(device),
                    pointwise: conv(c_in, c_out, 1, 1, 1, device),
                    bn2: FusedBatchNormConfig::new(c_out).init(device),
                };
                c_in = c_out;
                block
            })
            .collect();
        MobileNetV1 {
            conv1: conv(self.in_channels, stem, 3, 2, 1, device),
            bn1: FusedBatchNormConfig::new(stem).init(device),
            blocks,
            avgpool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            classifier: SparseLinearConfig::new(c_in, self.num_classes).init(device),
        }
    }
}

impl SparseArchitecture for MobileNetV1Config {
    fn arch_name(&self) -> String {
        if self.width_multiplier == 1.0 {
            "mobilenet_v1".into()
        } else {
            format!("mobilenet_v1-{}", self.width_multiplier)
        }
    }

    /// Stem, then per block `depthwise`, `pointwise`, then `classifier`. The reference counts
    /// strided 3x3 convolutions on their input padded by one row and column (it zero-pads
    /// explicitly before a 'valid' convolution).
    fn layer_specs(&self) -> Result<Vec<LayerSpec>> {
        self.check()?;
        let (stem, outs) = self.channels();
        let first = LayerSpec::conv(
            MODEL,
            "conv1.weight",
            self.in_channels,
            stem,
            3,
            2,
            1,
            1,
            self.input_size,
        )?;
        let mut size = first.output_size[0];
        let mut out = vec![first.with_counted_padding(1)];
        let mut c_in = stem;
        for (i, ((_, stride), &c_out)) in BLOCKS.iter().zip(&outs).enumerate() {
            let dw = LayerSpec::conv(
                MODEL,
                format!("blocks.{i}.depthwise.weight"),
                c_in,
                c_in,
                3,
                *stride,
                1,
                c_in,
                size,
            )?;
            size = dw.output_size[0];
            out.push(if *stride > 1 {
                dw.with_counted_padding(1)
            } else {
                dw
            });
            out.push(LayerSpec::conv(
                MODEL,
                format!("blocks.{i}.pointwise.weight"),
                c_in,
                c_out,
                1,
                1,
                0,
                1,
                size,
            )?);
            c_in = c_out;
        }
        out.push(LayerSpec::dense(
            "classifier.weight",
            c_in,
            self.num_classes,
        ));
        Ok(out)
    }
}

impl MobileNetV1 {
    /// Logits for a batch of images.
    ///
    /// # Shapes
    /// - input: `[batch, in_channels, height, width]`
    /// - output: `[batch, num_classes]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let mut x = relu(self.bn1.forward(self.conv1.forward(x)));
        for block in &self.blocks {
            x = block.forward(x);
        }
        let x = self.avgpool.forward(x).flatten::<2>(1, 3);
        self.classifier.forward(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{LayerKind, check_layers};
    use crate::test_util::sparse_forward_backward;

    #[test]
    fn channel_rounding() {
        assert_eq!(make_divisible(32.0, 8), 32);
        assert_eq!(make_divisible(8.0, 8), 8);
        assert_eq!(make_divisible(3.0, 8), 8);
        assert_eq!(make_divisible(12.0, 8), 16);
        assert_eq!(make_divisible(20.0, 8), 24);
        let (stem, outs) = MobileNetV1Config::new()
            .with_width_multiplier(0.25)
            .channels();
        assert_eq!(stem, 8);
        assert_eq!(outs[0], 16);
        assert_eq!(*outs.last().unwrap(), 256);
    }

    #[test]
    fn layer_list() {
        let layers = MobileNetV1Config::new().layer_specs().unwrap();
        assert_eq!(layers.len(), 28);
        assert_eq!(layers[0].counted_input_size, [225, 225]);
        assert_eq!(layers[1].kind, LayerKind::Depthwise);
        let dw = MobileNetV1Config::new().depthwise_kernels().unwrap();
        assert_eq!(dw.len(), 13);
        assert_eq!(dw[0], "blocks.0.depthwise.weight");
        assert_eq!(layers[1].shape, [32, 1, 3, 3]);
        assert_eq!(layers[3].path, "blocks.1.depthwise.weight");
        assert_eq!(layers[3].counted_input_size, [113, 113]);
        assert_eq!(layers[3].output_size, [56, 56]);
        assert_eq!(layers[26].output_size, [7, 7]);
        // 4.2M weights in the kernels of MobileNet v1 1.0.
        let n: usize = layers.iter().map(LayerSpec::numel).sum();
        assert_eq!(n, 4_209_088);
        assert!(matches!(
            MobileNetV1Config::new()
                .with_width_multiplier(-1.0)
                .layer_specs(),
            Err(ModelError::InvalidConfig { .. })
        ));
    }

    #[test]
    fn forward_shapes_and_layer_list_match() {
        let device = Device::default();
        let config = MobileNetV1Config::new()
            .with_width_multiplier(0.25)
            .with_num_classes(10)
            .with_input_size(32);
        let model = config.init(&device);
        check_layers(&model, &config.layer_specs().unwrap()).unwrap();
        let x = Tensor::<4>::zeros([2, 3, 32, 32], &device);
        assert_eq!(model.forward(x).dims(), [2, 10]);
    }

    #[test]
    fn sparse_forward_and_backward_at_90_percent_erk() {
        let config = MobileNetV1Config::new()
            .with_width_multiplier(0.5)
            .with_num_classes(10)
            .with_input_size(32);
        sparse_forward_backward(
            &config,
            |d| config.init(d),
            [2, 3, 32, 32],
            |m, x| m.forward(x),
        );
    }
}
