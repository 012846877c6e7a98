//! [`Sparsify`]: the one-call decorator that makes any Burn module sparse.

use crate::config::{MaskInit, SparsityConfig};
use crate::error::{Result, SparsityError};
use crate::init::{magnitude_mask, random_mask, structured_magnitude_mask, structured_random_mask};
use crate::layers::{KernelParam, kernel_params};
#[cfg(test)]
use crate::mask::floats_to_host;
use crate::mask::{GradientMode, SparseMask, bools_to_host};
use crate::module_path::ModulePath;
use crate::plan::SparsityPlan;
use crate::report::{LayerReport, SparsityReport, sparsity};
use burn::module::{Flag, Module, ModuleMapper, ModuleVisitor, Param, Reparameterizer};
use burn::store::ModuleRecord;
use burn::tensor::{Bool, Bytes, Tensor};
use std::collections::{HashMap, HashSet};
use std::path::Path;

impl AsRef<SparsityConfig> for SparsityConfig {
    fn as_ref(&self) -> &SparsityConfig {
        self
    }
}

/// Sparsity for every Burn [`Module`]: attach masks, report, switch gradient modes, and save
/// or load masks with the module's record.
///
/// The model keeps its type and its `forward`: each selected weight gets a [`SparseMask`]
/// reparameterization, so `param.val()` (what `forward` uses) is the masked weight.
///
/// ```
/// use burn::nn::{Linear, LinearConfig};
/// use burn::tensor::Device;
/// use rigl_core::{Sparsify, SparsityConfig};
///
/// let device = Device::default();
/// let layer: Linear = LinearConfig::new(64, 32).init(&device);
/// let sparse = layer.sparsify(SparsityConfig::uniform(0.75))?;
/// let report = sparse.sparsity_report();
/// assert_eq!(report.nnz, 512);
/// println!("{report}");
/// # Ok::<(), rigl_core::SparsityError>(())
/// ```
pub trait Sparsify: Module + Sized {
    /// The plan [`sparsify`](Self::sparsify) would follow, from shapes alone (nothing is
    /// initialised or changed).
    ///
    /// # Errors
    /// See [`SparsityPlan::build`].
    fn sparsity_plan(&self, config: impl AsRef<SparsityConfig>) -> Result<SparsityPlan> {
        let kernels: Vec<_> = kernel_params(self)
            .into_iter()
            .map(|k| (k.path, k.shape))
            .collect();
        SparsityPlan::build(&kernels, config.as_ref())
    }

    /// A copy of this module with masks attached to the weights the config selects, with
    /// exactly `floor(s * N)` zeros each. The original is left untouched (clones of Burn
    /// modules share their tensors, so this costs only the masks).
    ///
    /// # Errors
    /// Invalid configuration values, patterns that match nothing, an empty selection (see
    /// [`SparsityPlan::build`]), [`SparsityError::AlreadySparse`] if a selected weight already
    /// has a mask, and [`SparsityError::Select`] if magnitude initialisation meets NaN weights.
    fn sparsify(&self, config: impl AsRef<SparsityConfig>) -> Result<Self> {
        self.sparsify_with_plan(config).map(|(m, _)| m)
    }

    /// Like [`sparsify`](Self::sparsify), also returning the plan it followed.
    ///
    /// # Errors
    /// As [`sparsify`](Self::sparsify).
    fn sparsify_with_plan(
        &self,
        config: impl AsRef<SparsityConfig>,
    ) -> Result<(Self, SparsityPlan)> {
        let config = config.as_ref();
        let kernels = kernel_params(self);
        let shapes: Vec<_> = kernels
            .iter()
            .map(|k| (k.path.clone(), k.shape.clone()))
            .collect();
        let plan = SparsityPlan::build(&shapes, config)?;
        let already: Vec<&str> = plan
            .layers
            .iter()
            .zip(&kernels)
            .filter(|(l, k)| l.masked && k.is_masked())
            .map(|(l, _)| l.path.as_str())
            .collect();
        if !already.is_empty() {
            return Err(SparsityError::AlreadySparse {
                paths: already.join(", "),
            });
        }
        let masked: Vec<_> = plan
            .layers
            .iter()
            .zip(&kernels)
            .filter(|(l, _)| l.masked)
            .collect();
        let mut weights = match config.init {
            MaskInit::Random | MaskInit::Dense => HashMap::new(),
            MaskInit::Magnitude => flat_weights(self, masked.iter().map(|(l, _)| l.path.as_str())),
        };
        let mut masks = HashMap::new();
        for (l, k) in masked {
            let mask = match (config.init, &l.groups) {
                (MaskInit::Random, None) => {
                    random_mask(config.seed, &l.path, 0, l.numel(), l.n_active, &k.device)?
                }
                (MaskInit::Random, Some(g)) => {
                    structured_random_mask(config.seed, &l.path, 0, g, &k.device)?
                }
                (MaskInit::Dense, _) => Tensor::<1, Bool>::ones([l.numel()], &k.device),
                (MaskInit::Magnitude, groups) => {
                    let w = weights
                        .remove(&l.path)
                        .ok_or_else(|| SparsityError::UnknownLayer {
                            path: l.path.clone(),
                        })?;
                    match groups {
                        None => magnitude_mask(&l.path, w, l.n_active)?,
                        Some(g) => structured_magnitude_mask(&l.path, w, g)?,
                    }
                }
            };
            masks.insert(l.path.clone(), NewMask::Tensor(Box::new(mask)));
        }
        let model = self.clone().apply_reparameterization(AttachMasks {
            masks,
            mode: config.gradient_mode,
        });
        Ok((model, plan))
    }

    /// Per-layer and global sparsity of every kernel, read from the attached masks.
    fn sparsity_report(&self) -> SparsityReport {
        let layers = kernel_params(self)
            .into_iter()
            .map(|k| {
                let numel = k.shape.numel();
                let nnz = match &k.mask {
                    Some(m) => bools_to_host(m.clone()).iter().filter(|&&b| b).count(),
                    None => numel,
                };
                LayerReport {
                    masked: k.is_masked(),
                    path: k.path,
                    shape: k.shape.dims,
                    numel,
                    nnz,
                    sparsity: sparsity(nnz, numel),
                }
            })
            .collect();
        SparsityReport::from_layers(layers)
    }

    /// The sparse weights: path, id, shape and mask of every masked kernel, in layer order.
    fn sparse_layers(&self) -> Vec<KernelParam> {
        kernel_params(self)
            .into_iter()
            .filter(KernelParam::is_masked)
            .collect()
    }

    /// The flat mask of the weight at `path`.
    ///
    /// # Errors
    /// [`SparsityError::UnknownLayer`] when `path` is not a masked weight.
    fn mask(&self, path: &str) -> Result<Tensor<1, Bool>> {
        kernel_params(self)
            .into_iter()
            .find(|k| k.path == path)
            .and_then(|k| k.mask)
            .ok_or_else(|| SparsityError::UnknownLayer {
                path: path.to_string(),
            })
    }

    /// The module with every mask switched to `mode` (see [`GradientMode`]).
    fn with_gradient_mode(self, mode: GradientMode) -> Self {
        self.map(&mut ModeMapper {
            path: ModulePath::default(),
            dense: mode == GradientMode::Dense,
        })
    }

    /// Save the module's record (weights and masks) to a burnpack file, atomically: the data
    /// goes to a temporary file beside `path`, which is then renamed over it.
    ///
    /// # Errors
    /// [`SparsityError::Io`] or [`SparsityError::Record`].
    fn save_sparse(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let bytes = self
            .clone()
            .into_record()
            .into_bytes()
            .map_err(|e| record_error(path, e))?;
        crate::io::write_atomic(path, &bytes)
    }

    /// Load weights and masks from a burnpack file written by [`save_sparse`](Self::save_sparse)
    /// (or any record of this module). Weights that have a mask in the file but none in the
    /// module get one, so a freshly built dense model loads a sparse checkpoint as is.
    ///
    /// # Errors
    /// [`SparsityError::Io`] if the file cannot be read, [`SparsityError::Record`] if it is not
    /// a valid record of this module, [`SparsityError::MaskShapeMismatch`] if a mask does not
    /// fit its weight, [`SparsityError::UnknownLayer`] if a mask names no kernel of the module.
    fn load_sparse(&self, path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| SparsityError::Io {
            path: path.display().to_string(),
            source,
        })?;
        load_sparse_bytes(self, bytes, &path.display().to_string())
    }

    /// Like [`load_sparse`](Self::load_sparse), from an in-memory record.
    ///
    /// # Errors
    /// As [`load_sparse`](Self::load_sparse).
    fn load_sparse_record(&self, record: ModuleRecord) -> Result<Self> {
        let bytes = record
            .into_bytes()
            .map_err(|e| record_error(Path::new("<memory>"), e))?;
        load_sparse_bytes(self, bytes.to_vec(), "<memory>")
    }
}

impl<M: Module> Sparsify for M {}

fn record_error(path: &Path, e: impl ToString) -> SparsityError {
    SparsityError::Record {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

pub(crate) fn load_sparse_bytes<M: Module>(module: &M, bytes: Vec<u8>, origin: &str) -> Result<M> {
    let err = |reason: String| SparsityError::Record {
        path: origin.to_string(),
        reason,
    };
    let tensors = burn_pack::Reader::from_bytes(Bytes::from_bytes_vec(bytes.clone()))
        .and_then(|r| r.into_tensors())
        .map_err(|e| err(e.to_string()))?;
    let kernels = kernel_params(module);
    let suffix = format!(".{}.mask", SparseMask::NAME);
    let mut attach = HashMap::new();
    for t in &tensors {
        let Some(weight) = t.name.strip_suffix(&suffix) else {
            continue;
        };
        let Some(k) = kernels.iter().find(|k| k.path == weight) else {
            return Err(SparsityError::UnknownLayer {
                path: weight.to_string(),
            });
        };
        let mask_len: usize = t.shape.as_slice().iter().product();
        if mask_len != k.shape.numel() || t.shape.as_slice().len() != 1 {
            return Err(SparsityError::MaskShapeMismatch {
                path: weight.to_string(),
                mask_len,
                weight_shape: k.shape.dims.clone(),
                weight_len: k.shape.numel(),
            });
        }
        if !k.is_masked() {
            attach.insert(k.path.clone(), NewMask::Host(vec![true; mask_len]));
        }
    }
    let model = if attach.is_empty() {
        module.clone()
    } else {
        module.clone().apply_reparameterization(AttachMasks {
            masks: attach,
            mode: GradientMode::Masked,
        })
    };
    check_record_kinds(&model, &tensors).map_err(err)?;
    let record =
        ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes)).map_err(|e| err(e.to_string()))?;
    model
        .try_load_record(record)
        .map_err(|e| err(e.to_string()))
}

/// Every record tensor that names a parameter of `module` has its kind (float, int, bool) and
/// shape: Burn's record loading panics on a tensor of another kind.
fn check_record_kinds<M: Module>(
    module: &M,
    tensors: &[burn_pack::Tensor],
) -> core::result::Result<(), String> {
    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Kind {
        Float,
        Int,
        Bool,
    }
    struct Params(ModulePath, HashMap<String, (Kind, Vec<usize>)>);
    impl Params {
        fn add(&mut self, kind: Kind, dims: &[usize]) {
            self.1.insert(self.0.joined(), (kind, dims.to_vec()));
        }
    }
    impl ModuleVisitor for Params {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.0.enter(name);
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.0.exit();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.add(Kind::Float, param.lazy_shape().as_slice());
        }
        fn visit_int<const D: usize>(&mut self, param: &Param<Tensor<D, burn::tensor::Int>>) {
            self.add(Kind::Int, param.lazy_shape().as_slice());
        }
        fn visit_bool<const D: usize>(&mut self, param: &Param<Tensor<D, Bool>>) {
            self.add(Kind::Bool, param.lazy_shape().as_slice());
        }
    }
    let mut params = Params(ModulePath::default(), HashMap::new());
    module.visit(&mut params);
    for t in tensors {
        let Some((kind, dims)) = params.1.get(&t.name) else {
            continue;
        };
        let found = if t.dtype.is_float() {
            Kind::Float
        } else if matches!(t.dtype, burn::tensor::DType::Bool(_)) {
            Kind::Bool
        } else {
            Kind::Int
        };
        if found != *kind || t.shape.as_slice() != dims.as_slice() {
            return Err(format!(
                "tensor `{}` is {:?} {:?}, the parameter {kind:?} {dims:?}",
                t.name,
                t.dtype,
                t.shape.as_slice()
            ));
        }
    }
    Ok(())
}

/// A mask to attach: built on the host (loading a record) or on the device (selection).
enum NewMask {
    Host(Vec<bool>),
    Tensor(Box<Tensor<1, Bool>>),
}

/// Attaches masks to the weights at the given paths.
struct AttachMasks {
    masks: HashMap<String, NewMask>,
    mode: GradientMode,
}

impl Reparameterizer for AttachMasks {
    type Reparam = SparseMask;

    fn reparameterize<const D: usize>(
        &mut self,
        path: &str,
        param: Param<Tensor<D>>,
    ) -> (Param<Tensor<D>>, Option<SparseMask>) {
        match self.masks.remove(path) {
            Some(NewMask::Host(values)) => {
                let mask = SparseMask::from_bools(values, &param.lazy_device(), self.mode);
                (param, Some(mask))
            }
            Some(NewMask::Tensor(mask)) => (param, Some(SparseMask::from_tensor(*mask, self.mode))),
            None => (param, None),
        }
    }
}

/// The stored values of the weights at `paths`, flat, on their device, without autodiff.
pub(crate) fn flat_weights<'a, M: Module>(
    module: &M,
    paths: impl Iterator<Item = &'a str>,
) -> HashMap<String, Tensor<1>> {
    struct Reader {
        path: ModulePath,
        wanted: HashSet<String>,
        out: HashMap<String, Tensor<1>>,
    }
    impl ModuleVisitor for Reader {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.enter(name);
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.exit();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let p = self.path.joined();
            if self.wanted.contains(&p) {
                self.out
                    .insert(p, param.val().without_autodiff().reshape([-1]));
            }
        }
    }
    let mut r = Reader {
        path: ModulePath::default(),
        wanted: paths.map(str::to_string).collect(),
        out: HashMap::new(),
    };
    module.visit(&mut r);
    r.out
}

/// The stored values of the weights at `paths`, read to the host.
#[cfg(test)]
pub(crate) fn read_weights<'a, M: Module>(
    module: &M,
    paths: impl Iterator<Item = &'a str>,
) -> HashMap<String, Vec<f32>> {
    flat_weights(module, paths)
        .into_iter()
        .map(|(k, v)| (k, floats_to_host(v)))
        .collect()
}

/// Switches the dense-gradient flag of every mask.
struct ModeMapper {
    path: ModulePath,
    dense: bool,
}

impl ModuleMapper for ModeMapper {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.enter(name);
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.exit();
    }
    fn map_flag(&mut self, flag: Param<Flag>) -> Param<Flag> {
        if self.path.mask_field("dense_grad").is_some() {
            flag.with_value(self.dense)
        } else {
            flag
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Distribution;
    use burn::nn::conv::{Conv1d, Conv1dConfig};
    use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
    use burn::tensor::{Device, Distribution as Init, Tensor};

    #[derive(Module, Debug)]
    struct Net {
        fc1: Linear,
        norm: LayerNorm,
        fc2: Linear,
        fc3: Linear,
    }

    impl Net {
        fn new(device: &Device) -> Self {
            Self {
                fc1: LinearConfig::new(20, 30).init(device),
                norm: LayerNormConfig::new(30).init(device),
                fc2: LinearConfig::new(30, 16).init(device),
                fc3: LinearConfig::new(16, 4).init(device),
            }
        }

        fn forward(&self, x: Tensor<2>) -> Tensor<2> {
            let x = burn::tensor::activation::relu(self.norm.forward(self.fc1.forward(x)));
            let x = burn::tensor::activation::relu(self.fc2.forward(x));
            self.fc3.forward(x)
        }
    }

    fn ones(m: Tensor<1, Bool>) -> usize {
        bools_to_host(m).iter().filter(|&&b| b).count()
    }

    #[test]
    fn exact_counts_and_only_kernels_masked() {
        let device = Device::default();
        let net = Net::new(&device)
            .sparsify(SparsityConfig::uniform(0.9).last_layer_dense())
            .unwrap();
        let report = net.sparsity_report();
        let rows: Vec<_> = report
            .layers
            .iter()
            .map(|l| (l.path.as_str(), l.masked, l.nnz))
            .collect();
        assert_eq!(
            rows,
            [
                ("fc1.weight", true, 600 - 540),
                ("fc2.weight", true, 480 - 432),
                ("fc3.weight", false, 64),
            ]
        );
        assert_eq!(report.numel, 600 + 480 + 64);
        assert_eq!(report.nnz, 60 + 48 + 64);
        // Biases and norm parameters carry no mask.
        assert!(
            net.fc1
                .bias
                .as_ref()
                .unwrap()
                .reparameterization::<SparseMask>()
                .is_none()
        );
        assert!(net.norm.gamma.reparameterization::<SparseMask>().is_none());
        assert!(net.fc1.weight.reparameterization::<SparseMask>().is_some());
        // The effective weight has exactly the mask's zeros.
        let w = floats_to_host(net.fc1.weight.val());
        assert_eq!(w.iter().filter(|v| **v != 0.0).count(), 60);
        let table = report.to_string();
        assert!(
            table.contains("fc2.weight") && table.contains("total"),
            "{table}"
        );
    }

    #[test]
    fn golden_erk_with_vector_never_masked() {
        // a: (2,4) dense kernel with a (4,) bias; c: a conv kernel with shape 3x6x7 in any order.
        #[derive(Module, Debug)]
        struct Golden {
            a: Linear,
            c: Conv1d,
        }
        let device = Device::default();
        let m = Golden {
            a: LinearConfig::new(2, 4).init(&device),
            c: Conv1dConfig::new(6, 7, 3).init(&device),
        };
        let plan = m.sparsity_plan(SparsityConfig::erk(0.5)).unwrap();
        assert_eq!(plan.layers.len(), 2, "the bias vectors are not kernels");
        assert!((plan.layers[0].sparsity - 0.0).abs() < 1e-6);
        assert!((plan.layers[1].sparsity - 0.531746).abs() < 1e-6);
        assert!((plan.eps.unwrap() - 3.6875).abs() < 1e-6);
        let sparse = m.sparsify(SparsityConfig::erk(0.5)).unwrap();
        assert_eq!(ones(sparse.mask("c.weight").unwrap()), 126 - 67);
        assert_eq!(ones(sparse.mask("a.weight").unwrap()), 8);
    }

    #[test]
    fn same_seed_same_masks_other_seed_other_masks() {
        let device = Device::default();
        let net = Net::new(&device);
        let cfg = SparsityConfig::uniform(0.8).with_seed(11);
        let a = bools_to_host(net.sparsify(&cfg).unwrap().mask("fc1.weight").unwrap());
        let b = bools_to_host(
            Net::new(&device)
                .sparsify(&cfg)
                .unwrap()
                .mask("fc1.weight")
                .unwrap(),
        );
        assert_eq!(a, b, "random masks depend on the seed and path only");
        let c = bools_to_host(
            net.sparsify(cfg.clone().with_seed(12))
                .unwrap()
                .mask("fc1.weight")
                .unwrap(),
        );
        assert_ne!(a, c);
    }

    #[test]
    fn magnitude_init_keeps_largest_weights() {
        let device = Device::default();
        let net = Net::new(&device);
        let w = floats_to_host(net.fc2.weight.val());
        let sparse = net
            .sparsify(SparsityConfig::uniform(0.75).with_init(MaskInit::Magnitude))
            .unwrap();
        let mask = bools_to_host(sparse.mask("fc2.weight").unwrap());
        let kept_min = w
            .iter()
            .zip(&mask)
            .filter(|(_, m)| **m)
            .map(|(v, _)| v.abs())
            .fold(f32::INFINITY, f32::min);
        let dropped_max = w
            .iter()
            .zip(&mask)
            .filter(|(_, m)| !**m)
            .map(|(v, _)| v.abs())
            .fold(0.0, f32::max);
        assert_eq!(mask.iter().filter(|&&b| b).count(), 120);
        assert!(kept_min >= dropped_max);
    }

    #[test]
    fn already_sparse_and_bad_config_are_errors() {
        let device = Device::default();
        let net = Net::new(&device)
            .sparsify(SparsityConfig::uniform(0.5))
            .unwrap();
        assert!(matches!(
            net.sparsify(SparsityConfig::uniform(0.5)),
            Err(SparsityError::AlreadySparse { .. })
        ));
        let err = Net::new(&device)
            .sparsify(SparsityConfig::uniform(1.5))
            .unwrap_err();
        assert!(err.to_string().contains("1.5"));
        assert!(matches!(
            Net::new(&device)
                .sparsify(SparsityConfig::uniform(0.5).with_custom_sparsity("conv*", 0.1)),
            Err(SparsityError::UnmatchedPattern { .. })
        ));
        assert!(matches!(
            net.mask("fc9.weight"),
            Err(SparsityError::UnknownLayer { .. })
        ));
    }

    #[test]
    fn record_round_trip_restores_masks() {
        let device = Device::default();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("net.bpk");
        let net = Net::new(&device)
            .sparsify(SparsityConfig::erk(0.8).with_seed(5))
            .unwrap();
        net.save_sparse(&file).unwrap();
        // A fresh dense model picks the masks up from the file.
        let loaded = Net::new(&device).load_sparse(&file).unwrap();
        for path in ["fc1.weight", "fc2.weight", "fc3.weight"] {
            assert_eq!(
                bools_to_host(loaded.mask(path).unwrap()),
                bools_to_host(net.mask(path).unwrap()),
                "{path}"
            );
        }
        assert_eq!(
            floats_to_host(loaded.fc1.weight.val()),
            floats_to_host(net.fc1.weight.val())
        );
        // A sparse model with other masks is overwritten too, and in-memory records work.
        let other = Net::new(&device)
            .sparsify(SparsityConfig::erk(0.8).with_seed(6))
            .unwrap();
        let loaded = other.load_sparse_record(net.clone().into_record()).unwrap();
        assert_eq!(
            bools_to_host(loaded.mask("fc2.weight").unwrap()),
            bools_to_host(net.mask("fc2.weight").unwrap())
        );
    }

    #[test]
    fn loading_a_mismatched_mask_is_a_typed_error() {
        let device = Device::default();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("small.bpk");
        let small: Linear = LinearConfig::new(4, 6).init(&device);
        small
            .sparsify(SparsityConfig::uniform(0.5))
            .unwrap()
            .save_sparse(&file)
            .unwrap();
        let bigger: Linear = LinearConfig::new(4, 5).init(&device);
        match bigger.load_sparse(&file) {
            Err(SparsityError::MaskShapeMismatch {
                path,
                mask_len,
                weight_len,
                ..
            }) => assert_eq!((path.as_str(), mask_len, weight_len), ("weight", 24, 20)),
            other => panic!("expected a mask shape mismatch, got {other:?}"),
        }
        // Missing and corrupt files are typed errors too.
        assert!(matches!(
            bigger.load_sparse(dir.path().join("none.bpk")),
            Err(SparsityError::Io { .. })
        ));
        std::fs::write(dir.path().join("bad.bpk"), b"not a record").unwrap();
        assert!(matches!(
            bigger.load_sparse(dir.path().join("bad.bpk")),
            Err(SparsityError::Record { .. })
        ));
    }

    fn loss_and_grads(net: &Net, x: Tensor<2>) -> Vec<f32> {
        let loss = net.forward(x).powi_scalar(2).sum();
        let grads = loss.backward();
        floats_to_host(net.fc1.weight.base().grad(&grads).unwrap())
    }

    #[test]
    fn masked_mode_zeroes_gradients_at_inactive_positions() {
        let device = Device::default().autodiff();
        let net = Net::new(&device)
            .sparsify(SparsityConfig::uniform(0.7))
            .unwrap();
        let x = Tensor::<2>::random([8, 20], Init::Normal(0.0, 1.0), &device);
        let g = loss_and_grads(&net, x);
        let mask = bools_to_host(net.mask("fc1.weight").unwrap());
        assert!(g.iter().zip(&mask).all(|(g, m)| *m || *g == 0.0));
        assert!(g.iter().zip(&mask).any(|(g, m)| *m && *g != 0.0));
    }

    #[test]
    fn dense_mode_gives_the_gradient_of_the_masked_weight() {
        let device = Device::default().autodiff();
        let net = Net::new(&device)
            .sparsify(SparsityConfig::uniform(0.7))
            .unwrap()
            .with_gradient_mode(GradientMode::Dense);
        assert_eq!(
            net.fc1
                .weight
                .reparameterization::<SparseMask>()
                .unwrap()
                .gradient_mode(),
            GradientMode::Dense
        );
        let x = Tensor::<2>::random([8, 20], Init::Normal(0.0, 1.0), &device);
        let g = loss_and_grads(&net, x.clone());

        // The reference: a plain network whose weights are w * m.
        let plain = net.clone().materialize();
        assert!(
            plain
                .fc1
                .weight
                .reparameterization::<SparseMask>()
                .is_none()
        );
        let g_ref = loss_and_grads(&plain, x);
        let mask = bools_to_host(net.mask("fc1.weight").unwrap());
        for (a, b) in g.iter().zip(&g_ref) {
            assert!((a - b).abs() <= 1e-6 * (1.0 + b.abs()), "{a} vs {b}");
        }
        assert!(
            g.iter().zip(&mask).any(|(g, m)| !*m && *g != 0.0),
            "dense at inactive positions"
        );
        // The value is the same in both modes.
        let masked = net.clone().with_gradient_mode(GradientMode::Masked);
        assert_eq!(
            floats_to_host(masked.fc1.weight.val()),
            floats_to_host(net.fc1.weight.val())
        );
    }

    #[test]
    fn materialize_exports_plain_weights_with_zeros() {
        let device = Device::default();
        let net = Net::new(&device)
            .sparsify(SparsityConfig::uniform(0.9))
            .unwrap();
        let mask = bools_to_host(net.mask("fc2.weight").unwrap());
        let plain = net.materialize();
        assert!(plain.sparse_layers().is_empty());
        let w = floats_to_host(plain.fc2.weight.val());
        assert!(w.iter().zip(&mask).all(|(v, m)| *m || *v == 0.0));
        assert!(!plain.sparsity_report().layer("fc2.weight").unwrap().masked);
    }

    #[test]
    fn distribution_names_parse() {
        assert_eq!("ERK".parse::<Distribution>().unwrap(), Distribution::Erk);
        assert_eq!(
            "random".parse::<Distribution>().unwrap(),
            Distribution::Uniform
        );
        assert!("dense".parse::<Distribution>().is_err());
    }
}
