//! Wide residual networks (Zagoruyko & Komodakis): WRN-d-k with pre-activation basic blocks,
//! WRN-22-2 for CIFAR-10 by default.

use crate::error::{ModelError, Result};
use crate::spec::{LayerSpec, SparseArchitecture};
use burn::config::Config;
use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use rigl_core::nn::{
    FusedBatchNorm, FusedBatchNormConfig, FusedDropout, FusedDropoutConfig, SparseConv2d,
    SparseConv2dConfig, SparseExecution, SparseLinear, SparseLinearConfig,
};

const MODEL: &str = "wide_resnet";

/// Configuration of a [`WideResNet`]: depth `d = 6n + 4` (n blocks per group), widen factor
/// `k`. Group widths are `16k`, `32k` and `64k`; groups 2 and 3 halve the resolution.
///
/// ```
/// use rigl_models::{SparseArchitecture, WideResNetConfig};
/// let wrn = WideResNetConfig::new(); // WRN-22-2 for CIFAR-10
/// assert_eq!(wrn.layer_specs()?.len(), 1 + 3 * 3 * 2 + 3 + 1);
/// # Ok::<(), rigl_models::ModelError>(())
/// ```
#[derive(Config, Debug, PartialEq)]
pub struct WideResNetConfig {
    /// Depth `6n + 4`.
    #[config(default = 22)]
    pub depth: usize,
    /// Widen factor `k`.
    #[config(default = 2)]
    pub widen_factor: usize,
    /// Dropout probability between the two convolutions of a block.
    #[config(default = 0.3)]
    pub dropout: f64,
    /// Number of classes.
    #[config(default = 10)]
    pub num_classes: usize,
    /// Input channels.
    #[config(default = 3)]
    pub in_channels: usize,
    /// Input resolution (square), used to describe spatial sizes for counting.
    #[config(default = 32)]
    pub input_size: usize,
    /// When the sparse-aware layers run their sparse kernels (see [`SparseConv2d`],
    /// [`SparseLinear`]).
    #[config(default = "SparseExecution::default()")]
    pub execution: SparseExecution,
}

/// A pre-activation basic block: BN-ReLU-conv3x3-BN-ReLU-dropout-conv3x3, with a 1x1
/// convolution on the shortcut where the width (or resolution) changes.
#[derive(Module, Debug)]
pub struct WideBlock {
    /// Batch norm on the block input.
    pub bn1: FusedBatchNorm,
    /// First 3x3 convolution (carries the stride).
    pub conv1: SparseConv2d,
    /// Batch norm after `conv1`.
    pub bn2: FusedBatchNorm,
    /// Dropout between the convolutions.
    pub dropout: FusedDropout,
    /// Second 3x3 convolution.
    pub conv2: SparseConv2d,
    /// 1x1 projection of the pre-activated input, where the shape changes.
    pub shortcut: Option<SparseConv2d>,
}

impl WideBlock {
    /// # Shapes
    /// - input: `[batch, c_in, h, w]`
    /// - output: `[batch, c_out, h / stride, w / stride]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let o = relu(self.bn1.forward(x.clone()));
        let y = self.conv1.forward(o.clone());
        let y = self.dropout.forward(relu(self.bn2.forward(y)));
        let y = self.conv2.forward(y);
        let shortcut = match &self.shortcut {
            Some(conv) => conv.forward(o),
            None => x,
        };
        y + shortcut
    }
}

/// A wide residual network: a 3x3 stem, three groups of [`WideBlock`]s, BN-ReLU, global
/// average pooling and a linear classifier. Parameter paths: `conv1`, `block1.0.conv1`, ...,
/// `block3.{n-1}.conv2`, `block{g}.0.shortcut`, `bn`, `fc`.
#[derive(Module, Debug)]
pub struct WideResNet {
    /// 3x3 stem convolution to 16 channels.
    pub conv1: SparseConv2d,
    /// Group 1 (width `16k`, stride 1).
    pub block1: Vec<WideBlock>,
    /// Group 2 (width `32k`, stride 2).
    pub block2: Vec<WideBlock>,
    /// Group 3 (width `64k`, stride 2).
    pub block3: Vec<WideBlock>,
    /// Final batch norm.
    pub bn: FusedBatchNorm,
    /// Global average pooling.
    pub avgpool: AdaptiveAvgPool2d,
    /// Classifier.
    pub fc: SparseLinear,
}

fn conv(c_in: usize, c_out: usize, k: usize, stride: usize, device: &Device) -> SparseConv2d {
    let p = k / 2;
    SparseConv2dConfig::new([c_in, c_out], [k, k])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
        .with_bias(false)
        .init(device)
}

impl WideResNet {
    /// The network with another execution policy on every sparse-aware layer.
    pub fn with_execution(mut self, execution: SparseExecution) -> Self {
        self.conv1 = self.conv1.with_execution(execution);
        for block in self
            .block1
            .iter_mut()
            .chain(&mut self.block2)
            .chain(&mut self.block3)
        {
            block.conv1 = block.conv1.clone().with_execution(execution);
            block.conv2 = block.conv2.clone().with_execution(execution);
            block.shortcut = block.shortcut.take().map(|c| c.with_execution(execution));
        }
        self.fc = self.fc.with_execution(execution);
        self
    }
}

impl WideResNetConfig {
    /// Blocks per group, `(depth - 4) / 6`.
    ///
    /// # Errors
    /// [`ModelError::InvalidConfig`] unless `depth = 6n + 4` with `n >= 1`, the widths and
    /// counts are positive, and the dropout is a probability.
    pub fn blocks_per_group(&self) -> Result<usize> {
        let bad = |reason: String| ModelError::InvalidConfig {
            model: MODEL,
            reason,
        };
        if self.depth < 10 || !(self.depth - 4).is_multiple_of(6) {
            return Err(bad(format!(
                "depth {} is not 6n + 4 with n >= 1 (e.g. 10, 16, 22, 28)",
                self.depth
            )));
        }
        if self.widen_factor == 0 || self.num_classes == 0 || self.in_channels == 0 {
            return Err(bad(
                "widen_factor, num_classes and in_channels must be positive".into(),
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(bad(format!("dropout {} is not in [0, 1)", self.dropout)));
        }
        Ok((self.depth - 4) / 6)
    }

    fn widths(&self) -> [usize; 4] {
        let k = self.widen_factor;
        [16, 16 * k, 32 * k, 64 * k]
    }

    /// Build the network.
    ///
    /// # Panics
    /// If the configuration is invalid (see [`blocks_per_group`](Self::blocks_per_group)).
    pub fn init(&self, device: &Device) -> WideResNet {
        self.init_layers(device).with_execution(self.execution)
    }

    fn init_layers(&self, device: &Device) -> WideResNet {
        let n = match self.blocks_per_group() {
            Ok(n) => n,
            Err(e) => panic!("{e}"),
        };
        let w = self.widths();
        let group = |g: usize| {
            (0..n)
                .map(|b| {
                    let c_in = if b == 0 { w[g] } else { w[g + 1] };
                    let c_out = w[g + 1];
                    let stride = if b == 0 && g > 0 { 2 } else { 1 };
                    WideBlock {
                        bn1: FusedBatchNormConfig::new(c_in).init(device),
                        conv1: conv(c_in, c_out, 3, stride, device),
                        bn2: FusedBatchNormConfig::new(c_out).init(device),
                        dropout: FusedDropoutConfig::new(self.dropout).init(),
                        conv2: conv(c_out, c_out, 3, 1, device),
                        shortcut: (c_in != c_out || stride != 1)
                            .then(|| conv(c_in, c_out, 1, stride, device)),
                    }
                })
                .collect()
        };
        WideResNet {
            conv1: conv(self.in_channels, w[0], 3, 1, device),
            block1: group(0),
            block2: group(1),
            block3: group(2),
            bn: FusedBatchNormConfig::new(w[3]).init(device),
            avgpool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            fc: SparseLinearConfig::new(w[3], self.num_classes).init(device),
        }
    }
}

impl SparseArchitecture for WideResNetConfig {
    fn arch_name(&self) -> String {
        format!("wrn-{}-{}", self.depth, self.widen_factor)
    }

    /// Stem, then per block `conv1`, `conv2`, `shortcut`, then `fc`.
    fn layer_specs(&self) -> Result<Vec<LayerSpec>> {
        let n = self.blocks_per_group()?;
        let w = self.widths();
        let stem = LayerSpec::conv(
            MODEL,
            "conv1.weight",
            self.in_channels,
            w[0],
            3,
            1,
            1,
            1,
            self.input_size,
        )?;
        let mut size = stem.output_size[0];
        let mut out = vec![stem];
        for g in 0..3 {
            for b in 0..n {
                let c_in = if b == 0 { w[g] } else { w[g + 1] };
                let c_out = w[g + 1];
                let stride = if b == 0 && g > 0 { 2 } else { 1 };
                let p = |name: &str| format!("block{}.{b}.{name}.weight", g + 1);
                let conv1 = LayerSpec::conv(MODEL, p("conv1"), c_in, c_out, 3, stride, 1, 1, size)?;
                let next = conv1.output_size[0];
                out.push(conv1);
                out.push(LayerSpec::conv(
                    MODEL,
                    p("conv2"),
                    c_out,
                    c_out,
                    3,
                    1,
                    1,
                    1,
                    next,
                )?);
                if c_in != c_out || stride != 1 {
                    out.push(LayerSpec::conv(
                        MODEL,
                        p("shortcut"),
                        c_in,
                        c_out,
                        1,
                        stride,
                        0,
                        1,
                        size,
                    )?);
                }
                size = next;
            }
        }
        out.push(LayerSpec::dense("fc.weight", w[3], self.num_classes));
        Ok(out)
    }
}

impl WideResNet {
    /// Logits for a batch of images.
    ///
    /// # Shapes
    /// - input: `[batch, in_channels, height, width]`
    /// - output: `[batch, num_classes]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let mut x = self.conv1.forward(x);
        for block in self.block1.iter().chain(&self.block2).chain(&self.block3) {
            x = block.forward(x);
        }
        let x = relu(self.bn.forward(x));
        let x = self.avgpool.forward(x).flatten::<2>(1, 3);
        self.fc.forward(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::check_layers;
    use crate::test_util::sparse_forward_backward;

    #[test]
    fn wrn_22_2_layer_list() {
        let layers = WideResNetConfig::new().layer_specs().unwrap();
        // Stem, 9 blocks of two convs, 3 shortcuts (16->32, 32->64, 64->128), classifier.
        assert_eq!(layers.len(), 1 + 18 + 3 + 1);
        let n: usize = layers.iter().map(LayerSpec::numel).sum();
        // Per group: the first block (two convs and a shortcut), then two blocks of two convs.
        let expected = 3 * 16 * 9
            + (16 * 32 * 9 + 32 * 32 * 9 + 16 * 32)
            + 4 * 32 * 32 * 9
            + (32 * 64 * 9 + 64 * 64 * 9 + 32 * 64)
            + 4 * 64 * 64 * 9
            + (64 * 128 * 9 + 128 * 128 * 9 + 64 * 128)
            + 4 * 128 * 128 * 9
            + 128 * 10;
        assert_eq!(n, expected);
        assert_eq!(n, 1_076_912);
        let find = |p: &str| layers.iter().find(|l| l.path == p).unwrap();
        assert_eq!(find("block1.0.shortcut.weight").shape, [32, 16, 1, 1]);
        assert_eq!(find("block3.0.conv1.weight").output_size, [8, 8]);
        assert_eq!(find("block3.2.conv2.weight").input_size, [8, 8]);
        assert_eq!(WideResNetConfig::new().arch_name(), "wrn-22-2");
    }

    #[test]
    fn depth_and_widths_are_configurable_and_checked() {
        let device = Device::default();
        let config = WideResNetConfig::new()
            .with_depth(10)
            .with_widen_factor(1)
            .with_num_classes(5)
            .with_input_size(16);
        let model = config.init(&device);
        check_layers(&model, &config.layer_specs().unwrap()).unwrap();
        let x = Tensor::<4>::zeros([2, 3, 16, 16], &device);
        assert_eq!(model.forward(x).dims(), [2, 5]);
        for bad in [
            WideResNetConfig::new().with_depth(20),
            WideResNetConfig::new().with_depth(4),
            WideResNetConfig::new().with_widen_factor(0),
            WideResNetConfig::new().with_dropout(1.0),
        ] {
            assert!(matches!(
                bad.layer_specs(),
                Err(ModelError::InvalidConfig { .. })
            ));
        }
    }

    #[test]
    fn forward_shapes_wrn_22_2() {
        let device = Device::default();
        let model = WideResNetConfig::new().init(&device);
        let x = Tensor::<4>::zeros([1, 3, 32, 32], &device);
        assert_eq!(model.forward(x).dims(), [1, 10]);
    }

    #[test]
    fn sparse_forward_and_backward_at_90_percent_erk() {
        let config = WideResNetConfig::new()
            .with_depth(10)
            .with_widen_factor(2)
            .with_input_size(16);
        sparse_forward_backward(
            &config,
            |d| config.init(d),
            [2, 3, 16, 16],
            |m, x| m.forward(x),
        );
    }
}
