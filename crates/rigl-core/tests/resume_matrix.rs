//! Kill and resume, for every method and every optimizer: a run cut at any step (right after
//! RigL's mask-only iteration, after SNIP's shot, at the end of gradual pruning, ...) and
//! resumed from its checkpoint on a fresh model and optimizer ends bit-identical to the
//! uninterrupted run, whose results do not depend on the number of CPU threads. Saving what was
//! loaded gives the checkpoint's bytes again.

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Linear, LinearConfig};
use burn::optim::momentum::MomentumConfig;
use burn::optim::{ModuleOptimizer, SgdConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rigl_core::optim::{SparseAdamConfig, SparseAdamWConfig, SparseOptimizer, SparseSgdConfig};
use rigl_core::{
    DstConfig, Method, SparseTrainer, Sparsify, SparsityConfig, floats_to_host, load_checkpoint,
    save_checkpoint,
};
use std::collections::HashMap;

#[derive(Module, Debug)]
struct Net {
    a: Linear,
    b: Linear,
    c: Linear,
}

const CALLS: usize = 18;

impl Net {
    fn new(device: &Device) -> Self {
        Self {
            a: LinearConfig::new(6, 12).init(device),
            b: LinearConfig::new(12, 10).init(device),
            c: LinearConfig::new(10, 3).init(device),
        }
    }

    /// The same initial weights every time: the generator seeded under a lock (tests run in
    /// parallel and share it), every lazy parameter drawn before it is released.
    fn seeded(device: &Device) -> Self {
        static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
        device.seed(7);
        let net = Self::new(device);
        for l in [&net.a, &net.b, &net.c] {
            let _ = (l.weight.val(), l.bias.as_ref().map(|b| b.val()));
        }
        net
    }

    fn grads(&self, i: usize, device: &Device) -> burn::optim::GradientsParams {
        let x: Vec<f32> = (0..48)
            .map(|k| ((k * 13 + i * 7) % 17) as f32 / 8.0 - 1.0)
            .collect();
        let x = Tensor::<2>::from_data(TensorData::new(x, [8, 6]), device);
        let y: Vec<i64> = (0..8).map(|k| ((k + i) % 3) as i64).collect();
        let y = Tensor::<1, Int>::from_data(TensorData::new(y, [8]), device);
        let h = relu(self.b.forward(relu(self.a.forward(x))));
        let loss = CrossEntropyLossConfig::new()
            .init(device)
            .forward(self.c.forward(h), y);
        burn::optim::GradientsParams::from_grads(loss.backward(), self)
    }

    /// Every weight (bits) and mask of the model.
    fn state(&self) -> State {
        let bits = |t: Tensor<1>| floats_to_host(t).into_iter().map(f32::to_bits).collect();
        let mut weights = Vec::new();
        for l in [&self.a, &self.b, &self.c] {
            weights.push(bits(l.weight.val().reshape([-1])));
            weights.push(bits(l.bias.as_ref().unwrap().val()));
        }
        let masks = self
            .sparse_layers()
            .into_iter()
            .map(|l| rigl_core::bools_to_host(l.mask.unwrap()))
            .collect();
        (weights, masks)
    }
}

#[derive(Clone, Copy, Debug)]
enum Optim {
    BurnSgd,
    SparseSgd,
    SparseAdam,
    SparseAdamW,
}

fn dst(method: Method) -> DstConfig {
    DstConfig::new(method)
        .with_frequency(3)
        .with_end_step(12)
        .with_drop_fraction(0.4)
}

/// A model's weights (bits) and masks.
type State = (Vec<Vec<u32>>, Vec<Vec<bool>>);

/// What happened at each call of an uninterrupted run: whether it trained, and whether it
/// updated the masks.
type Trace = Vec<(bool, bool)>;

/// Run calls `from..CALLS` (`from > 0`: resumed from `checkpoint`), cutting a checkpoint after
/// call `cut` when given. Returns the final state and the trace.
fn run<O: SparseOptimizer>(
    method: Method,
    make: impl Fn() -> O,
    resume: Option<&std::path::Path>,
    from: usize,
    cut: Option<(usize, &std::path::Path)>,
) -> (State, Trace) {
    let d = Device::default().autodiff();
    let sparsity = SparsityConfig::erk(0.7).with_seed(5);
    let (mut model, mut trainer, mut optim) = match resume {
        None => {
            let (m, t) = SparseTrainer::init(Net::seeded(&d), &sparsity, dst(method)).unwrap();
            (m, t, make())
        }
        Some(file) => {
            let r = load_checkpoint(file, Net::new(&d), make(), &d).unwrap();
            (r.model, r.trainer, r.optim)
        }
    };
    let mut trace = Vec::new();
    for i in from..CALLS {
        let g = model.grads(i, &d);
        let out = trainer.step(model, &mut optim, 0.05, g).unwrap();
        trace.push((out.trained, out.update.is_some()));
        model = out.model;
        if let Some((c, file)) = cut
            && c == i
        {
            let user = HashMap::from([
                ("epoch".to_string(), "1".to_string()),
                ("batch".to_string(), i.to_string()),
            ]);
            save_checkpoint(file, &model, &optim, &trainer, &user).unwrap();
            // Loading and saving again gives the same bytes.
            let again = file.with_extension("again");
            let r = load_checkpoint(file, Net::new(&d), make(), &d).unwrap();
            save_checkpoint(&again, &r.model, &r.optim, &r.trainer, &r.user).unwrap();
            let (a, b) = (std::fs::read(file).unwrap(), std::fs::read(&again).unwrap());
            assert!(
                a == b,
                "{method}: save -> load -> save changed the bytes at call {i}: {}",
                difference(a, b)
            );
        }
    }
    (model.state(), trace)
}

/// Which part of two checkpoints differs.
fn difference(a: Vec<u8>, b: Vec<u8>) -> String {
    let read =
        |v: Vec<u8>| burn_pack::Reader::from_bytes(burn::tensor::Bytes::from_bytes_vec(v)).unwrap();
    let (a, b) = (read(a), read(b));
    for (k, v) in a.metadata() {
        if b.metadata().get(k) != Some(v) {
            return format!("metadata `{k}`: {v} vs {:?}", b.metadata().get(k));
        }
    }
    if a.scalars() != b.scalars() {
        return format!("scalars {:?} vs {:?}", a.scalars(), b.scalars());
    }
    let (ta, tb) = (a.into_tensors().unwrap(), b.into_tensors().unwrap());
    let names = |t: &[burn_pack::Tensor]| {
        t.iter()
            .map(|t| (t.name.clone(), t.param_id, t.shape.as_slice().to_vec()))
            .collect::<Vec<_>>()
    };
    if names(&ta) != names(&tb) {
        return format!("tensors {:?} vs {:?}", names(&ta), names(&tb));
    }
    for (x, y) in ta.into_iter().zip(tb) {
        let name = x.name.clone();
        let (_, _, _, _, bx) = x.into_parts().unwrap();
        let (_, _, _, _, by) = y.into_parts().unwrap();
        if bx.to_vec() != by.to_vec() {
            return format!("tensor `{name}` values");
        }
    }
    "layout only".into()
}

fn matrix<O: SparseOptimizer>(optim: Optim, make: impl Fn() -> O + Copy + Send + Sync) {
    let dir = tempfile::tempdir().unwrap();
    for method in Method::ALL {
        let pool = |n| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .unwrap()
        };
        let (full, trace) = pool(1).install(|| run(method, make, None, 0, None));
        let (two, _) = pool(2).install(|| run(method, make, None, 0, None));
        assert_eq!(full, two, "{method} {optim:?}: 1 and 2 threads differ");
        // Cuts: after the first call, after every mask update (RigL's and SNIP's mask-only
        // iterations included), after the last update (pruning's end step), and midway.
        let updates: Vec<usize> = (0..CALLS).filter(|&i| trace[i].1).collect();
        let mut cuts = vec![0, CALLS / 2];
        cuts.extend(&updates);
        if method != Method::Dense && method != Method::Scratch {
            assert!(
                !updates.is_empty(),
                "{method}: no mask update in {CALLS} calls"
            );
        }
        if matches!(method, Method::Rigl | Method::Snip) {
            assert!(
                updates.iter().all(|&i| !trace[i].0),
                "{method}: an update call trained"
            );
        }
        cuts.sort_unstable();
        cuts.dedup();
        for cut in cuts.into_iter().filter(|&c| c + 1 < CALLS) {
            let file = dir.path().join(format!("{method}-{cut}.ckpt"));
            let _ = run(method, make, None, 0, Some((cut, &file)));
            let (resumed, _) = run(method, make, Some(&file), cut + 1, None);
            assert_eq!(
                resumed, full,
                "{method} {optim:?}: resumed after call {cut} differs from the uninterrupted run"
            );
        }
    }
}

fn burn_sgd() -> ModuleOptimizer {
    SgdConfig::new()
        .with_momentum(Some(
            MomentumConfig::new()
                .with_nesterov(true)
                .with_dampening(0.0),
        ))
        .init()
}

#[test]
fn resume_is_bit_exact_with_burn_sgd() {
    matrix(Optim::BurnSgd, burn_sgd);
}

#[test]
fn resume_is_bit_exact_with_sparse_sgd() {
    matrix(Optim::SparseSgd, || {
        SparseSgdConfig::new()
            .with_momentum(Some(
                MomentumConfig::new()
                    .with_nesterov(true)
                    .with_dampening(0.0),
            ))
            .init()
    });
}

#[test]
fn resume_is_bit_exact_with_sparse_adam() {
    matrix(Optim::SparseAdam, || SparseAdamConfig::new().init());
}

#[test]
fn resume_is_bit_exact_with_sparse_adamw() {
    matrix(Optim::SparseAdamW, || SparseAdamWConfig::new().init());
}
