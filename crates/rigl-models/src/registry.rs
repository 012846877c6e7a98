//! One registry of the models, shared by every front end (`rigl count`, `train`, `eval`): a
//! model's name ([`ModelKind`]), its knobs under one naming ([`ModelOptions`]), the validated
//! configuration they describe ([`ModelConfig`]) and a way to build the network with its
//! concrete type ([`ModelConfig::build`] with a [`WithModel`]).
//!
//! Adding a model = its file (config + module + [`SparseArchitecture`]) and one arm in each
//! `match` below.
//!
//! ```
//! use rigl_models::{ModelKind, ModelOptions};
//! use rigl_models::SparseArchitecture;
//!
//! let kind: ModelKind = "wide-resnet".parse().expect("a known name");
//! let options = ModelOptions { depth: Some(16), width: Some(4.0), ..ModelOptions::default() };
//! let config = kind.config(&options)?;
//! assert_eq!(config.architecture().arch_name(), "wrn-16-4");
//! assert!(ModelKind::Wrn.config(&ModelOptions { depth: Some(20), ..options }).is_err());
//! # Ok::<(), rigl_models::ModelError>(())
//! ```

use crate::error::{ModelError, Result};
use crate::{
    Mlp, MlpConfig, MobileNetV1, MobileNetV1Config, MobileNetV2, MobileNetV2Config, ResNet,
    ResNetConfig, SparseArchitecture, WideResNet, WideResNetConfig,
};
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The models of the RigL paper.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ModelKind {
    /// MNIST multilayer perceptron, 784-300-100-10.
    Mlp,
    /// Wide ResNet (WRN-22-2 for CIFAR-10 by default).
    Wrn,
    /// ResNet-50 v1.5 for ImageNet.
    Resnet50,
    /// MobileNet v1 for ImageNet.
    MobilenetV1,
    /// MobileNet v2 for ImageNet.
    MobilenetV2,
}

impl ModelKind {
    /// Every model, in the order the documentation lists them.
    pub const ALL: [ModelKind; 5] = [
        ModelKind::Mlp,
        ModelKind::Wrn,
        ModelKind::Resnet50,
        ModelKind::MobilenetV1,
        ModelKind::MobilenetV2,
    ];

    /// The name the front ends use (`mlp`, `wrn`, `resnet50`, `mobilenet-v1`, `mobilenet-v2`).
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Mlp => "mlp",
            ModelKind::Wrn => "wrn",
            ModelKind::Resnet50 => "resnet50",
            ModelKind::MobilenetV1 => "mobilenet-v1",
            ModelKind::MobilenetV2 => "mobilenet-v2",
        }
    }

    /// Other spellings a name may take.
    fn aliases(self) -> &'static [&'static str] {
        match self {
            ModelKind::Mlp => &[],
            ModelKind::Wrn => &["wide-resnet", "wide_resnet"],
            ModelKind::Resnet50 => &["resnet-50", "resnet_50"],
            ModelKind::MobilenetV1 => &["mobilenet_v1", "mobilenetv1"],
            ModelKind::MobilenetV2 => &["mobilenet_v2", "mobilenetv2"],
        }
    }

    /// The configuration `options` describe, validated (a WRN depth that is not `6n + 4`, a
    /// dropout outside `[0, 1)`, a width that is not positive, an input too small for the
    /// network are errors here, not panics when the network is built).
    ///
    /// Unset options keep the configuration's defaults; `width` is the widen factor `k` of
    /// `wrn` (a positive integer) and the width multiplier of the MobileNets; `depth` applies
    /// to `wrn` only, `dropout` to `wrn` only.
    ///
    /// # Errors
    /// [`ModelError::InvalidConfig`] for an option the model does not take or a value it cannot
    /// use.
    pub fn config(self, options: &ModelOptions) -> Result<ModelConfig> {
        let model = self.name();
        let not_for = |option: &str| {
            Err(ModelError::InvalidConfig {
                model,
                reason: format!("`{option}` does not apply to {model}"),
            })
        };
        if let Some(e) = &options.execution
            && let Err(e) = e.validate()
        {
            return Err(ModelError::InvalidConfig {
                model,
                reason: e.to_string(),
            });
        }
        if options.depth.is_some() && self != ModelKind::Wrn {
            return not_for("depth");
        }
        if options.dropout.is_some() && self != ModelKind::Wrn {
            return not_for("dropout");
        }
        if options.width.is_some() && matches!(self, ModelKind::Mlp | ModelKind::Resnet50) {
            return not_for("width");
        }
        // Bounds far beyond any real model, so that sizes computed from them cannot overflow.
        let out_of = |what: &str, value: String, range: &str| {
            Err(ModelError::InvalidConfig {
                model,
                reason: format!("{what} {value} is outside {range}"),
            })
        };
        for (what, value, max) in [
            ("num-classes", options.num_classes, 1 << 20),
            ("input-size", options.input_size, 4096),
            ("in-channels", options.in_channels, 64),
            ("depth", options.depth, 1000),
        ] {
            if let Some(v) = value
                && !(1..=max).contains(&v)
            {
                return out_of(what, v.to_string(), &format!("1..={max}"));
            }
        }
        // (Widths <= 0 get each model's own message.)
        if let Some(w) = options.width
            && !(w.is_finite() && w <= 64.0)
        {
            return out_of("width", w.to_string(), "the finite values <= 64");
        }
        let o = options;
        let config = match self {
            ModelKind::Mlp => {
                let size = o.input_size.unwrap_or(28);
                let channels = o.in_channels.unwrap_or(1);
                let mut c = MlpConfig::new().with_d_input(channels * size * size);
                if let Some(e) = o.execution {
                    c = c.with_execution(e);
                }
                if let Some(n) = o.num_classes {
                    c = c.with_num_classes(n);
                }
                c.validate()?;
                ModelConfig::Mlp(c)
            }
            ModelKind::Wrn => {
                let mut c = WideResNetConfig::new();
                if let Some(e) = o.execution {
                    c = c.with_execution(e);
                }
                if let Some(w) = o.width {
                    if !(w.fract() == 0.0 && w >= 1.0) {
                        return Err(ModelError::InvalidConfig {
                            model,
                            reason: format!(
                                "width {w}: the widen factor of wrn is a positive integer"
                            ),
                        });
                    }
                    c = c.with_widen_factor(w as usize);
                }
                if let Some(d) = o.depth {
                    c = c.with_depth(d);
                }
                if let Some(p) = o.dropout {
                    c = c.with_dropout(p);
                }
                if let Some(n) = o.num_classes {
                    c = c.with_num_classes(n);
                }
                if let Some(s) = o.input_size {
                    c = c.with_input_size(s);
                }
                if let Some(ch) = o.in_channels {
                    c = c.with_in_channels(ch);
                }
                ModelConfig::Wrn(c)
            }
            ModelKind::Resnet50 => {
                let mut c = ResNetConfig::resnet50();
                if let Some(e) = o.execution {
                    c = c.with_execution(e);
                }
                if let Some(n) = o.num_classes {
                    c = c.with_num_classes(n);
                }
                if let Some(s) = o.input_size {
                    c = c.with_input_size(s);
                }
                if let Some(ch) = o.in_channels {
                    c = c.with_in_channels(ch);
                }
                c.validate()?;
                ModelConfig::Resnet50(c)
            }
            ModelKind::MobilenetV1 => {
                let mut c = MobileNetV1Config::new();
                if let Some(e) = o.execution {
                    c = c.with_execution(e);
                }
                if let Some(w) = o.width {
                    c = c.with_width_multiplier(w);
                }
                if let Some(n) = o.num_classes {
                    c = c.with_num_classes(n);
                }
                if let Some(s) = o.input_size {
                    c = c.with_input_size(s);
                }
                if let Some(ch) = o.in_channels {
                    c = c.with_in_channels(ch);
                }
                ModelConfig::MobilenetV1(c)
            }
            ModelKind::MobilenetV2 => {
                let mut c = MobileNetV2Config::new();
                if let Some(e) = o.execution {
                    c = c.with_execution(e);
                }
                if let Some(w) = o.width {
                    c = c.with_width_multiplier(w);
                }
                if let Some(n) = o.num_classes {
                    c = c.with_num_classes(n);
                }
                if let Some(s) = o.input_size {
                    c = c.with_input_size(s);
                }
                if let Some(ch) = o.in_channels {
                    c = c.with_in_channels(ch);
                }
                ModelConfig::MobilenetV2(c)
            }
        };
        // Describing the layers checks everything the configuration can get wrong.
        config.architecture().layer_specs()?;
        Ok(config)
    }
}

impl core::fmt::Display for ModelKind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

impl core::str::FromStr for ModelKind {
    type Err = String;

    fn from_str(s: &str) -> core::result::Result<Self, Self::Err> {
        let s = s.trim().to_ascii_lowercase();
        ModelKind::ALL
            .into_iter()
            .find(|k| k.name() == s || k.aliases().contains(&s.as_str()))
            .ok_or_else(|| {
                let names: Vec<_> = ModelKind::ALL.iter().map(|k| k.name()).collect();
                format!("unknown model `{s}`: expected {}", names.join(", "))
            })
    }
}

impl Serialize for ModelKind {
    fn serialize<S: Serializer>(&self, s: S) -> core::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for ModelKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> core::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A model's knobs, named once for every front end. `None` keeps the model's default.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModelOptions {
    /// Number of classes (default: 10 for mlp and wrn, 1000 for the ImageNet models).
    pub num_classes: Option<usize>,
    /// Input resolution, square (default: 28 for mlp, 32 for wrn, 224 for the ImageNet
    /// models).
    pub input_size: Option<usize>,
    /// Input channels (default: 1 for mlp, 3 otherwise).
    pub in_channels: Option<usize>,
    /// The widen factor `k` of wrn (an integer) or the width multiplier of the MobileNets.
    pub width: Option<f64>,
    /// Depth of wrn, `6n + 4`.
    pub depth: Option<usize>,
    /// Dropout of wrn's blocks, in `[0, 1)`.
    pub dropout: Option<f64>,
    /// When sparse-aware layers run their sparse kernels (every model; depthwise
    /// convolutions always compute masked dense).
    pub execution: Option<rigl_core::nn::SparseExecution>,
}

/// A validated model configuration (see [`ModelKind::config`]).
#[derive(Clone, Debug, PartialEq)]
pub enum ModelConfig {
    /// See [`MlpConfig`].
    Mlp(MlpConfig),
    /// See [`WideResNetConfig`].
    Wrn(WideResNetConfig),
    /// See [`ResNetConfig`].
    Resnet50(ResNetConfig),
    /// See [`MobileNetV1Config`].
    MobilenetV1(MobileNetV1Config),
    /// See [`MobileNetV2Config`].
    MobilenetV2(MobileNetV2Config),
}

impl ModelConfig {
    /// The layers the configuration describes, for the planner and the counter.
    pub fn architecture(&self) -> &dyn SparseArchitecture {
        match self {
            ModelConfig::Mlp(c) => c,
            ModelConfig::Wrn(c) => c,
            ModelConfig::Resnet50(c) => c,
            ModelConfig::MobilenetV1(c) => c,
            ModelConfig::MobilenetV2(c) => c,
        }
    }

    /// Run `f` with the configuration's concrete type, which can build the network
    /// ([`ModelBuilder::init_model`]).
    pub fn build<F: WithModel>(&self, f: F) -> F::Output {
        match self {
            ModelConfig::Mlp(c) => f.with(c),
            ModelConfig::Wrn(c) => f.with(c),
            ModelConfig::Resnet50(c) => f.with(c),
            ModelConfig::MobilenetV1(c) => f.with(c),
            ModelConfig::MobilenetV2(c) => f.with(c),
        }
    }
}

/// A classifier of image batches.
pub trait Classifier: Module + 'static {
    /// Logits of a batch of images.
    ///
    /// # Shapes
    /// - input `[batch, channels, height, width]`
    /// - output `[batch, classes]`
    fn logits(&self, x: Tensor<4>) -> Tensor<2>;
}

impl Classifier for Mlp {
    fn logits(&self, x: Tensor<4>) -> Tensor<2> {
        self.forward_images(x)
    }
}

impl Classifier for WideResNet {
    fn logits(&self, x: Tensor<4>) -> Tensor<2> {
        self.forward(x)
    }
}

impl Classifier for ResNet {
    fn logits(&self, x: Tensor<4>) -> Tensor<2> {
        self.forward(x)
    }
}

impl Classifier for MobileNetV1 {
    fn logits(&self, x: Tensor<4>) -> Tensor<2> {
        self.forward(x)
    }
}

impl Classifier for MobileNetV2 {
    fn logits(&self, x: Tensor<4>) -> Tensor<2> {
        self.forward(x)
    }
}

/// A configuration that builds its classifier.
pub trait ModelBuilder: SparseArchitecture + Clone + 'static {
    /// The network the configuration builds.
    type Model: Classifier;

    /// Build the network (weights initialised by the device's generator).
    fn init_model(&self, device: &Device) -> Self::Model;
}

macro_rules! builder {
    ($($config:ty => $model:ty),*) => {$(
        impl ModelBuilder for $config {
            type Model = $model;

            fn init_model(&self, device: &Device) -> $model {
                self.init(device)
            }
        }
    )*};
}
builder!(
    MlpConfig => Mlp,
    WideResNetConfig => WideResNet,
    ResNetConfig => ResNet,
    MobileNetV1Config => MobileNetV1,
    MobileNetV2Config => MobileNetV2
);

/// What to do with a model configuration of a concrete type (see [`ModelConfig::build`]).
pub trait WithModel {
    /// The result.
    type Output;

    /// Run with the configuration `config`.
    fn with<C: ModelBuilder>(self, config: &C) -> Self::Output;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_aliases_parse_and_round_trip() {
        for kind in ModelKind::ALL {
            assert_eq!(kind.name().parse::<ModelKind>(), Ok(kind));
            for alias in kind.aliases() {
                assert_eq!(alias.parse::<ModelKind>(), Ok(kind));
            }
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.name()));
            assert_eq!(serde_json::from_str::<ModelKind>(&json).unwrap(), kind);
        }
        let err = "vgg".parse::<ModelKind>().unwrap_err();
        assert!(err.contains("unknown model `vgg`") && err.contains("mobilenet-v2"));
    }

    #[test]
    fn options_reach_the_configuration() {
        let o = ModelOptions {
            width: Some(4.0),
            depth: Some(16),
            dropout: Some(0.0),
            num_classes: Some(100),
            ..ModelOptions::default()
        };
        let ModelConfig::Wrn(c) = ModelKind::Wrn.config(&o).unwrap() else {
            panic!("not a wrn")
        };
        assert_eq!(
            (c.widen_factor, c.depth, c.dropout, c.num_classes),
            (4, 16, 0.0, 100)
        );
        let mlp = ModelKind::Mlp
            .config(&ModelOptions {
                input_size: Some(32),
                in_channels: Some(3),
                ..ModelOptions::default()
            })
            .unwrap();
        assert_eq!(
            mlp.architecture().layer_specs().unwrap()[0].shape,
            [3072, 300]
        );
    }

    #[test]
    fn bad_options_are_typed_errors() {
        let err = |kind: ModelKind, o: ModelOptions| kind.config(&o).unwrap_err().to_string();
        let width = |w| ModelOptions {
            width: Some(w),
            ..ModelOptions::default()
        };
        assert!(err(ModelKind::Mlp, width(2.0)).contains("`width` does not apply to mlp"));
        assert!(err(ModelKind::Resnet50, width(2.0)).contains("does not apply"));
        assert!(err(ModelKind::Wrn, width(1.5)).contains("positive integer"));
        assert!(err(ModelKind::MobilenetV1, width(0.0)).contains("width multiplier"));
        assert!(err(ModelKind::MobilenetV2, width(-1.0)).contains("width multiplier"));
        let depth = ModelOptions {
            depth: Some(20),
            ..ModelOptions::default()
        };
        assert!(err(ModelKind::Wrn, depth.clone()).contains("6n + 4"));
        assert!(err(ModelKind::Resnet50, depth).contains("`depth` does not apply"));
        let dropout = ModelOptions {
            dropout: Some(1.0),
            ..ModelOptions::default()
        };
        assert!(err(ModelKind::Wrn, dropout.clone()).contains("dropout 1 is not in [0, 1)"));
        assert!(err(ModelKind::Mlp, dropout).contains("`dropout` does not apply"));
        let tiny = ModelOptions {
            input_size: Some(0),
            ..ModelOptions::default()
        };
        assert!(err(ModelKind::Resnet50, tiny.clone()).contains("input"));
        let zero_classes = ModelOptions {
            num_classes: Some(0),
            ..ModelOptions::default()
        };
        for kind in ModelKind::ALL {
            assert!(
                kind.config(&zero_classes).is_err(),
                "{kind} accepted zero classes"
            );
        }
    }

    #[test]
    fn build_gives_the_concrete_network() {
        struct Count;
        impl WithModel for Count {
            type Output = usize;
            fn with<C: ModelBuilder>(self, config: &C) -> usize {
                config.init_model(&Device::flex()).num_params()
            }
        }
        let c = ModelKind::Mlp.config(&ModelOptions::default()).unwrap();
        assert_eq!(
            c.build(Count),
            784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10
        );
    }

    fn size() -> impl proptest::strategy::Strategy<Value = Option<usize>> {
        use proptest::prelude::*;
        prop::option::of(prop_oneof![
            0usize..40,
            Just(usize::MAX),
            Just(1 << 33),
            any::<usize>()
        ])
    }

    fn real() -> impl proptest::strategy::Strategy<Value = Option<f64>> {
        use proptest::prelude::*;
        prop::option::of(prop_oneof![
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(-1.0),
            Just(0.0),
            Just(1.0),
            Just(1e300),
            -2.0f64..4.0
        ])
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config {
            cases: 512,
            failure_persistence: None,
            ..Default::default()
        })]

        /// Every model's knobs (zero, huge, NaN, negative): a configuration or a typed
        /// error, never a panic.
        #[test]
        fn any_model_options_give_a_config_or_an_error(
            kind in 0usize..5,
            num_classes in size(),
            input_size in size(),
            in_channels in size(),
            width in real(),
            depth in size(),
            dropout in real(),
            threshold in real(),
        ) {
            let options = ModelOptions {
                num_classes,
                input_size,
                in_channels,
                width,
                depth,
                dropout,
                execution: threshold.map(|t| {
                    rigl_core::nn::SparseExecution::default().with_linear_max_density(t)
                }),
            };
            let _ = ModelKind::ALL[kind].config(&options);
        }
    }
}
