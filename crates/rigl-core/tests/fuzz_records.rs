//! Fuzzing of everything rigl-core reads back: training checkpoints (arbitrary bytes, byte
//! edits and truncations of a real one, edits of its trainer JSON and of its tensors) and
//! optimizer-state records (Burn's `ModuleOptimizer`, `SparseSgd`, `SparseAdam`,
//! `SparseAdamW`). Every input gives a value or a typed error, never a panic; a checkpoint that
//! loads also trains a step without one.

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Linear, LinearConfig};
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Bytes, Device, Int, Tensor, TensorData};
use proptest::prelude::*;
use rigl_core::optim::{SparseAdamConfig, SparseAdamWConfig, SparseOptimizer, SparseSgdConfig};
use rigl_core::{
    DstConfig, Method, SparseTrainer, SparsityConfig, load_checkpoint, save_checkpoint,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

#[derive(Module, Debug)]
struct Net {
    a: Linear,
    b: Linear,
}

impl Net {
    fn new(device: &Device) -> Self {
        Self {
            a: LinearConfig::new(5, 8).init(device),
            b: LinearConfig::new(8, 3).init(device),
        }
    }

    fn grads(&self, i: usize, device: &Device) -> GradientsParams {
        let x: Vec<f32> = (0..20)
            .map(|k| ((k * 7 + i * 3) % 11) as f32 / 5.0 - 1.0)
            .collect();
        let x = Tensor::<2>::from_data(TensorData::new(x, [4, 5]), device);
        let y = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 1, 2, 1], [4]), device);
        let logits = self.b.forward(relu(self.a.forward(x)));
        let loss = CrossEntropyLossConfig::new()
            .init(device)
            .forward(logits, y);
        GradientsParams::from_grads(loss.backward(), self)
    }
}

fn device() -> Device {
    Device::default().autodiff()
}

fn burn_sgd() -> ModuleOptimizer {
    SgdConfig::new()
        .with_momentum(Some(MomentumConfig::new().with_dampening(0.0)))
        .init()
}

/// Valid checkpoints, one per (method, optimizer kind), written once.
fn originals() -> &'static Vec<(PathBuf, usize)> {
    static FILES: OnceLock<(tempfile::TempDir, Vec<(PathBuf, usize)>)> = OnceLock::new();
    &FILES
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let d = device();
            let mut files = Vec::new();
            for (k, method) in [Method::Snfs, Method::Prune, Method::Rigl]
                .into_iter()
                .enumerate()
            {
                let dst = DstConfig::new(method).with_frequency(2).with_end_step(10);
                let sparsity = SparsityConfig::erk(0.6).with_seed(1);
                for kind in 0..2 {
                    let (mut model, mut trainer) =
                        SparseTrainer::init(Net::new(&d), &sparsity, dst.clone()).unwrap();
                    let file = dir.path().join(format!("{method}-{kind}.ckpt"));
                    if kind == 0 {
                        let mut optim = burn_sgd();
                        for i in 0..4 {
                            let g = model.grads(i, &d);
                            model = trainer.step(model, &mut optim, 0.1, g).unwrap().model;
                        }
                        save_checkpoint(&file, &model, &optim, &trainer, &HashMap::new()).unwrap();
                    } else {
                        let mut optim = SparseAdamConfig::new().init();
                        for i in 0..4 {
                            let g = model.grads(i, &d);
                            model = trainer.step(model, &mut optim, 0.01, g).unwrap().model;
                        }
                        save_checkpoint(&file, &model, &optim, &trainer, &HashMap::new()).unwrap();
                    }
                    files.push((file, 2 * k + kind));
                }
            }
            (dir, files)
        })
        .1
}

/// Load `file` with the optimizer kind it was written with (0: Burn's SGD, 1: SparseAdam);
/// when it loads, train two steps. Errors are fine; panics fail the property.
fn load_and_train(file: &Path, kind: usize) -> Result<(), String> {
    let d = device();
    fn go<O: SparseOptimizer>(file: &Path, optim: O, d: &Device) -> Result<(), String> {
        let r = load_checkpoint(file, Net::new(d), optim, d).map_err(|e| e.to_string())?;
        let (mut model, mut trainer, mut optim) = (r.model, r.trainer, r.optim);
        for i in 0..2 {
            let g = model.grads(i, d);
            model = trainer
                .step(model, &mut optim, 0.01, g)
                .map_err(|e| e.to_string())?
                .model;
        }
        Ok(())
    }
    if kind.is_multiple_of(2) {
        go(file, burn_sgd(), &d)
    } else {
        go(file, SparseAdamConfig::new().init(), &d)
    }
}

fn scratch(bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fuzzed.ckpt");
    std::fs::write(&file, bytes).unwrap();
    (dir, file)
}

/// Rewrite a checkpoint: its metadata (trainer JSON included) and tensors.
fn rewrite(
    file: &Path,
    edit: impl FnOnce(&mut serde_json::Value, &mut Vec<burn_pack::Tensor>),
) -> Option<Vec<u8>> {
    let bytes = Bytes::from_bytes_vec(std::fs::read(file).unwrap());
    let reader = burn_pack::Reader::from_bytes(bytes).unwrap();
    let metadata = reader.metadata().clone();
    let scalars = reader.scalars().clone();
    let mut json: serde_json::Value = serde_json::from_str(&metadata["rigl.trainer"]).unwrap();
    let mut tensors = reader.into_tensors().unwrap();
    edit(&mut json, &mut tensors);
    let mut writer = burn_pack::Writer::new(tensors);
    for (k, v) in &metadata {
        let v = if k == "rigl.trainer" {
            json.to_string()
        } else {
            v.clone()
        };
        writer = writer.with_metadata(k, &v);
    }
    for (k, v) in &scalars {
        writer = writer.with_scalar(k, *v);
    }
    // Edits that give two tensors one name make no file at all.
    writer.into_bytes().ok().map(|b| b.to_vec())
}

/// Every leaf of a JSON value, as a path of keys and indices.
fn leaves(v: &serde_json::Value, at: Vec<String>, out: &mut Vec<Vec<String>>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, c) in m {
                let mut p = at.clone();
                p.push(k.clone());
                leaves(c, p, out);
            }
        }
        serde_json::Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                let mut p = at.clone();
                p.push(i.to_string());
                leaves(c, p, out);
            }
        }
        _ => out.push(at),
    }
}

fn at_mut<'a>(v: &'a mut serde_json::Value, path: &[String]) -> &'a mut serde_json::Value {
    path.iter().fold(v, |v, k| match v {
        serde_json::Value::Array(a) => &mut a[k.parse::<usize>().unwrap()],
        other => &mut other[k.as_str()],
    })
}

/// What a JSON leaf becomes.
fn replacement() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        any::<i64>().prop_map(serde_json::Value::from),
        prop_oneof![
            Just(-1.0f64),
            Just(0.0),
            Just(1.0),
            Just(1.5),
            Just(1e300),
            any::<f64>()
        ]
        .prop_map(|f| serde_json::json!(f)),
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        "[a-z_.0-9]{0,12}".prop_map(serde_json::Value::from),
        Just(serde_json::json!([])),
        Just(serde_json::json!({})),
    ]
}

/// What happens to one tensor.
#[derive(Clone, Debug)]
enum TensorEdit {
    Resize(usize),
    Reshape(Vec<usize>),
    Bool,
    Rename(String),
    Reid(Option<u64>),
    Remove,
    Duplicate(String),
}

fn tensor_edit() -> impl Strategy<Value = TensorEdit> {
    prop_oneof![
        (0usize..100).prop_map(TensorEdit::Resize),
        prop::collection::vec(0usize..5, 0..10).prop_map(TensorEdit::Reshape),
        Just(TensorEdit::Bool),
        prop_oneof![
            Just("model/a.weight".to_string()),
            Just("method/b.weight".to_string()),
            Just("init/a.weight".to_string()),
            Just("optim/1.slot0".to_string()),
            "(model|optim|method|init|avg)/[a-z0-9._]{0,10}",
        ]
        .prop_map(TensorEdit::Rename),
        prop::option::of(any::<u64>()).prop_map(TensorEdit::Reid),
        Just(TensorEdit::Remove),
        "(model|optim|method)/[a-z0-9._]{0,10}".prop_map(TensorEdit::Duplicate),
    ]
}

fn apply(edit: &TensorEdit, tensors: &mut Vec<burn_pack::Tensor>, index: usize) {
    if tensors.is_empty() {
        return;
    }
    let i = index % tensors.len();
    let t = tensors.remove(i);
    let (name, dtype, shape, id, bytes) = t.into_parts().unwrap();
    let floats = |dims: Vec<usize>| {
        let n: usize = dims.iter().product();
        TensorData::new(vec![0.5f32; n], dims).into_parts()
    };
    match edit {
        TensorEdit::Resize(n) => {
            let (b, s, d) = floats(vec![*n]);
            tensors.push(burn_pack::Tensor::new(name, d, s, id, b));
        }
        TensorEdit::Reshape(dims) => {
            let (b, s, d) = floats(dims.clone());
            tensors.push(burn_pack::Tensor::new(name, d, s, id, b));
        }
        TensorEdit::Bool => {
            let n: usize = shape.as_slice().iter().product();
            let (b, s, d) = TensorData::new(vec![true; n], shape.clone()).into_parts();
            tensors.push(burn_pack::Tensor::new(name, d, s, id, b));
        }
        TensorEdit::Rename(to) => {
            tensors.push(burn_pack::Tensor::new(to.clone(), dtype, shape, id, bytes))
        }
        TensorEdit::Reid(to) => {
            tensors.push(burn_pack::Tensor::new(name, dtype, shape, *to, bytes))
        }
        TensorEdit::Remove => {}
        TensorEdit::Duplicate(to) => {
            tensors.push(burn_pack::Tensor::new(
                to.clone(),
                dtype,
                shape.clone(),
                id,
                bytes.clone(),
            ));
            tensors.push(burn_pack::Tensor::new(name, dtype, shape, id, bytes));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_are_refused(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        let (_dir, file) = scratch(&bytes);
        prop_assert!(load_and_train(&file, 0).is_err());
        prop_assert!(load_and_train(&file, 1).is_err());
    }

    #[test]
    fn byte_edits_and_truncations_never_panic(
        which in 0usize..6,
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        cut in prop::option::of(any::<prop::sample::Index>()),
    ) {
        let (file, kind) = &originals()[which];
        let mut bytes = std::fs::read(file).unwrap();
        for (at, b) in &edits {
            let i = at.index(bytes.len());
            bytes[i] = *b;
        }
        if let Some(cut) = cut {
            bytes.truncate(cut.index(bytes.len()));
        }
        let (_dir, fuzzed) = scratch(&bytes);
        let _ = load_and_train(&fuzzed, *kind);
    }

    #[test]
    fn trainer_json_edits_never_panic(
        which in 0usize..6,
        picks in prop::collection::vec((any::<prop::sample::Index>(), replacement()), 1..4),
    ) {
        let (file, kind) = &originals()[which];
        let bytes = rewrite(file, |json, _| {
            for (pick, value) in &picks {
                let mut all = Vec::new();
                leaves(json, Vec::new(), &mut all);
                if all.is_empty() {
                    break;
                }
                let path = &all[pick.index(all.len())];
                *at_mut(json, path) = value.clone();
            }
        });
        let Some(bytes) = bytes else { return Ok(()) };
        let (_dir, fuzzed) = scratch(&bytes);
        let _ = load_and_train(&fuzzed, *kind);
    }

    #[test]
    fn tensor_edits_never_panic(
        which in 0usize..6,
        edits in prop::collection::vec((tensor_edit(), any::<usize>()), 1..4),
    ) {
        let (file, kind) = &originals()[which];
        let bytes = rewrite(file, |_, tensors| {
            for (edit, index) in &edits {
                apply(edit, tensors, *index);
            }
        });
        let Some(bytes) = bytes else { return Ok(()) };
        let (_dir, fuzzed) = scratch(&bytes);
        let _ = load_and_train(&fuzzed, *kind);
    }

    /// Optimizer records alone: the state of every kind of optimizer, edited, read by every
    /// kind. (A record read on its own is not checked against a model: `load_checkpoint`
    /// does that, and the properties above train what it loads.)
    #[test]
    fn optimizer_records_never_panic(
        writer in 0usize..4,
        reader in 0usize..4,
        edits in prop::collection::vec((tensor_edit(), any::<usize>()), 0..3),
        scalar in prop::option::of((0usize..4, any::<i64>())),
    ) {
        let d = device();
        let model = Net::new(&d);
        let (mut model, mut trainer) = SparseTrainer::init(
            model,
            &SparsityConfig::uniform(0.5),
            DstConfig::new(Method::Set).with_frequency(3).with_end_step(9),
        )
        .unwrap();
        let state = {
            macro_rules! trained {
                ($optim:expr) => {{
                    let mut optim = $optim;
                    for i in 0..2 {
                        let g = model.grads(i, &d);
                        model = trainer.step(model, &mut optim, 0.01, g).unwrap().model;
                    }
                    optim.state_bytes().unwrap()
                }};
            }
            match writer {
                0 => trained!(burn_sgd()),
                1 => trained!(SparseSgdConfig::new().with_momentum(Some(MomentumConfig::new())).init()),
                2 => trained!(SparseAdamConfig::new().init()),
                _ => trained!(AdamConfig::new().init()),
            }
        };
        let reader_pack = burn_pack::Reader::from_bytes(state).unwrap();
        let metadata = reader_pack.metadata().clone();
        let mut scalars = reader_pack.scalars().clone();
        if let Some((k, v)) = scalar {
            let keys: Vec<String> = scalars.keys().cloned().collect();
            if !keys.is_empty() {
                scalars.insert(keys[k % keys.len()].clone(), burn_pack::Scalar::Int(v));
            }
        }
        let mut tensors = reader_pack.into_tensors().unwrap();
        for (edit, index) in &edits {
            apply(edit, &mut tensors, *index);
        }
        let mut w = burn_pack::Writer::new(tensors);
        for (k, v) in &metadata {
            w = w.with_metadata(k, v);
        }
        for (k, v) in &scalars {
            w = w.with_scalar(k, *v);
        }
        let Ok(bytes) = w.into_bytes() else { return Ok(()) };
        macro_rules! read {
            ($optim:expr) => {{
                let _ = $optim.with_state_bytes(bytes.clone());
            }};
        }
        match reader {
            0 => read!(burn_sgd()),
            1 => read!(SparseSgdConfig::new().with_momentum(Some(MomentumConfig::new())).init()),
            2 => read!(SparseAdamConfig::new().init()),
            _ => read!(SparseAdamWConfig::new().init()),
        }
    }
}
