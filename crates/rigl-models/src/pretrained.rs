//! Pretrained weights in torchvision's format, from a local safetensors file.
//!
//! [`ResNet`](crate::ResNet) and [`MobileNetV2`](crate::MobileNetV2) use torchvision's parameter
//! names, so a torchvision `state_dict` saved as safetensors loads as it is:
//!
//! ```text
//! # Python, once (nothing is downloaded at run time by this crate)
//! import torchvision, safetensors.torch
//! m = torchvision.models.resnet50(weights="IMAGENET1K_V1")
//! safetensors.torch.save_file(m.state_dict(), "resnet50.safetensors")
//! ```
//!
//! Batch-norm `weight`/`bias` become Burn's `gamma`/`beta` and linear weights are transposed
//! (burn-store's PyTorch adapter, which [`AsBurnLayers`] shows the sparse-aware layers as
//! Burn's `Linear` and `Conv2d`); `num_batches_tracked` counters are ignored. Every other
//! tensor must match a parameter and every parameter must get a tensor of the right shape, or
//! loading fails with a typed error naming the parameters at fault.

use crate::error::{ModelError, Result};
use burn::module::Module;
use burn_pack::Tensor as PackTensor;
use burn_store::{
    ApplyError, ModuleAdapter, ModuleContext, ModuleSnapshot, PyTorchToBurnAdapter,
    SafetensorsStore,
};
use rigl_core::{MaskInit, Sparsify, SparsityConfig};
use std::path::Path;

/// A burn-store adapter that shows `A` this project's drop-in layers ([`SparseLinear`],
/// [`SparseConv2d`], [`FusedBatchNorm`]) as the Burn layers they replace, so that `A`'s rules
/// for `Linear` (PyTorch adapters transpose its weight), `Conv2d` and `BatchNorm` (renamed to
/// `weight` and `bias`) apply to them.
///
/// ```
/// use burn_store::{BurnToPyTorchAdapter, SafetensorsStore};
/// use rigl_models::AsBurnLayers;
/// let store = SafetensorsStore::from_file("model.safetensors")
///     .with_to_adapter(AsBurnLayers(BurnToPyTorchAdapter));
/// ```
///
/// [`SparseLinear`]: rigl_core::nn::SparseLinear
/// [`SparseConv2d`]: rigl_core::nn::SparseConv2d
/// [`FusedBatchNorm`]: rigl_core::nn::FusedBatchNorm
#[derive(Clone, Debug, Default)]
pub struct AsBurnLayers<A>(pub A);

impl<A: ModuleAdapter + Clone + 'static> ModuleAdapter for AsBurnLayers<A> {
    fn adapt(&self, tensor: PackTensor, ctx: ModuleContext<'_>) -> PackTensor {
        let shown = match ctx.module_type() {
            Some("Struct:SparseLinear") => "Struct:Linear",
            Some("Struct:SparseConv2d") => "Struct:Conv2d",
            Some("Struct:FusedBatchNorm") => "Struct:BatchNorm",
            _ => return self.0.adapt(tensor, ctx),
        };
        let stack = [shown.to_string()];
        self.0.adapt(tensor, ModuleContext::new(&stack))
    }

    fn get_alternative_param_name(&self, param_name: &str, module_type: &str) -> Option<String> {
        let shown = match module_type {
            "Struct:FusedBatchNorm" => "Struct:BatchNorm",
            "Struct:SparseLinear" => "Struct:Linear",
            "Struct:SparseConv2d" => "Struct:Conv2d",
            other => other,
        };
        self.0.get_alternative_param_name(param_name, shown)
    }

    fn clone_box(&self) -> Box<dyn ModuleAdapter> {
        Box::new(self.clone())
    }
}

/// Load torchvision-format weights (safetensors) into `model`, which must have torchvision's
/// parameter names (as [`ResNet`](crate::ResNet) and [`MobileNetV2`](crate::MobileNetV2) do).
///
/// # Errors
/// [`ModelError::WeightFile`] when the file cannot be read or parsed;
/// [`ModelError::WeightShape`] for a tensor whose shape does not fit its parameter (shapes in
/// Burn's layout, linear weights transposed); [`ModelError::MissingWeights`] for parameters the
/// file does not provide; [`ModelError::UnusedWeights`] for tensors that match no parameter.
pub fn load_torchvision<M: Module>(model: M, path: impl AsRef<Path>) -> Result<M> {
    let path = path.as_ref();
    let origin = path.display().to_string();
    if !path.is_file() {
        return Err(ModelError::WeightFile {
            path: origin,
            reason: "no such file".into(),
        });
    }
    let mut store = SafetensorsStore::from_file(path)
        .with_from_adapter(AsBurnLayers(PyTorchToBurnAdapter))
        .validate(false)
        .allow_partial(true);
    let mut model = model;
    let result = model
        .load_from(&mut store)
        .map_err(|e| ModelError::WeightFile {
            path: origin.clone(),
            reason: e.to_string(),
        })?;
    if let Some(e) = result.errors.first() {
        return Err(match e {
            ApplyError::ShapeMismatch {
                path: param,
                expected,
                found,
            } => ModelError::WeightShape {
                path: origin,
                param: param.clone(),
                expected: expected.as_slice().to_vec(),
                found: found.as_slice().to_vec(),
            },
            other => ModelError::WeightApply {
                path: origin,
                reason: other.to_string(),
            },
        });
    }
    if !result.missing.is_empty() {
        return Err(ModelError::MissingWeights {
            path: origin,
            missing: result.missing.iter().map(|(p, _)| p.clone()).collect(),
        });
    }
    let unused: Vec<String> = result
        .unused
        .into_iter()
        .filter(|k| !k.ends_with("num_batches_tracked"))
        .collect();
    if !unused.is_empty() {
        return Err(ModelError::UnusedWeights {
            path: origin,
            unused,
        });
    }
    Ok(model)
}

/// Load torchvision-format weights, then sparsify with magnitude initialisation (each masked
/// layer keeps its largest weights), whatever `config.init` says.
///
/// # Errors
/// As [`load_torchvision`], and any sparsification error.
pub fn load_torchvision_sparse<M: Module>(
    model: M,
    path: impl AsRef<Path>,
    config: &SparsityConfig,
) -> Result<M> {
    let model = load_torchvision(model, path)?;
    Ok(model.sparsify(config.clone().with_init(MaskInit::Magnitude))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MobileNetV2Config, ResNetConfig};
    use burn::tensor::{Device, Tensor};
    use burn_store::BurnToPyTorchAdapter;
    use rigl_core::{bools_to_host, floats_to_host};
    use safetensors::Dtype;
    use safetensors::tensor::TensorView;
    use std::collections::HashMap;

    /// torchvision's state-dict keys and shapes for a bottleneck ResNet, written from
    /// torchvision's `resnet.py` (independently of the Burn model).
    fn torchvision_resnet(
        blocks: [usize; 4],
        width: usize,
        classes: usize,
    ) -> Vec<(String, Vec<usize>)> {
        let mut out = Vec::new();
        let bn = |out: &mut Vec<(String, Vec<usize>)>, name: &str, c: usize| {
            for p in ["weight", "bias", "running_mean", "running_var"] {
                out.push((format!("{name}.{p}"), vec![c]));
            }
            out.push((format!("{name}.num_batches_tracked"), vec![]));
        };
        out.push(("conv1.weight".into(), vec![width, 3, 7, 7]));
        bn(&mut out, "bn1", width);
        let mut c_in = width;
        for (i, &n) in blocks.iter().enumerate() {
            let w = width << i;
            for b in 0..n {
                let p = format!("layer{}.{b}", i + 1);
                out.push((format!("{p}.conv1.weight"), vec![w, c_in, 1, 1]));
                bn(&mut out, &format!("{p}.bn1"), w);
                out.push((format!("{p}.conv2.weight"), vec![w, w, 3, 3]));
                bn(&mut out, &format!("{p}.bn2"), w);
                out.push((format!("{p}.conv3.weight"), vec![4 * w, w, 1, 1]));
                bn(&mut out, &format!("{p}.bn3"), 4 * w);
                if b == 0 {
                    out.push((format!("{p}.downsample.0.weight"), vec![4 * w, c_in, 1, 1]));
                    bn(&mut out, &format!("{p}.downsample.1"), 4 * w);
                }
                c_in = 4 * w;
            }
        }
        out.push(("fc.weight".into(), vec![classes, c_in]));
        out.push(("fc.bias".into(), vec![classes]));
        out
    }

    /// Deterministic, distinct values for each tensor.
    fn values(key: &str, n: usize) -> Vec<f32> {
        let seed = key
            .bytes()
            .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32));
        (0..n)
            .map(|i| {
                let x = seed
                    .wrapping_mul(2_654_435_761)
                    .wrapping_add(i as u32 * 40_503);
                (x % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    /// Write `tensors` (f32, plus i64 zero scalars for `num_batches_tracked`) to `path`.
    fn write(path: &Path, tensors: &[(String, Vec<usize>)]) -> HashMap<String, Vec<f32>> {
        let mut data: Vec<(String, Vec<usize>, Dtype, Vec<u8>)> = Vec::new();
        let mut floats = HashMap::new();
        for (k, shape) in tensors {
            if k.ends_with("num_batches_tracked") {
                data.push((
                    k.clone(),
                    shape.clone(),
                    Dtype::I64,
                    0i64.to_le_bytes().to_vec(),
                ));
            } else {
                let v = values(k, shape.iter().product());
                let bytes = v.iter().flat_map(|f| f.to_le_bytes()).collect();
                data.push((k.clone(), shape.clone(), Dtype::F32, bytes));
                floats.insert(k.clone(), v);
            }
        }
        let views: Vec<(String, TensorView<'_>)> = data
            .iter()
            .map(|(k, s, d, b)| (k.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
            .collect();
        safetensors::serialize_to_file(views, None, path).unwrap();
        floats
    }

    fn tiny_resnet() -> ResNetConfig {
        ResNetConfig::new()
            .with_blocks([1, 1, 1, 1])
            .with_base_width(4)
            .with_num_classes(5)
            .with_input_size(32)
    }

    fn tiny_keys() -> Vec<(String, Vec<usize>)> {
        torchvision_resnet([1, 1, 1, 1], 4, 5)
    }

    #[test]
    fn loads_every_resnet_parameter_from_torchvision_names() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("resnet.safetensors");
        let floats = write(&file, &tiny_keys());
        let device = Device::default();
        let model = load_torchvision(tiny_resnet().init(&device), &file).unwrap();

        assert_eq!(
            floats_to_host(model.conv1.weight.val()),
            floats["conv1.weight"]
        );
        let ds = &model.layer3[0].downsample.as_ref().unwrap();
        assert_eq!(
            floats_to_host(ds.0.weight.val()),
            floats["layer3.0.downsample.0.weight"]
        );
        assert_eq!(
            floats_to_host(ds.1.gamma.val()),
            floats["layer3.0.downsample.1.weight"]
        );
        assert_eq!(floats_to_host(model.bn1.beta.val()), floats["bn1.bias"]);
        assert_eq!(
            floats_to_host(model.layer4[0].bn3.running_var.value()),
            floats["layer4.0.bn3.running_var"]
        );
        // torchvision's linear weight is [out, in]; Burn's is [in, out].
        let fc: Tensor<2> = model.fc.weight.val();
        assert_eq!(fc.dims(), [128, 5]);
        assert_eq!(floats_to_host(fc.transpose()), floats["fc.weight"]);
        assert_eq!(
            floats_to_host(model.fc.bias.as_ref().unwrap().val()),
            floats["fc.bias"]
        );

        // Then sparsify by magnitude: each layer keeps its largest weights.
        let config = SparsityConfig::erk(0.9);
        let sparse = load_torchvision_sparse(tiny_resnet().init(&device), &file, &config).unwrap();
        let w = floats["layer2.0.conv2.weight"].clone();
        let mask = bools_to_host(sparse.mask("layer2.0.conv2.weight").unwrap());
        let kept = w
            .iter()
            .zip(&mask)
            .filter(|(_, m)| **m)
            .map(|(v, _)| v.abs());
        let dropped = w
            .iter()
            .zip(&mask)
            .filter(|(_, m)| !**m)
            .map(|(v, _)| v.abs());
        let min_kept = kept.fold(f32::INFINITY, f32::min);
        let max_dropped = dropped.fold(0.0, f32::max);
        assert!(min_kept >= max_dropped, "{min_kept} < {max_dropped}");
        assert!(mask.iter().any(|m| !m));
    }

    #[test]
    fn missing_misshaped_and_unused_tensors_are_typed_errors() {
        let dir = tempfile::tempdir().unwrap();
        let device = Device::default();

        let file = dir.path().join("missing.safetensors");
        let keys: Vec<_> = tiny_keys()
            .into_iter()
            .filter(|(k, _)| k != "layer1.0.conv2.weight" && k != "layer2.0.bn1.running_mean")
            .collect();
        write(&file, &keys);
        match load_torchvision(tiny_resnet().init(&device), &file) {
            Err(ModelError::MissingWeights { missing, .. }) => assert_eq!(
                missing,
                ["layer1.0.conv2.weight", "layer2.0.bn1.running_mean"]
            ),
            other => panic!("expected missing weights, got {other:?}"),
        }

        let file = dir.path().join("misshaped.safetensors");
        let keys: Vec<_> = tiny_keys()
            .into_iter()
            .map(|(k, s)| {
                if k == "layer3.0.conv1.weight" {
                    (k, vec![8, 16, 3, 3])
                } else {
                    (k, s)
                }
            })
            .collect();
        write(&file, &keys);
        match load_torchvision(tiny_resnet().init(&device), &file) {
            Err(ModelError::WeightShape {
                param,
                expected,
                found,
                ..
            }) => {
                assert_eq!(param, "layer3.0.conv1.weight");
                assert_eq!((expected, found), (vec![16, 32, 1, 1], vec![8, 16, 3, 3]));
            }
            other => panic!("expected a shape error, got {other:?}"),
        }

        let file = dir.path().join("extra.safetensors");
        let mut keys = tiny_keys();
        keys.push(("layer5.0.conv1.weight".into(), vec![2, 2, 1, 1]));
        write(&file, &keys);
        match load_torchvision(tiny_resnet().init(&device), &file) {
            Err(ModelError::UnusedWeights { unused, .. }) => {
                assert_eq!(unused, ["layer5.0.conv1.weight"]);
            }
            other => panic!("expected unused weights, got {other:?}"),
        }

        // A file of another architecture, a missing file and a corrupt file.
        let wide = dir.path().join("wide.safetensors");
        write(&wide, &torchvision_resnet([1, 1, 1, 1], 8, 5));
        assert!(matches!(
            load_torchvision(tiny_resnet().init(&device), &wide),
            Err(ModelError::WeightShape { .. })
        ));
        assert!(matches!(
            load_torchvision(
                tiny_resnet().init(&device),
                dir.path().join("none.safetensors")
            ),
            Err(ModelError::WeightFile { .. })
        ));
        let bad = dir.path().join("bad.safetensors");
        std::fs::write(&bad, b"not a safetensors file").unwrap();
        assert!(matches!(
            load_torchvision(tiny_resnet().init(&device), &bad),
            Err(ModelError::WeightFile { .. })
        ));
    }

    #[test]
    fn mobilenet_v2_round_trips_through_torchvision_names() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("mbv2.safetensors");
        let device = Device::default();
        let config = MobileNetV2Config::new()
            .with_width_multiplier(0.25)
            .with_num_classes(6)
            .with_input_size(32);
        let source = config.init(&device);
        let mut store =
            SafetensorsStore::from_file(&file).with_to_adapter(AsBurnLayers(BurnToPyTorchAdapter));
        source.save_into(&mut store).unwrap();

        // The file speaks torchvision.
        let bytes = std::fs::read(&file).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let names: Vec<String> = st.names().into_iter().map(String::from).collect();
        for key in [
            "features.0.0.weight",
            "features.0.1.weight",
            "features.0.1.running_var",
            "features.1.conv.0.0.weight",
            "features.1.conv.0.1.bias",
            "features.1.conv.1.weight",
            "features.1.conv.2.weight",
            "features.2.conv.0.0.weight",
            "features.2.conv.1.0.weight",
            "features.2.conv.2.weight",
            "features.2.conv.3.running_mean",
            "features.17.conv.2.weight",
            "features.18.0.weight",
            "features.18.1.bias",
            "classifier.1.weight",
            "classifier.1.bias",
        ] {
            assert!(names.iter().any(|n| n == key), "{key} not in {names:?}");
        }
        assert_eq!(st.tensor("classifier.1.weight").unwrap().shape(), [6, 1280]);

        let loaded = load_torchvision(config.init(&device), &file).unwrap();
        let x = Tensor::<4>::random(
            [1, 3, 32, 32],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        let (a, b) = (
            floats_to_host(source.valid().forward(x.clone())),
            floats_to_host(loaded.valid().forward(x)),
        );
        assert_eq!(a, b);
    }

    /// What happens to one tensor of a valid file.
    #[derive(Clone, Debug)]
    enum Edit {
        Dtype(usize),
        Shape(Vec<usize>),
        Rename(String),
        Remove,
    }

    fn edit() -> impl proptest::strategy::Strategy<Value = Edit> {
        use proptest::prelude::*;
        prop_oneof![
            (0usize..8).prop_map(Edit::Dtype),
            prop::collection::vec(0usize..6, 0..6).prop_map(Edit::Shape),
            "(fc|conv1|layer1\\.0\\.bn1|bn1)\\.(weight|bias|running_mean|[a-z]{1,4})"
                .prop_map(Edit::Rename),
            Just(Edit::Remove),
        ]
    }

    /// A valid file with `edits` applied (byte lengths kept consistent with dtype and shape,
    /// so the file parses and the loader sees the edit).
    fn edited(path: &Path, edits: &[(Edit, usize)]) -> bool {
        let mut keys: Vec<(String, Vec<usize>, Dtype)> = tiny_keys()
            .into_iter()
            .map(|(k, s)| {
                let d = if k.ends_with("num_batches_tracked") {
                    Dtype::I64
                } else {
                    Dtype::F32
                };
                (k, s, d)
            })
            .collect();
        for (e, at) in edits {
            let i = at % keys.len();
            match e {
                Edit::Dtype(d) => {
                    keys[i].2 = [
                        Dtype::F32,
                        Dtype::F16,
                        Dtype::BF16,
                        Dtype::F64,
                        Dtype::I64,
                        Dtype::I32,
                        Dtype::U8,
                        Dtype::BOOL,
                    ][*d]
                }
                Edit::Shape(s) => keys[i].1 = s.clone(),
                Edit::Rename(n) => keys[i].0 = n.clone(),
                Edit::Remove => {
                    keys.remove(i);
                }
            }
            if keys.is_empty() {
                break;
            }
        }
        let names: std::collections::HashSet<&String> = keys.iter().map(|k| &k.0).collect();
        if names.len() != keys.len() {
            // Two tensors of one name make no file.
            return false;
        }
        let data: Vec<(String, Vec<usize>, Dtype, Vec<u8>)> = keys
            .into_iter()
            .map(|(k, s, d)| {
                let n: usize = s.iter().product();
                let bytes = vec![1u8; n * d.bitsize() / 8];
                (k, s, d, bytes)
            })
            .collect();
        let views: Option<Vec<(String, TensorView<'_>)>> = data
            .iter()
            .map(|(k, s, d, b)| {
                TensorView::new(*d, s.clone(), b)
                    .ok()
                    .map(|v| (k.clone(), v))
            })
            .collect();
        views.is_some_and(|v| safetensors::serialize_to_file(v, None, path).is_ok())
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config {
            cases: 128,
            failure_persistence: None,
            ..Default::default()
        })]

        /// Arbitrary bytes, byte edits and truncations of a valid file, and edits of its
        /// tensors (dtype, shape, name, presence): a typed error or a model, never a panic.
        #[test]
        fn safetensors_import_never_panics(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
            flips in proptest::collection::vec(
                (proptest::prelude::any::<proptest::sample::Index>(), proptest::prelude::any::<u8>()),
                0..6,
            ),
            cut in proptest::option::of(proptest::prelude::any::<proptest::sample::Index>()),
            edits in proptest::collection::vec((edit(), proptest::prelude::any::<usize>()), 1..4),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let device = Device::default();
            let junk = dir.path().join("junk.safetensors");
            std::fs::write(&junk, &bytes).unwrap();
            proptest::prop_assert!(load_torchvision(tiny_resnet().init(&device), &junk).is_err());

            let valid = dir.path().join("valid.safetensors");
            write(&valid, &tiny_keys());
            let mut b = std::fs::read(&valid).unwrap();
            for (at, v) in &flips {
                let i = at.index(b.len());
                b[i] = *v;
            }
            if let Some(cut) = cut {
                b.truncate(cut.index(b.len()));
            }
            let flipped = dir.path().join("flipped.safetensors");
            std::fs::write(&flipped, &b).unwrap();
            let _ = load_torchvision(tiny_resnet().init(&device), &flipped);

            let changed = dir.path().join("edited.safetensors");
            if edited(&changed, &edits) {
                let _ = load_torchvision(tiny_resnet().init(&device), &changed);
                let _ = load_torchvision_sparse(
                    tiny_resnet().init(&device),
                    &changed,
                    &SparsityConfig::erk(0.9),
                );
            }
        }
    }
}
