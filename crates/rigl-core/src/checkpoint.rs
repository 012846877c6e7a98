//! Resumable sparse training: model (weights and masks), optimizer state, schedule counters and
//! the method's own state in one burnpack file, written atomically.
//!
//! The counter-based generator has no state to save: its position is the step counter.
//! Resuming after N steps gives bit-identical masks and weights on the CPU backend to an
//! uninterrupted run.
//!
//! Layout: tensors `model/<param path>`, `optim/<state name>`, `method/<name>` (the method's
//! state: SNFS's averages, gradual pruning's thresholds; `avg/` in older files) and
//! `init/<param path>` (initial weights for `initial_dist` growth); metadata
//! `rigl.trainer` (the trainer's configuration, plan and counters as JSON) and `optim/<key>`;
//! scalars `optim/<key>`.

use crate::error::{Result, SparsityError};
use crate::io::write_atomic;
use crate::mask::floats_to_host;
use crate::optim::SparseOptimizer;
use crate::sparsify::load_sparse_bytes;
use crate::trainer::{SparseTrainer, TrainerSnapshot};
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::ModuleOptimizer;
use burn::tensor::{Bytes, Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

const TRAINER_KEY: &str = "rigl.trainer";
const FORMAT_KEY: &str = "rigl.format";
const FORMAT: &str = "rigl-checkpoint-1";

#[derive(Serialize, Deserialize)]
struct TrainerMeta {
    /// The trainer's configuration, plan and counters.
    #[serde(flatten)]
    trainer: TrainerSnapshot,
    /// Free-form user metadata (epoch, metrics, ...), in key order so that a checkpoint's bytes
    /// are a function of its contents.
    user: std::collections::BTreeMap<String, String>,
}

/// What [`load_checkpoint`] returns.
pub struct Resumed<M, O = ModuleOptimizer> {
    /// The model, in the gradient mode its next step needs.
    pub model: M,
    /// The optimizer with its state.
    pub optim: O,
    /// The trainer with its counters and averages.
    pub trainer: SparseTrainer,
    /// The user metadata saved with the checkpoint.
    pub user: HashMap<String, String>,
}

/// Save a checkpoint of a sparse training run to `path`, atomically (temporary file, then
/// rename). `user` is free-form metadata returned by [`load_checkpoint`].
///
/// # Errors
/// [`SparsityError::Record`] if a part cannot be serialised, [`SparsityError::Io`] if the file
/// cannot be written.
pub fn save_checkpoint<M: Module, O: SparseOptimizer>(
    path: impl AsRef<Path>,
    model: &M,
    optim: &O,
    trainer: &SparseTrainer,
    user: &HashMap<String, String>,
) -> Result<()> {
    let path = path.as_ref();
    let err = |e: &dyn ToString| SparsityError::Record {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let mut tensors = Vec::new();
    let model_bytes = model
        .clone()
        .into_record()
        .into_bytes()
        .map_err(|e| err(&e))?;
    let model_reader = burn_pack::Reader::from_bytes(model_bytes).map_err(|e| err(&e))?;
    for t in model_reader.into_tensors().map_err(|e| err(&e))? {
        tensors.push(renamed(t, "model/").map_err(|e| err(&e))?);
    }
    let optim_reader = burn_pack::Reader::from_bytes(optim.state_bytes().map_err(|e| err(&e))?)
        .map_err(|e| err(&e))?;
    let optim_scalars = optim_reader.scalars().clone();
    let optim_meta = optim_reader.metadata().clone();
    for t in optim_reader.into_tensors().map_err(|e| err(&e))? {
        tensors.push(renamed(t, "optim/").map_err(|e| err(&e))?);
    }
    let mut flat: Vec<(String, Tensor<1>)> = trainer
        .method_state()
        .into_iter()
        .map(|(p, t)| (format!("method/{p}"), t))
        .collect();
    let mut initial: Vec<_> = trainer.initial_weights().iter().collect();
    initial.sort_by(|a, b| a.0.cmp(b.0));
    flat.extend(
        initial
            .into_iter()
            .map(|(p, t)| (format!("init/{p}"), t.clone())),
    );
    for (name, t) in flat {
        let values = floats_to_host(t);
        let n = values.len();
        let (bytes, shape, dtype) = TensorData::new(values, [n]).into_parts();
        tensors.push(burn_pack::Tensor::new(name, dtype, shape, None, bytes));
    }
    let meta = TrainerMeta {
        trainer: trainer.snapshot(),
        user: user.clone().into_iter().collect(),
    };
    let json = serde_json::to_string(&meta).map_err(|e| err(&e))?;
    let mut writer = burn_pack::Writer::new(tensors)
        .with_metadata(FORMAT_KEY, FORMAT)
        .with_metadata(TRAINER_KEY, &json);
    for (k, v) in &optim_scalars {
        writer = writer.with_scalar(&format!("optim/{k}"), *v);
    }
    for (k, v) in &optim_meta {
        writer = writer.with_metadata(&format!("optim/{k}"), v);
    }
    let bytes = writer.into_bytes().map_err(|e| err(&e))?;
    write_atomic(path, &bytes)
}

/// Resume from a checkpoint written by [`save_checkpoint`].
///
/// `model` is a freshly built model of the same architecture (dense or sparse: masks are
/// attached from the file), `optim` a freshly built optimizer of the same kind; the SNFS
/// averages are placed on `device`.
///
/// # Errors
/// [`SparsityError::Io`] if the file cannot be read; [`SparsityError::Record`] if it is not a
/// checkpoint (or is truncated or corrupt), does not fit the model, or does not fit together
/// (a method without a plan, method state or masks that differ from the plan, optimizer state
/// of another shape or model); mask errors of
/// [`Sparsify::load_sparse`](crate::Sparsify::load_sparse).
pub fn load_checkpoint<M: Module, O: SparseOptimizer>(
    path: impl AsRef<Path>,
    model: M,
    optim: O,
    device: &Device,
) -> Result<Resumed<M, O>> {
    let (resumed, optim_state) = read_checkpoint(path.as_ref(), model, device)?;
    let err = |e: &dyn ToString| SparsityError::Record {
        path: path.as_ref().display().to_string(),
        reason: e.to_string(),
    };
    let OptimizerRecord {
        tensors,
        scalars,
        metadata,
    } = optim_state;
    check_optimizer_state(&resumed.model, &tensors, optim.flat_state()).map_err(|e| err(&e))?;
    let mut writer = burn_pack::Writer::new(tensors);
    for (k, v) in &scalars {
        writer = writer.with_scalar(k, *v);
    }
    for (k, v) in &metadata {
        writer = writer.with_metadata(k, v);
    }
    let optim = optim
        .with_state_bytes(writer.into_bytes().map_err(|e| err(&e))?)
        .map_err(|e| err(&e))?;
    Ok(Resumed {
        model: resumed.model,
        optim,
        trainer: resumed.trainer,
        user: resumed.user,
    })
}

/// The model, trainer and user metadata of a checkpoint written by [`save_checkpoint`],
/// without its optimizer state (for evaluation and export: any optimizer may have written it).
///
/// # Errors
/// Those of [`load_checkpoint`] but the optimizer's.
pub fn load_checkpoint_model<M: Module>(
    path: impl AsRef<Path>,
    model: M,
    device: &Device,
) -> Result<Resumed<M, ()>> {
    Ok(read_checkpoint(path.as_ref(), model, device)?.0)
}

/// The optimizer part of a checkpoint, prefixes removed.
struct OptimizerRecord {
    tensors: Vec<burn_pack::Tensor>,
    scalars: std::collections::BTreeMap<String, burn_pack::Scalar>,
    metadata: std::collections::BTreeMap<String, String>,
}

fn read_checkpoint<M: Module>(
    path: &Path,
    model: M,
    device: &Device,
) -> Result<(Resumed<M, ()>, OptimizerRecord)> {
    let origin = path.display().to_string();
    let err = |e: &dyn ToString| SparsityError::Record {
        path: origin.clone(),
        reason: e.to_string(),
    };
    let bytes = std::fs::read(path).map_err(|source| SparsityError::Io {
        path: origin.clone(),
        source,
    })?;
    let reader =
        burn_pack::Reader::from_bytes(Bytes::from_bytes_vec(bytes)).map_err(|e| err(&e))?;
    if reader.metadata().get(FORMAT_KEY).map(String::as_str) != Some(FORMAT) {
        return Err(err(
            &"not a rigl-burn training checkpoint (no format marker)",
        ));
    }
    let meta: TrainerMeta = serde_json::from_str(
        reader
            .metadata()
            .get(TRAINER_KEY)
            .ok_or_else(|| err(&"missing trainer state"))?,
    )
    .map_err(|e| err(&e))?;
    let scalars = reader.scalars().clone();
    let metadata = reader.metadata().clone();
    let mut model_tensors = Vec::new();
    let mut optim_tensors = Vec::new();
    let mut method_state = Vec::new();
    let mut initial_weights = HashMap::new();
    for t in reader.into_tensors().map_err(|e| err(&e))? {
        if let Some(rest) = t.name.strip_prefix("model/") {
            let rest = rest.to_string();
            model_tensors.push(with_name(t, rest).map_err(|e| err(&e))?);
        } else if let Some(rest) = t.name.strip_prefix("optim/") {
            let rest = rest.to_string();
            optim_tensors.push(with_name(t, rest).map_err(|e| err(&e))?);
        } else if let Some((is_method, rest)) = t
            .name
            .strip_prefix("method/")
            // Checkpoints before methods owned their state kept SNFS's averages under `avg/`.
            .or_else(|| t.name.strip_prefix("avg/"))
            .map(|r| (true, r))
            .or_else(|| t.name.strip_prefix("init/").map(|r| (false, r)))
        {
            let rest = rest.to_string();
            if t.shape.num_dims() != 1 || !t.dtype.is_float() {
                return Err(err(&format!(
                    "tensor `{}` is not a flat float tensor (shape {:?}, {:?})",
                    t.name,
                    t.shape.as_slice(),
                    t.dtype
                )));
            }
            let (_, dtype, shape, _, bytes) = t.into_parts().map_err(|e| err(&e))?;
            let data = TensorData::from_bytes(bytes, shape, dtype);
            let tensor = Tensor::<1>::from_data(data, device);
            if is_method {
                method_state.push((rest, tensor));
            } else {
                initial_weights.insert(rest, tensor);
            }
        }
    }
    let model_bytes = burn_pack::Writer::new(model_tensors)
        .into_bytes()
        .map_err(|e| err(&e))?;
    let model = load_sparse_bytes(&model, model_bytes.to_vec(), &origin)?;

    let optim = OptimizerRecord {
        tensors: optim_tensors,
        scalars: scalars
            .iter()
            .filter_map(|(k, v)| k.strip_prefix("optim/").map(|k| (k.to_string(), *v)))
            .collect(),
        metadata: metadata
            .iter()
            .filter_map(|(k, v)| k.strip_prefix("optim/").map(|k| (k.to_string(), v.clone())))
            .collect(),
    };
    let trainer = SparseTrainer::from_snapshot(meta.trainer, method_state, initial_weights)
        .map_err(|e| err(&e))?;
    trainer.check_model(&model).map_err(|e| err(&e))?;
    let model = trainer.next_mode_for(model);
    let resumed = Resumed {
        model,
        optim: (),
        trainer,
        user: meta.user.into_iter().collect(),
    };
    Ok((resumed, optim))
}

/// Every tensor of the optimizer's state belongs to a parameter of `model` and has its shape
/// (flat, with one entry per weight, when `flat`): Burn's optimizers panic on a state of
/// another shape at load, and a state of another model would fail at the first step.
fn check_optimizer_state<M: Module>(
    model: &M,
    tensors: &[burn_pack::Tensor],
    flat: bool,
) -> Result<()> {
    struct Shapes(
        HashMap<u64, (String, Vec<usize>)>,
        crate::module_path::ModulePath,
    );
    impl ModuleVisitor for Shapes {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.1.enter(name);
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.1.exit();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let dims = param.lazy_shape().as_slice().to_vec();
            self.0.insert(param.id.val(), (self.1.joined(), dims));
        }
    }
    let mut shapes = Shapes(HashMap::new(), Default::default());
    model.visit(&mut shapes);
    let invalid = |m: String| Err(SparsityError::OptimizerState(m));
    for t in tensors {
        let Some(id) = t.param_id else {
            return invalid(format!("state tensor `{}` names no parameter", t.name));
        };
        let Some((path, dims)) = shapes.0.get(&id) else {
            return invalid(format!(
                "state tensor `{}` belongs to parameter {id}, which the model does not have",
                t.name
            ));
        };
        let numel: usize = dims.iter().product();
        let expected = if flat { vec![numel] } else { dims.clone() };
        if t.shape.as_slice() != expected.as_slice() {
            let found: usize = t.shape.as_slice().iter().product();
            return invalid(format!(
                "state tensor `{}` of `{path}` has shape {:?} ({found} values), the parameter {expected:?}",
                t.name,
                t.shape.as_slice()
            ));
        }
    }
    Ok(())
}

fn renamed(
    t: burn_pack::Tensor,
    prefix: &str,
) -> core::result::Result<burn_pack::Tensor, burn_pack::Error> {
    let name = format!("{prefix}{}", t.name);
    with_name(t, name)
}

fn with_name(
    t: burn_pack::Tensor,
    name: String,
) -> core::result::Result<burn_pack::Tensor, burn_pack::Error> {
    let (_, dtype, shape, id, bytes) = t.into_parts()?;
    Ok(burn_pack::Tensor::new(name, dtype, shape, id, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SparsityConfig;
    use crate::mask::bools_to_host;
    use crate::test_utils::Mlp;
    use crate::{DstConfig, Method, Sparsify};
    use burn::optim::SgdConfig;
    use burn::optim::momentum::MomentumConfig;

    fn sgd() -> ModuleOptimizer {
        SgdConfig::new()
            .with_momentum(Some(
                MomentumConfig::new()
                    .with_nesterov(true)
                    .with_dampening(0.0),
            ))
            .with_weight_decay(Some(burn::optim::decay::WeightDecayConfig::new(1e-4)))
            .init()
    }

    fn train(
        model: Mlp,
        trainer: &mut SparseTrainer,
        optim: &mut ModuleOptimizer,
        batches: std::ops::Range<u32>,
    ) -> Mlp {
        let device = Device::default().autodiff();
        let mut model = model;
        for i in batches {
            let grads = model.grads(i, 8, &device);
            model = trainer.step(model, optim, 0.05, grads).unwrap().model;
        }
        model
    }

    fn snapshot(model: &Mlp) -> (Vec<Vec<bool>>, Vec<Vec<u32>>) {
        let masks = model
            .sparse_layers()
            .into_iter()
            .map(|l| bools_to_host(l.mask.unwrap()))
            .collect();
        let weights = [&model.fc1.weight, &model.fc2.weight, &model.fc3.weight]
            .iter()
            .map(|w| {
                floats_to_host(w.val())
                    .iter()
                    .map(|v| v.to_bits())
                    .collect()
            })
            .collect();
        (masks, weights)
    }

    /// Data parallelism on one machine's CPU: Burn's CPU backend has a single device, so the
    /// replicas share it, but nothing else: replica B is restored from a checkpoint of replica
    /// A (its own hash maps, optimizer and trainer). Each computes the gradient of its own
    /// shard; Burn's `GradientsAccumulator` sums the two (the all-reduce); both step with the
    /// reduced gradient. Their masks and weights stay bit-identical through every update, and
    /// the masks do change.
    #[test]
    fn data_parallel_replicas_decide_identically() {
        use burn::optim::GradientsAccumulator;
        let device = Device::default().autodiff();
        let dir = tempfile::tempdir().unwrap();
        for method in [Method::Rigl, Method::Set, Method::Snfs, Method::Prune] {
            let sparsity = SparsityConfig::erk(0.7).with_seed(4);
            let dst = DstConfig::new(method).with_frequency(2).with_end_step(12);
            let (model_a, mut trainer_a) =
                SparseTrainer::init(Mlp::new([6, 12, 10, 3], &device), &sparsity, dst).unwrap();
            let mut optim_a = sgd();
            let file = dir.path().join(format!("{method}.ckpt"));
            save_checkpoint(&file, &model_a, &optim_a, &trainer_a, &HashMap::new()).unwrap();
            let r =
                load_checkpoint(&file, Mlp::new([6, 12, 10, 3], &device), sgd(), &device).unwrap();
            let (mut model_b, mut trainer_b, mut optim_b) = (r.model, r.trainer, r.optim);
            let mut model_a = model_a;
            let initial = snapshot(&model_a).0;
            for step in 0..14u32 {
                let reduced = |m: &Mlp| {
                    let mut acc = GradientsAccumulator::new();
                    acc.accumulate(m, model_a.grads(2 * step, 8, &device));
                    acc.accumulate(m, model_b.grads(2 * step + 1, 8, &device));
                    acc.grads()
                };
                let (ga, gb) = (reduced(&model_a), reduced(&model_b));
                let out_a = trainer_a.step(model_a, &mut optim_a, 0.05, ga).unwrap();
                let out_b = trainer_b.step(model_b, &mut optim_b, 0.05, gb).unwrap();
                assert_eq!(
                    out_a.update.is_some(),
                    out_b.update.is_some(),
                    "{method} step {step}"
                );
                (model_a, model_b) = (out_a.model, out_b.model);
                assert_eq!(
                    snapshot(&model_a),
                    snapshot(&model_b),
                    "{method}: replicas differ after step {step}"
                );
            }
            assert_ne!(
                snapshot(&model_a).0,
                initial,
                "{method}: masks never changed"
            );
        }
    }

    #[test]
    fn kill_and_resume_is_bit_exact() {
        let device = Device::default().autodiff();
        let dir = tempfile::tempdir().unwrap();
        for method in [Method::Rigl, Method::Snfs, Method::Set] {
            let base = Mlp::new([6, 12, 10, 3], &device);
            let sparsity = SparsityConfig::erk(0.7).with_seed(9);
            let dst = DstConfig::new(method).with_frequency(3).with_end_step(30);

            // Uninterrupted.
            let (model, mut trainer) =
                SparseTrainer::init(base.clone(), &sparsity, dst.clone()).unwrap();
            let mut optim = sgd();
            let full = train(model, &mut trainer, &mut optim, 0..14);

            // Interrupted after 7 batches, resumed from a fresh model and optimizer.
            let (model, mut trainer) =
                SparseTrainer::init(base.clone(), &sparsity, dst.clone()).unwrap();
            let mut optim = sgd();
            let half = train(model, &mut trainer, &mut optim, 0..7);
            let file = dir.path().join(format!("{method}.ckpt"));
            let user = HashMap::from([("epoch".to_string(), "3".to_string())]);
            save_checkpoint(&file, &half, &optim, &trainer, &user).unwrap();
            drop((half, optim, trainer));
            let fresh = Mlp::new([6, 12, 10, 3], &device);
            let r = load_checkpoint(&file, fresh, sgd(), &device).unwrap();
            assert_eq!(r.user["epoch"], "3");
            let (mut trainer, mut optim) = (r.trainer, r.optim);
            let resumed = train(r.model, &mut trainer, &mut optim, 7..14);
            assert_eq!(snapshot(&resumed), snapshot(&full), "{method}");
        }
    }

    #[test]
    fn corrupt_or_foreign_files_are_typed_errors() {
        let device = Device::default().autodiff();
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.ckpt");
        std::fs::write(&bad, b"\x00\x01garbage").unwrap();
        let model = Mlp::new([4, 5, 5, 2], &device);
        assert!(matches!(
            load_checkpoint(&bad, model.clone(), sgd(), &device),
            Err(SparsityError::Record { .. })
        ));
        assert!(matches!(
            load_checkpoint(
                dir.path().join("missing.ckpt"),
                model.clone(),
                sgd(),
                &device
            ),
            Err(SparsityError::Io { .. })
        ));
        // A model record is not a training checkpoint.
        let plain = dir.path().join("model.bpk");
        model
            .sparsify(SparsityConfig::uniform(0.5))
            .unwrap()
            .save_sparse(&plain)
            .unwrap();
        let err = load_checkpoint(&plain, model.clone(), sgd(), &device)
            .err()
            .unwrap();
        assert!(
            err.to_string()
                .contains("not a rigl-burn training checkpoint"),
            "{err}"
        );
        // A truncated checkpoint.
        let (m, trainer) = SparseTrainer::init(
            model.clone(),
            &SparsityConfig::uniform(0.5),
            DstConfig::new(Method::Set),
        )
        .unwrap();
        let good = dir.path().join("good.ckpt");
        save_checkpoint(&good, &m, &sgd(), &trainer, &HashMap::new()).unwrap();
        let bytes = std::fs::read(&good).unwrap();
        std::fs::write(&bad, &bytes[..bytes.len() / 2]).unwrap();
        assert!(matches!(
            load_checkpoint(&bad, model, sgd(), &device),
            Err(SparsityError::Record { .. })
        ));
        // No temporary file is left behind.
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }

    /// Rewrite the checkpoint at `file`: its trainer JSON and its tensors.
    fn rewrite(
        file: &Path,
        edit: impl FnOnce(&mut serde_json::Value, &mut Vec<burn_pack::Tensor>),
    ) -> std::path::PathBuf {
        let reader =
            burn_pack::Reader::from_bytes(Bytes::from_bytes_vec(std::fs::read(file).unwrap()))
                .unwrap();
        let metadata = reader.metadata().clone();
        let scalars = reader.scalars().clone();
        let mut json: serde_json::Value = serde_json::from_str(&metadata[TRAINER_KEY]).unwrap();
        let mut tensors = reader.into_tensors().unwrap();
        edit(&mut json, &mut tensors);
        let mut writer = burn_pack::Writer::new(tensors);
        for (k, v) in &metadata {
            let v = if k == TRAINER_KEY {
                json.to_string()
            } else {
                v.clone()
            };
            writer = writer.with_metadata(k, &v);
        }
        for (k, v) in &scalars {
            writer = writer.with_scalar(k, *v);
        }
        static EDITS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = EDITS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let out = file.with_extension(format!("edited{n}"));
        std::fs::write(&out, writer.into_bytes().unwrap().to_vec()).unwrap();
        out
    }

    /// A tensor of `t`'s name, dtype and id with `n` zero values.
    fn resized(t: burn_pack::Tensor, n: usize) -> burn_pack::Tensor {
        let (name, _, _, id, _) = t.into_parts().unwrap();
        let (bytes, shape, dtype) = TensorData::new(vec![0f32; n], [n]).into_parts();
        burn_pack::Tensor::new(name, dtype, shape, id, bytes)
    }

    /// A checkpoint that parses but does not fit together is refused with the reason, for
    /// Burn's optimizer and a slot optimizer alike: nothing is left to fail at a later step.
    #[test]
    fn inconsistent_checkpoints_are_typed_errors() {
        use crate::optim::SparseSgdConfig;
        let device = Device::default().autodiff();
        let dir = tempfile::tempdir().unwrap();
        let fresh = || Mlp::new([6, 12, 10, 3], &device);
        let save = |method: Method, name: &str| {
            let dst = DstConfig::new(method).with_frequency(2).with_end_step(20);
            let (model, mut trainer) =
                SparseTrainer::init(fresh(), &SparsityConfig::erk(0.7).with_seed(1), dst).unwrap();
            let mut optim = sgd();
            let model = train(model, &mut trainer, &mut optim, 0..5);
            let file = dir.path().join(name);
            save_checkpoint(&file, &model, &optim, &trainer, &HashMap::new()).unwrap();
            let mut slot = SparseSgdConfig::new()
                .with_momentum(Some(MomentumConfig::new()))
                .init();
            let grads = model.grads(9, 8, &device);
            let model = trainer.step(model, &mut slot, 0.05, grads).unwrap().model;
            let slot_file = dir.path().join(format!("slot-{name}"));
            save_checkpoint(&slot_file, &model, &slot, &trainer, &HashMap::new()).unwrap();
            (file, slot_file)
        };
        let (snfs, snfs_slot) = save(Method::Snfs, "snfs.ckpt");
        let (prune, _) = save(Method::Prune, "prune.ckpt");
        let (set, _) = save(Method::Set, "set.ckpt");
        let load = |file: &Path| {
            load_checkpoint(file, fresh(), sgd(), &device)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        let load_slot = |file: &Path| {
            let slot = SparseSgdConfig::new()
                .with_momentum(Some(MomentumConfig::new()))
                .init();
            load_checkpoint(file, fresh(), slot, &device)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert_eq!(load(&snfs), "");
        assert_eq!(load_slot(&snfs_slot), "");
        let cases: Vec<(std::path::PathBuf, &str)> = vec![
            (
                rewrite(&snfs, |j, _| j["plan"] = serde_json::Value::Null),
                "method snfs needs a sparsity plan, but the checkpoint has none",
            ),
            (
                rewrite(&snfs, |j, _| j["sparsity"]["sparsity"] = 1.5.into()),
                "1.5",
            ),
            (
                rewrite(&snfs, |j, _| {
                    let n = j["plan"]["layers"][0]["n_active"].as_u64().unwrap();
                    j["plan"]["layers"][0]["n_active"] = (n - 1).into();
                }),
                "the mask of `fc1.weight` has",
            ),
            (
                rewrite(&set, |j, _| j["plan"]["layers"][1]["masked"] = false.into()),
                "`fc2.weight` has a mask, but the plan leaves it dense",
            ),
            (
                rewrite(&snfs, |_, t| {
                    let i = t
                        .iter()
                        .position(|t| t.name == "method/fc2.weight")
                        .unwrap();
                    let old = t.remove(i);
                    t.push(resized(old, 7));
                }),
                "the snfs state of `fc2.weight` has 7 values, expected 120",
            ),
            (
                rewrite(&snfs, |_, t| {
                    let i = t
                        .iter()
                        .position(|t| t.name == "method/fc2.weight")
                        .unwrap();
                    let (_, _, _, id, bytes) = t.remove(i).into_parts().unwrap();
                    t.push(burn_pack::Tensor::new(
                        "method/fc9.weight".into(),
                        burn::tensor::DType::F32,
                        [120],
                        id,
                        bytes,
                    ));
                }),
                "snfs state for `fc9.weight`, which is not a masked layer of its plan",
            ),
            (
                rewrite(&prune, |_, t| {
                    let i = t
                        .iter()
                        .position(|t| t.name.starts_with("method/"))
                        .unwrap();
                    let old = t.remove(i);
                    t.push(resized(old, 2));
                }),
                "has 2 values, expected 1",
            ),
            (
                rewrite(&snfs, |_, t| {
                    let i = t.iter().position(|t| t.name.starts_with("optim/")).unwrap();
                    let old = t.remove(i);
                    t.push(resized(old, 5));
                }),
                "[5] (5 values), the parameter",
            ),
        ];
        for (file, expected) in &cases {
            let err = load(file);
            assert!(err.contains(expected), "{}: {err:?}", file.display());
        }
        let slot_short = rewrite(&snfs_slot, |_, t| {
            let i = t.iter().position(|t| t.name.starts_with("optim/")).unwrap();
            let old = t.remove(i);
            t.push(resized(old, 5));
        });
        let err = load_slot(&slot_short);
        assert!(err.contains("[5] (5 values), the parameter"), "{err}");
    }
}
