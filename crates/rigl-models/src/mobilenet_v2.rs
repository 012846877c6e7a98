//! MobileNet v2 (Sandler et al.) with torchvision's structure and parameter names
//! (`features.{i}...`, `classifier.1`), so that torchvision weights load as they are.

use crate::error::{ModelError, Result};
use crate::mobilenet_v1::make_divisible;
use crate::spec::{LayerSpec, SparseArchitecture};
use burn::config::Config;
use burn::module::{
    Content, Devices, Module, ModuleDisplay, ModuleDisplayDefault, ModuleMapper, ModuleVisitor,
};
use burn::nn::PaddingConfig2d;
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig};
use burn::tensor::activation::relu6;
use burn::tensor::{Device, Tensor};
use rigl_core::nn::{
    FusedBatchNorm, FusedBatchNormConfig, FusedDropout, FusedDropoutConfig, SparseConv2d,
    SparseConv2dConfig, SparseExecution, SparseLinear, SparseLinearConfig,
};

const MODEL: &str = "mobilenet_v2";

/// `(expansion t, output channels c, repeats n, first stride s)` of the seven stages.
const STAGES: [(usize, usize, usize, usize); 7] = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
];

/// A convolution and its batch norm, recorded as `.0` and `.1` like torchvision's
/// `Conv2dNormActivation`.
pub type ConvBn = (SparseConv2d, FusedBatchNorm);

/// Configuration of a [`MobileNetV2`].
///
/// ```
/// use rigl_models::{MobileNetV2Config, SparseArchitecture};
/// let layers = MobileNetV2Config::new().layer_specs()?;
/// assert_eq!(layers.len(), 53); // 52 convolutions and the classifier
/// assert_eq!(layers[1].path, "features.1.conv.0.0.weight");
/// # Ok::<(), rigl_models::ModelError>(())
/// ```
#[derive(Config, Debug, PartialEq)]
pub struct MobileNetV2Config {
    /// Width multiplier applied to every channel count (rounded to multiples of 8); the last
    /// convolution keeps at least 1280 channels.
    #[config(default = 1.0)]
    pub width_multiplier: f64,
    /// Dropout probability before the classifier.
    #[config(default = 0.2)]
    pub dropout: f64,
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

/// One block as the configuration describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct BlockShape {
    c_in: usize,
    hidden: usize,
    c_out: usize,
    stride: usize,
    expand: bool,
}

/// An inverted residual block: optional 1x1 expansion (BN, ReLU6), 3x3 depthwise (BN, ReLU6),
/// linear 1x1 projection (BN), and an identity shortcut when the shape is kept.
///
/// Recorded with torchvision's names: `conv.0` (expansion), `conv.1` (depthwise), `conv.2`
/// (projection), `conv.3` (its batch norm); without expansion `conv.0` is the depthwise
/// convolution and the projection moves to `conv.1` / `conv.2`.
#[derive(Debug, Clone)]
pub struct InvertedResidual {
    /// 1x1 expansion to `t * c_in` channels (absent when `t = 1`).
    pub expand: Option<ConvBn>,
    /// 3x3 depthwise convolution, carrying the stride.
    pub depthwise: ConvBn,
    /// 1x1 linear projection.
    pub project: SparseConv2d,
    /// Batch norm after the projection.
    pub project_bn: FusedBatchNorm,
    /// Whether the input is added to the output (stride 1 and same width).
    pub use_residual: bool,
}

const IR_TYPE: &str = "Struct:InvertedResidual";

fn visit_child<V: ModuleVisitor, M: Module>(v: &mut V, ty: &str, name: &str, m: &M) {
    v.enter_module(name, ty);
    m.visit(v);
    v.exit_module(name, ty);
}

fn map_child<Mp: ModuleMapper, M: Module>(mapper: &mut Mp, ty: &str, name: &str, m: M) -> M {
    mapper.enter_module(name, ty);
    let m = m.map(mapper);
    mapper.exit_module(name, ty);
    m
}

impl InvertedResidual {
    /// The names of the depthwise, projection and projection-BN children under `conv`.
    fn names(&self) -> [&'static str; 3] {
        if self.expand.is_some() {
            ["1", "2", "3"]
        } else {
            ["0", "1", "2"]
        }
    }

    /// # Shapes
    /// - input: `[batch, c_in, h, w]`
    /// - output: `[batch, c_out, h / stride, w / stride]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut y = x.clone();
        if let Some((conv, bn)) = &self.expand {
            y = relu6(bn.forward(conv.forward(y)));
        }
        let (conv, bn) = &self.depthwise;
        let y = relu6(bn.forward(conv.forward(y)));
        let y = self.project_bn.forward(self.project.forward(y));
        if self.use_residual { x + y } else { y }
    }
}

impl Module for InvertedResidual {
    fn visit<V: ModuleVisitor>(&self, v: &mut V) {
        let [dw, proj, bn] = self.names();
        v.enter_module("conv", IR_TYPE);
        if let Some(e) = &self.expand {
            visit_child(v, IR_TYPE, "0", e);
        }
        visit_child(v, IR_TYPE, dw, &self.depthwise);
        visit_child(v, IR_TYPE, proj, &self.project);
        visit_child(v, IR_TYPE, bn, &self.project_bn);
        v.exit_module("conv", IR_TYPE);
    }

    fn map<Mp: ModuleMapper>(self, m: &mut Mp) -> Self {
        let [dw, proj, bn] = self.names();
        m.enter_module("conv", IR_TYPE);
        let expand = self.expand.map(|e| map_child(m, IR_TYPE, "0", e));
        let depthwise = map_child(m, IR_TYPE, dw, self.depthwise);
        let project = map_child(m, IR_TYPE, proj, self.project);
        let project_bn = map_child(m, IR_TYPE, bn, self.project_bn);
        m.exit_module("conv", IR_TYPE);
        Self {
            expand,
            depthwise,
            project,
            project_bn,
            use_residual: self.use_residual,
        }
    }

    fn collect_devices(&self, devices: Devices) -> Devices {
        let devices = self.expand.collect_devices(devices);
        let devices = self.depthwise.collect_devices(devices);
        let devices = self.project.collect_devices(devices);
        self.project_bn.collect_devices(devices)
    }

    fn fork(self, device: &Device) -> Self {
        Self {
            expand: self.expand.fork(device),
            depthwise: self.depthwise.fork(device),
            project: self.project.fork(device),
            project_bn: self.project_bn.fork(device),
            use_residual: self.use_residual,
        }
    }

    fn to_device(self, device: &Device) -> Self {
        Self {
            expand: self.expand.to_device(device),
            depthwise: self.depthwise.to_device(device),
            project: self.project.to_device(device),
            project_bn: self.project_bn.to_device(device),
            use_residual: self.use_residual,
        }
    }

    fn train(self) -> Self {
        Self {
            expand: self.expand.train(),
            depthwise: self.depthwise.train(),
            project: self.project.train(),
            project_bn: self.project_bn.train(),
            use_residual: self.use_residual,
        }
    }

    fn valid(&self) -> Self {
        Self {
            expand: self.expand.valid(),
            depthwise: self.depthwise.valid(),
            project: self.project.valid(),
            project_bn: self.project_bn.valid(),
            use_residual: self.use_residual,
        }
    }

    fn materialize(self) -> Self {
        Self {
            expand: self.expand.materialize(),
            depthwise: self.depthwise.materialize(),
            project: self.project.materialize(),
            project_bn: self.project_bn.materialize(),
            use_residual: self.use_residual,
        }
    }
}

impl ModuleDisplayDefault for InvertedResidual {
    fn content(&self, content: Content) -> Option<Content> {
        content
            .add("expand", &self.expand)
            .add("depthwise", &self.depthwise)
            .add("project", &self.project)
            .add("project_bn", &self.project_bn)
            .add("use_residual", &self.use_residual)
            .optional()
    }
}

impl ModuleDisplay for InvertedResidual {}

/// torchvision's `features`: the stem (`features.0`), the inverted residual blocks
/// (`features.1` to `features.{n}`) and the last 1x1 convolution (`features.{n+1}`).
#[derive(Debug, Clone)]
pub struct Features {
    /// 3x3 stride-2 stem convolution and batch norm.
    pub stem: ConvBn,
    /// The inverted residual blocks.
    pub blocks: Vec<InvertedResidual>,
    /// Last 1x1 convolution and batch norm.
    pub head: ConvBn,
}

const FEATURES_TYPE: &str = "Struct:Features";

impl Module for Features {
    fn visit<V: ModuleVisitor>(&self, v: &mut V) {
        visit_child(v, FEATURES_TYPE, "0", &self.stem);
        for (i, b) in self.blocks.iter().enumerate() {
            visit_child(v, FEATURES_TYPE, &(i + 1).to_string(), b);
        }
        let last = (self.blocks.len() + 1).to_string();
        visit_child(v, FEATURES_TYPE, &last, &self.head);
    }

    fn map<Mp: ModuleMapper>(self, m: &mut Mp) -> Self {
        let stem = map_child(m, FEATURES_TYPE, "0", self.stem);
        let n = self.blocks.len();
        let blocks = self
            .blocks
            .into_iter()
            .enumerate()
            .map(|(i, b)| map_child(m, FEATURES_TYPE, &(i + 1).to_string(), b))
            .collect();
        let head = map_child(m, FEATURES_TYPE, &(n + 1).to_string(), self.head);
        Self { stem, blocks, head }
    }

    fn collect_devices(&self, devices: Devices) -> Devices {
        let devices = self.stem.collect_devices(devices);
        let devices = self.blocks.collect_devices(devices);
        self.head.collect_devices(devices)
    }

    fn fork(self, device: &Device) -> Self {
        Self {
            stem: self.stem.fork(device),
            blocks: self.blocks.fork(device),
            head: self.head.fork(device),
        }
    }

    fn to_device(self, device: &Device) -> Self {
        Self {
            stem: self.stem.to_device(device),
            blocks: self.blocks.to_device(device),
            head: self.head.to_device(device),
        }
    }

    fn train(self) -> Self {
        Self {
            stem: self.stem.train(),
            blocks: self.blocks.train(),
            head: self.head.train(),
        }
    }

    fn valid(&self) -> Self {
        Self {
            stem: self.stem.valid(),
            blocks: self.blocks.valid(),
            head: self.head.valid(),
        }
    }

    fn materialize(self) -> Self {
        Self {
            stem: self.stem.materialize(),
            blocks: self.blocks.materialize(),
            head: self.head.materialize(),
        }
    }
}

impl ModuleDisplayDefault for Features {
    fn content(&self, content: Content) -> Option<Content> {
        content
            .add("stem", &self.stem)
            .add("blocks", &self.blocks)
            .add("head", &self.head)
            .optional()
    }
}

impl ModuleDisplay for Features {}

/// MobileNet v2 with torchvision's parameter names: `features.0.0` (stem conv),
/// `features.{i}.conv.{j}` (blocks), `features.18.0` (last conv), `classifier.1` (linear).
#[derive(Module, Debug)]
pub struct MobileNetV2 {
    /// Stem, inverted residual blocks and last convolution.
    pub features: Features,
    /// Global average pooling.
    pub avgpool: AdaptiveAvgPool2d,
    /// Dropout and the linear classifier (`classifier.0`, `classifier.1`).
    pub classifier: (FusedDropout, SparseLinear),
}

fn conv_bn(
    c_in: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    groups: usize,
    d: &Device,
) -> ConvBn {
    (
        conv(c_in, c_out, k, stride, groups, d),
        FusedBatchNormConfig::new(c_out).init(d),
    )
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

impl MobileNetV2 {
    /// The network with another execution policy on every sparse-aware layer (depthwise
    /// convolutions always compute masked dense).
    pub fn with_execution(mut self, execution: SparseExecution) -> Self {
        let f = &mut self.features;
        f.stem.0 = f.stem.0.clone().with_execution(execution);
        f.head.0 = f.head.0.clone().with_execution(execution);
        for block in &mut f.blocks {
            block.expand = block
                .expand
                .take()
                .map(|(c, bn)| (c.with_execution(execution), bn));
            block.depthwise.0 = block.depthwise.0.clone().with_execution(execution);
            block.project = block.project.clone().with_execution(execution);
        }
        self.classifier.1 = self.classifier.1.with_execution(execution);
        self
    }
}

impl MobileNetV2Config {
    fn check(&self) -> Result<()> {
        let bad = |reason: String| {
            Err(ModelError::InvalidConfig {
                model: MODEL,
                reason,
            })
        };
        if !(self.width_multiplier.is_finite() && self.width_multiplier > 0.0) {
            return bad(format!(
                "width multiplier {} is not a positive number",
                self.width_multiplier
            ));
        }
        if self.num_classes == 0 || self.in_channels == 0 {
            return bad("num_classes and in_channels must be positive".into());
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!("dropout {} is not in [0, 1)", self.dropout));
        }
        Ok(())
    }

    /// Check the configuration.
    ///
    /// # Errors
    /// [`ModelError::InvalidConfig`] for a width multiplier that is not a positive number,
    /// zero classes or channels, a dropout outside `[0, 1)`, or an input too small.
    pub fn validate(&self) -> Result<()> {
        self.layer_specs().map(|_| ())
    }

    /// `(stem channels, blocks, last channels)` after the width multiplier, torchvision's
    /// rounding.
    fn shapes(&self) -> (usize, Vec<BlockShape>, usize) {
        let w = self.width_multiplier;
        let stem = make_divisible(32.0 * w, 8);
        let last = make_divisible(1280.0 * w.max(1.0), 8);
        let mut c_in = stem;
        let mut blocks = Vec::new();
        for (t, c, n, s) in STAGES {
            let c_out = make_divisible(c as f64 * w, 8);
            for i in 0..n {
                blocks.push(BlockShape {
                    c_in,
                    hidden: ((c_in * t) as f64).round() as usize,
                    c_out,
                    stride: if i == 0 { s } else { 1 },
                    expand: t != 1,
                });
                c_in = c_out;
            }
        }
        (stem, blocks, last)
    }

    /// Build the network.
    ///
    /// # Panics
    /// If the configuration is invalid (see [`validate`](Self::validate)).
    pub fn init(&self, device: &Device) -> MobileNetV2 {
        self.init_layers(device).with_execution(self.execution)
    }

    fn init_layers(&self, device: &Device) -> MobileNetV2 {
        if let Err(e) = self.check() {
            panic!("{e}");
        }
        let (stem, shapes, last) = self.shapes();
        let blocks = shapes
            .iter()
            .map(|b| InvertedResidual {
                expand: b.expand.then(|| conv_bn(b.c_in, b.hidden, 1, 1, 1, device)),
                depthwise: conv_bn(b.hidden, b.hidden, 3, b.stride, b.hidden, device),
                project: conv(b.hidden, b.c_out, 1, 1, 1, device),
                project_bn: FusedBatchNormConfig::new(b.c_out).init(device),
                use_residual: b.stride == 1 && b.c_in == b.c_out,
            })
            .collect::<Vec<_>>();
        let c_last_in = shapes.last().map_or(stem, |b| b.c_out);
        MobileNetV2 {
            features: Features {
                stem: conv_bn(self.in_channels, stem, 3, 2, 1, device),
                blocks,
                head: conv_bn(c_last_in, last, 1, 1, 1, device),
            },
            avgpool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            classifier: (
                FusedDropoutConfig::new(self.dropout).init(),
                SparseLinearConfig::new(last, self.num_classes).init(device),
            ),
        }
    }
}

impl SparseArchitecture for MobileNetV2Config {
    fn arch_name(&self) -> String {
        if self.width_multiplier == 1.0 {
            "mobilenet_v2".into()
        } else {
            format!("mobilenet_v2-{}", self.width_multiplier)
        }
    }

    /// Stem, then per block expansion, depthwise and projection, then the last 1x1
    /// convolution and the classifier. Strided 3x3 convolutions are counted on their input
    /// padded by one row and column, as the reference's counting network pads them.
    fn layer_specs(&self) -> Result<Vec<LayerSpec>> {
        self.check()?;
        let (stem, shapes, last) = self.shapes();
        let first = LayerSpec::conv(
            MODEL,
            "features.0.0.weight",
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
        for (i, b) in shapes.iter().enumerate() {
            let p = |j: &str| format!("features.{}.conv.{j}.weight", i + 1);
            let (dw_name, proj_name) = if b.expand {
                out.push(LayerSpec::conv(
                    MODEL,
                    p("0.0"),
                    b.c_in,
                    b.hidden,
                    1,
                    1,
                    0,
                    1,
                    size,
                )?);
                ("1.0", "2")
            } else {
                ("0.0", "1")
            };
            let dw = LayerSpec::conv(
                MODEL,
                p(dw_name),
                b.hidden,
                b.hidden,
                3,
                b.stride,
                1,
                b.hidden,
                size,
            )?;
            size = dw.output_size[0];
            out.push(if b.stride > 1 {
                dw.with_counted_padding(1)
            } else {
                dw
            });
            out.push(LayerSpec::conv(
                MODEL,
                p(proj_name),
                b.hidden,
                b.c_out,
                1,
                1,
                0,
                1,
                size,
            )?);
        }
        let c_last_in = shapes.last().map_or(stem, |b| b.c_out);
        out.push(LayerSpec::conv(
            MODEL,
            format!("features.{}.0.weight", shapes.len() + 1),
            c_last_in,
            last,
            1,
            1,
            0,
            1,
            size,
        )?);
        out.push(LayerSpec::dense(
            "classifier.1.weight",
            last,
            self.num_classes,
        ));
        Ok(out)
    }
}

impl MobileNetV2 {
    /// Logits for a batch of images.
    ///
    /// # Shapes
    /// - input: `[batch, in_channels, height, width]`
    /// - output: `[batch, num_classes]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let (conv, bn) = &self.features.stem;
        let mut x = relu6(bn.forward(conv.forward(x)));
        for block in &self.features.blocks {
            x = block.forward(x);
        }
        let (conv, bn) = &self.features.head;
        let x = relu6(bn.forward(conv.forward(x)));
        let x = self.avgpool.forward(x).flatten::<2>(1, 3);
        let (dropout, linear) = &self.classifier;
        linear.forward(dropout.forward(x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{LayerKind, check_layers};
    use crate::test_util::sparse_forward_backward;
    use rigl_core::{Sparsify, SparsityConfig};

    fn small() -> MobileNetV2Config {
        MobileNetV2Config::new()
            .with_width_multiplier(0.25)
            .with_num_classes(10)
            .with_input_size(32)
    }

    #[test]
    fn layer_list_follows_torchvision() {
        let layers = MobileNetV2Config::new().layer_specs().unwrap();
        assert_eq!(layers.len(), 53);
        // torchvision's MobileNet v2 has 3,504,872 parameters: 34,112 in batch norms and
        // 1,000 in the classifier's bias.
        let n: usize = layers.iter().map(LayerSpec::numel).sum();
        assert_eq!(n, 3_504_872 - 34_112 - 1_000);
        let find = |p: &str| layers.iter().find(|l| l.path == p).unwrap();
        assert_eq!(
            find("features.1.conv.0.0.weight").kind,
            LayerKind::Depthwise
        );
        assert_eq!(find("features.1.conv.1.weight").shape, [16, 32, 1, 1]);
        // The 17 blocks' depthwise kernels, which the reference never masks.
        let dw = MobileNetV2Config::new().depthwise_kernels().unwrap();
        assert_eq!(dw.len(), 17);
        assert!(dw.iter().all(|p| find(p).kind == LayerKind::Depthwise));
        assert_eq!(dw[0], "features.1.conv.0.0.weight");
        assert_eq!(find("features.2.conv.0.0.weight").shape, [96, 16, 1, 1]);
        let dw = find("features.2.conv.1.0.weight");
        assert_eq!(
            (dw.shape.as_slice(), dw.stride),
            (&[96, 1, 3, 3][..], [2, 2])
        );
        assert_eq!(
            (dw.counted_input_size, dw.output_size),
            ([113, 113], [56, 56])
        );
        assert_eq!(find("features.2.conv.2.weight").shape, [24, 96, 1, 1]);
        assert_eq!(find("features.18.0.weight").shape, [1280, 320, 1, 1]);
        assert_eq!(find("features.18.0.weight").input_size, [7, 7]);
        assert_eq!(layers.last().unwrap().path, "classifier.1.weight");
    }

    #[test]
    fn module_paths_are_torchvision_names() {
        let device = Device::default();
        let config = small();
        let model = config.init(&device);
        check_layers(&model, &config.layer_specs().unwrap()).unwrap();
        // Masks attach through the same names (the mapper sees the visitor's paths).
        let sparse = model.sparsify(SparsityConfig::uniform(0.5)).unwrap();
        assert!(sparse.mask("features.2.conv.1.0.weight").is_ok());
        assert!(sparse.mask("features.1.conv.1.weight").is_ok());
        assert_eq!(sparse.sparse_layers().len(), 53);
        // Display works through the hand-written modules.
        assert!(format!("{sparse}").contains("InvertedResidual"));
    }

    #[test]
    fn forward_shapes() {
        let device = Device::default();
        let model = small().init(&device);
        let x = Tensor::<4>::zeros([2, 3, 32, 32], &device);
        assert_eq!(model.forward(x).dims(), [2, 10]);
        assert!(matches!(
            MobileNetV2Config::new().with_dropout(1.5).validate(),
            Err(ModelError::InvalidConfig { .. })
        ));
    }

    #[test]
    fn sparse_forward_and_backward_at_90_percent_erk() {
        let config = small();
        sparse_forward_backward(
            &config,
            |d| config.init(d),
            [2, 3, 32, 32],
            |m, x| m.forward(x),
        );
    }
}
