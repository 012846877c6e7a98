//! Tests of [`SparseTrainer`](super::SparseTrainer).

use super::grow_init::normal_samples;
use super::*;
use crate::Structure;
use crate::mask::{bools_to_host, floats_to_host};
use crate::schedule::DropAnneal;
use crate::sparsify::read_weights;
use crate::test_utils::{Mlp, masks};
use crate::updater::{GradualPruning, PruningScope, UpdateContext};
use burn::module::Param;
use burn::optim::ModuleOptimizer;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, AdamWConfig, SgdConfig};
use burn::tensor::Device;
use burn::tensor::TensorData;
use proptest::prelude::*;

fn device() -> Device {
    Device::default().autodiff()
}

fn sgd() -> ModuleOptimizer {
    SgdConfig::new()
        .with_momentum(Some(
            MomentumConfig::new()
                .with_nesterov(true)
                .with_dampening(0.0),
        ))
        .init()
}

/// The method's state tensor named `name`.
fn state_of(trainer: &SparseTrainer, name: &str) -> Tensor<1> {
    trainer
        .method_state()
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, t)| t)
        .unwrap_or_else(|| panic!("no method state `{name}`"))
}

fn nnz(model: &Mlp) -> Vec<usize> {
    masks(model)
        .iter()
        .map(|m| m.iter().filter(|&&b| b).count())
        .collect()
}

/// Optimizer state tensors by (param id, name).
fn optim_state(optim: &ModuleOptimizer) -> HashMap<(u64, String), Vec<f32>> {
    let reader = burn_pack::Reader::from_bytes(optim.into_bytes().unwrap()).unwrap();
    reader
        .into_tensors()
        .unwrap()
        .into_iter()
        .map(|t| {
            let (name, dtype, shape, id, bytes) = t.into_parts().unwrap();
            let data = TensorData::from_bytes(bytes, shape, dtype);
            let values = data.convert::<f32>().try_into_vec::<f32>().unwrap();
            ((id.unwrap_or(0), name), values)
        })
        .collect()
}

/// Run `steps` calls of `step` on batches 0.., returning the model and the update stats.
fn run(
    model: Mlp,
    trainer: &mut SparseTrainer,
    optim: &mut ModuleOptimizer,
    calls: u32,
    mut each: impl FnMut(&Mlp, &StepOutcome<Mlp>, &SparseTrainer),
) -> Mlp {
    let device = device();
    let mut model = model;
    for i in 0..calls {
        let grads = model.grads(i, 8, &device);
        let out = trainer.step(model, optim, 0.05, grads).unwrap();
        each(&out.model, &out, trainer);
        model = out.model;
    }
    model
}

#[test]
fn config_errors_name_the_problem() {
    let c = DstConfig::new(Method::Rigl);
    assert!(c.validate().is_ok());
    for (bad, needle) in [
        (c.clone().with_frequency(0), "frequency"),
        (c.clone().with_drop_fraction(1.5), "drop fraction"),
        (c.clone().with_drop_fraction(-0.1), "drop fraction"),
        (
            c.clone().with_begin_step(10).with_end_step(5),
            "before begin",
        ),
        (c.clone().with_training_steps_multiplier(0.0), "multiplier"),
        (DstConfig::new(Method::Prune), "end step"),
    ] {
        let e = bad.validate().unwrap_err().to_string();
        assert!(e.contains(needle), "{e}");
    }
    let s = c
        .with_begin_step(10)
        .with_end_step(100)
        .with_training_steps_multiplier(5.0)
        .schedule();
    assert_eq!((s.begin_step, s.end_step, s.frequency), (50, 500, 100));
}

#[test]
fn a_learning_rate_out_of_range_is_refused_before_anything_changes() {
    let d = device();
    let (model, mut trainer) = SparseTrainer::init(
        Mlp::new([4, 6, 3, 2], &d),
        &SparsityConfig::uniform(0.5),
        DstConfig::new(Method::Set),
    )
    .unwrap();
    let mut optim = sgd();
    for lr in [f64::NAN, -0.1, f64::INFINITY] {
        let grads = model.grads(0, 4, &d);
        let err = trainer
            .step(model.clone(), &mut optim, lr, grads)
            .err()
            .unwrap();
        assert!(
            matches!(
                err,
                SparsityError::InvalidOptimizerSetting {
                    name: "learning rate",
                    ..
                }
            ),
            "{err}"
        );
    }
    assert_eq!(trainer.step_count(), 0);
}

#[test]
fn rigl_update_step_trains_nothing_and_does_not_advance() {
    let device = device();
    let model = Mlp::new([6, 10, 8, 3], &device);
    let dst = DstConfig::new(Method::Rigl)
        .with_frequency(3)
        .with_end_step(100);
    let (model, mut trainer) =
        SparseTrainer::init(model, &SparsityConfig::uniform(0.7), dst).unwrap();
    assert_eq!(
        trainer.next_gradient_mode(),
        GradientMode::Dense,
        "step 0 is an update step"
    );
    let mut optim = sgd();
    let before = read_weights(&model, ["fc2.weight"].into_iter());
    let grads = model.grads(0, 8, &device);
    let out = trainer.step(model, &mut optim, 0.05, grads).unwrap();
    assert!(!out.trained);
    assert!(out.update.is_some());
    assert_eq!(
        trainer.step_count(),
        0,
        "the update iteration does not advance the step"
    );
    let after = read_weights(&out.model, ["fc2.weight"].into_iter());
    // Only new connections changed (to zero); nothing was trained.
    let new = &out.update.as_ref().unwrap().layers[1];
    let changed = before["fc2.weight"]
        .iter()
        .zip(&after["fc2.weight"])
        .filter(|(a, b)| a != b)
        .count();
    assert!(changed <= new.reset);
    assert_eq!(trainer.next_gradient_mode(), GradientMode::Masked);
    // The same step number is seen again and trains.
    let grads = out.model.grads(1, 8, &device);
    let out = trainer.step(out.model, &mut optim, 0.05, grads).unwrap();
    assert!(out.trained && out.update.is_none());
    assert_eq!(trainer.step_count(), 1);
    // Training on update steps is the documented alternative.
    let (model, mut trainer) = SparseTrainer::init(
        Mlp::new([6, 10, 8, 3], &device),
        &SparsityConfig::uniform(0.7),
        DstConfig::new(Method::Rigl)
            .with_frequency(3)
            .with_train_on_update_steps(true),
    )
    .unwrap();
    let grads = model.grads(0, 8, &device);
    let out = trainer.step(model, &mut optim, 0.05, grads).unwrap();
    assert!(out.trained && out.update.is_some());
    assert_eq!(trainer.step_count(), 1);
}

#[test]
fn masks_change_only_on_update_steps_and_not_after_end() {
    let device = device();
    // (method, begin, the steps the updates see, the calls (batches) they follow).
    // SET and SNFS see the step after the optimizer's increment (t + 1); RigL sees t and
    // its update iterations do not advance the counter.
    for (method, begin, seen, calls) in [
        (Method::Set, 0, vec![1, 5, 9], vec![0, 4, 8]),
        (Method::Snfs, 0, vec![1, 5, 9], vec![0, 4, 8]),
        (Method::Rigl, 0, vec![0, 4, 8, 12], vec![0, 5, 10, 15]),
        (Method::Set, 6, vec![6, 10], vec![5, 9]),
        (Method::StaticRezero, 6, vec![6, 10], vec![5, 9]),
        (Method::Rigl, 6, vec![6, 10], vec![6, 11]),
    ] {
        let dst = DstConfig::new(method)
            .with_begin_step(begin)
            .with_frequency(4)
            .with_end_step(12)
            .with_drop_fraction(0.5)
            .with_drop_anneal(DropAnneal::Constant);
        let (model, mut trainer) = SparseTrainer::init(
            Mlp::new([6, 12, 10, 3], &device),
            &SparsityConfig::uniform(0.6),
            dst,
        )
        .unwrap();
        let mut optim = sgd();
        let mut prev = masks(&model);
        let (mut update_steps, mut update_calls, mut call) = (vec![], vec![], 0);
        run(model, &mut trainer, &mut optim, 30, |m, out, _| {
            let now = masks(m);
            match &out.update {
                Some(u) => {
                    update_steps.push(u.step);
                    update_calls.push(call);
                }
                None => assert_eq!(now, prev, "{method}: mask changed outside an update"),
            }
            prev = now;
            call += 1;
        });
        assert_eq!(update_steps, seen, "{method} from {begin}: steps seen");
        assert_eq!(update_calls, calls, "{method} from {begin}: batches");
    }
}

#[test]
fn drop_fraction_zero_changes_nothing() {
    let device = device();
    for method in [
        Method::Set,
        Method::Rigl,
        Method::Snfs,
        Method::StaticRezero,
    ] {
        let dst = DstConfig::new(method)
            .with_frequency(2)
            .with_drop_fraction(0.0);
        let (model, mut trainer) = SparseTrainer::init(
            Mlp::new([5, 9, 7, 3], &device),
            &SparsityConfig::uniform(0.5),
            dst,
        )
        .unwrap();
        let start = masks(&model);
        let mut optim = sgd();
        let model = run(model, &mut trainer, &mut optim, 8, |_, out, _| {
            if let Some(u) = &out.update {
                assert!(u.layers.iter().all(|l| l.reset == 0 && l.dropped == 0));
            }
        });
        assert_eq!(masks(&model), start, "{method}");
    }
}

#[test]
fn set_growth_is_reproducible_for_a_seed() {
    let device = device();
    let base = Mlp::new([6, 12, 10, 3], &device);
    let go = |seed: u64| {
        let model = base.clone();
        let sparsity = SparsityConfig::uniform(0.6).with_seed(seed);
        let dst = DstConfig::new(Method::Set).with_frequency(2);
        let (model, mut trainer) = SparseTrainer::init(model, &sparsity, dst).unwrap();
        let mut optim = sgd();
        masks(&run(model, &mut trainer, &mut optim, 7, |_, _, _| {}))
    };
    let a = go(3);
    assert_eq!(a, go(3));
    assert_ne!(a, go(4));
}

#[test]
fn snfs_average_follows_the_ema() {
    let device = device();
    let dst = DstConfig::new(Method::Snfs).with_frequency(1000);
    let (mut model, mut trainer) = SparseTrainer::init(
        Mlp::new([4, 6, 5, 3], &device),
        &SparsityConfig::uniform(0.5),
        dst,
    )
    .unwrap();
    assert_eq!(trainer.next_gradient_mode(), GradientMode::Dense);
    let mut optim = sgd();
    let mut expect: Option<Vec<f32>> = None;
    for i in 0..3 {
        let grads = model.grads(i, 8, &device);
        let g = floats_to_host(grads.get::<2>(model.fc2.weight.id).unwrap());
        expect = Some(match expect {
            None => g.iter().map(|g| 0.1 * g).collect(),
            Some(e) => e.iter().zip(&g).map(|(e, g)| 0.9 * e + 0.1 * g).collect(),
        });
        model = trainer.step(model, &mut optim, 0.05, grads).unwrap().model;
    }
    let avg = floats_to_host(state_of(&trainer, "fc2.weight"));
    for (a, e) in avg.iter().zip(expect.unwrap()) {
        assert!((a - e).abs() <= 1e-6 * (1.0 + e.abs()), "{a} vs {e}");
    }
}

/// SNFS with begin step 2: the update follows batch 1 (it sees step 2), drops the smallest
/// |w| of the weights after that batch's optimizer step and grows at the largest |EMA of the
/// dense gradient| outside the kept connections.
#[test]
fn snfs_grows_from_the_gradient_average_after_the_optimizer_step() {
    let device = device();
    let dst = DstConfig::new(Method::Snfs)
        .with_begin_step(2)
        .with_frequency(100)
        .with_drop_fraction(0.5)
        .with_drop_anneal(DropAnneal::Constant);
    let (mut model, mut trainer) = SparseTrainer::init(
        Mlp::new([4, 6, 5, 3], &device),
        &SparsityConfig::uniform(0.5),
        dst,
    )
    .unwrap();
    let mut optim = sgd();
    for i in 0..2 {
        let old = bools_to_host(model.mask("fc2.weight").unwrap());
        let grads = model.grads(i, 8, &device);
        let out = trainer.step(model, &mut optim, 0.05, grads).unwrap();
        model = out.model;
        assert_eq!(out.update.is_some(), i == 1, "batch {i}");
        if i == 0 {
            continue;
        }
        assert_eq!(out.update.unwrap().step, 2);
        let avg = floats_to_host(state_of(&trainer, "fc2.weight"));
        let w = floats_to_host(model.fc2.weight.base().reshape([-1]));
        let active: Vec<usize> = (0..old.len()).filter(|&j| old[j]).collect();
        let prune = crate::updater::drop_grow::n_prune(active.len(), 0.5);
        let top = |mut idx: Vec<usize>, score: &dyn Fn(usize) -> f32, k: usize| {
            idx.sort_by(|&a, &b| score(b).total_cmp(&score(a)).then(a.cmp(&b)));
            idx.truncate(k);
            idx
        };
        let kept = top(active.clone(), &|j| w[j].abs(), active.len() - prune);
        let others: Vec<usize> = (0..old.len()).filter(|j| !kept.contains(j)).collect();
        let grown = top(others, &|j| avg[j].abs(), prune);
        let mut expect = vec![false; old.len()];
        for j in kept.into_iter().chain(grown) {
            expect[j] = true;
        }
        assert_eq!(bools_to_host(model.mask("fc2.weight").unwrap()), expect);
    }
}

#[test]
fn snip_keeps_top_connection_sensitivity_once() {
    let device = device();
    let sparsity = SparsityConfig::uniform(0.75);
    let (model, mut trainer) = SparseTrainer::init(
        Mlp::new([6, 8, 8, 3], &device),
        &sparsity,
        DstConfig::new(Method::Snip),
    )
    .unwrap();
    assert_eq!(nnz(&model), [48, 64, 24], "masks start all ones");
    let grads = model.grads(0, 8, &device);
    let g = floats_to_host(grads.get::<2>(model.fc2.weight.id).unwrap());
    let w = floats_to_host(model.fc2.weight.base());
    let mut optim = sgd();
    let out = trainer.step(model, &mut optim, 0.05, grads).unwrap();
    assert!(!out.trained);
    assert_eq!(nnz(&out.model), [12, 16, 6]);
    let mask = bools_to_host(out.model.mask("fc2.weight").unwrap());
    let score: Vec<f32> = g.iter().zip(&w).map(|(g, w)| (g * w).abs()).collect();
    let kept_min = score
        .iter()
        .zip(&mask)
        .filter(|(_, m)| **m)
        .map(|(s, _)| *s)
        .fold(f32::INFINITY, f32::min);
    let dropped_max = score
        .iter()
        .zip(&mask)
        .filter(|(_, m)| !**m)
        .map(|(s, _)| *s)
        .fold(0.0, f32::max);
    assert!(kept_min >= dropped_max);
    // Afterwards the mask is fixed.
    let start = masks(&out.model);
    let model = run(out.model, &mut trainer, &mut optim, 5, |_, out, _| {
        assert!(out.update.is_none())
    });
    assert_eq!(masks(&model), start);
}

#[test]
fn gradual_pruning_hits_its_schedule() {
    let device = device();
    let sparsity = SparsityConfig::uniform(0.9);
    let dst = DstConfig::new(Method::Prune)
        .with_begin_step(2)
        .with_end_step(10)
        .with_frequency(2);
    let (model, mut trainer) =
        SparseTrainer::init(Mlp::new([10, 20, 10, 4], &device), &sparsity, dst).unwrap();
    let plan = trainer.plan().unwrap().clone();
    let mut optim = sgd();
    let (mut seen, mut calls, mut call) = (vec![], vec![], 0);
    let model = run(model, &mut trainer, &mut optim, 14, |m, out, tr| {
        if let Some(u) = &out.update {
            let ctx = UpdateContext {
                step: u.step,
                begin_step: 2,
                end_step: 10,
                ..UpdateContext::default()
            };
            seen.push(u.step);
            calls.push(call);
            for ((l, p), th) in nnz(m).iter().zip(&plan.layers).zip(&u.layers) {
                let k = crate::updater::GradualPruning::kept_at(p.numel(), p.sparsity, &ctx);
                assert_eq!(*l, k, "step {}: {}", u.step, p.path);
                assert!(floats_to_host(state_of(tr, &th.path))[0] > 0.0);
            }
        }
        call += 1;
    });
    // model_pruning: last_update starts at 0 and the update sees the step after the
    // optimizer's increment, so the first pruning is at step 2, after batch 1.
    assert_eq!(seen, [2, 4, 6, 8, 10]);
    assert_eq!(calls, [1, 3, 5, 7, 9]);
    // round(f32(N) * (1 - 0.9)) is the plan's N - floor(0.9 N) for these layers.
    assert_eq!(
        nnz(&model),
        plan.layers.iter().map(|l| l.n_active).collect::<Vec<_>>()
    );
}

#[test]
fn grow_init_names_parse_as_the_reference() {
    for (name, expect) in [
        ("zeros", GrowInit::Zeros),
        ("random_normal", GrowInit::RandomNormal(1.0)),
        ("random_normal_2", GrowInit::RandomNormal(2.0)),
        ("random_normal_.5", GrowInit::RandomNormal(0.5)),
        ("random_uniform_10", GrowInit::RandomUniform(10.0)),
        ("initial_dist_4", GrowInit::InitialDist(4.0)),
        ("grad_scale", GrowInit::GradScale(1.0)),
        ("grad_sign_3", GrowInit::GradSign(3.0)),
    ] {
        assert_eq!(name.parse::<GrowInit>().unwrap(), expect, "{name}");
        assert_eq!(expect.to_string().parse::<GrowInit>().unwrap(), expect);
    }
    // The reference rejects these too (`initial_value` is in its flag help, not its code).
    for bad in [
        "initial_value",
        "ones",
        "random_normal_",
        "random_normalx",
        "grad",
    ] {
        let e = bad.parse::<GrowInit>().unwrap_err();
        assert!(e.contains("unknown grow init"), "{bad}: {e}");
    }
    let rigl = DstConfig::new(Method::Rigl).with_end_step(100);
    let set = DstConfig::new(Method::Set).with_end_step(100);
    for (bad, needle) in [
        (
            set.clone().with_grow_init(GrowInit::GradSign(1.0)),
            "RigL's dense gradient",
        ),
        (
            rigl.clone().with_grow_init(GrowInit::RandomNormal(0.0)),
            "divisor",
        ),
        (set.clone().with_rigl_acc_scale(0.5), "rigl_acc_scale"),
        (rigl.clone().with_threshold_decay(1.0), "threshold decay"),
        (rigl.clone().with_weight_decay(-1.0), "weight decay"),
        (
            rigl.clone()
                .with_end_step(-1)
                .with_drop_anneal(DropAnneal::ExponentialK(1.0)),
            "needs an end step",
        ),
    ] {
        let e = bad.validate().unwrap_err().to_string();
        assert!(e.contains(needle), "{e}");
    }
}

/// One layer after a RigL update: its new connections, weights, initial weights and dense
/// gradient.
type Grown = (Vec<bool>, Vec<f32>, Vec<f32>, Vec<f32>);

/// One RigL update at step 0 (it trains nothing, so the stored weights are the initial
/// ones) with `grow`, layer by layer.
fn rigl_growth(grow: GrowInit) -> Vec<Grown> {
    let device = device();
    let dst = DstConfig::new(Method::Rigl)
        .with_end_step(100)
        .with_drop_fraction(0.5)
        .with_drop_anneal(DropAnneal::Constant)
        .with_grow_init(grow);
    let (model, mut trainer) = SparseTrainer::init(
        Mlp::new([6, 12, 10, 3], &device),
        &SparsityConfig::uniform(0.6),
        dst,
    )
    .unwrap();
    let before = masks(&model);
    let layers = model.sparse_layers();
    let initial = read_weights(&model, layers.iter().map(|l| l.path.as_str()));
    let grads = model.grads(0, 8, &device);
    let dense: Vec<Vec<f32>> = [&model.fc1, &model.fc2, &model.fc3]
        .iter()
        .map(|l| floats_to_host(grads.get::<2>(l.weight.id).unwrap().reshape([-1])))
        .collect();
    let out = trainer.step(model, &mut sgd(), 0.05, grads).unwrap();
    assert!(out.update.is_some() && !out.trained);
    let after = read_weights(&out.model, layers.iter().map(|l| l.path.as_str()));
    masks(&out.model)
        .into_iter()
        .zip(before)
        .zip(layers.iter().zip(dense))
        .map(|((now, old), (l, g))| {
            let new: Vec<bool> = now.iter().zip(&old).map(|(n, o)| *n && !*o).collect();
            (new, after[&l.path].clone(), initial[&l.path].clone(), g)
        })
        .collect()
}

#[test]
fn grow_init_values_at_new_connections() {
    let total_new = |layers: &[Grown]| {
        layers
            .iter()
            .map(|l| l.0.iter().filter(|&&b| b).count())
            .sum::<usize>()
    };
    // grad_scale_2 and grad_sign_4: the dense gradient / 2, its sign / 4; elsewhere the
    // weights are untouched.
    let layers = rigl_growth(GrowInit::GradScale(2.0));
    assert!(total_new(&layers) > 0);
    for (new, w, w0, g) in &layers {
        for i in 0..new.len() {
            let expect = if new[i] { g[i] / 2.0 } else { w0[i] };
            assert_eq!(w[i], expect, "grad_scale at {i}");
        }
    }
    for (new, w, _, g) in &rigl_growth(GrowInit::GradSign(4.0)) {
        for i in (0..new.len()).filter(|&i| new[i]) {
            let sign = if g[i] == 0.0 { 0.0 } else { g[i].signum() };
            assert_eq!(w[i], sign * 0.25, "grad_sign at {i}");
        }
    }
    // random_normal_2: N(0, 1) samples of the layer's stream times std(W) / 2, with the
    // population deviation of all its stored weights.
    for ((new, w, w0, _), path) in rigl_growth(GrowInit::RandomNormal(2.0)).iter().zip([
        "fc1.weight",
        "fc2.weight",
        "fc3.weight",
    ]) {
        let n = w0.len() as f64;
        let mean = w0.iter().map(|&v| v as f64).sum::<f64>() / n;
        let std = (w0.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
        let z = normal_samples(0, path, 0, w0.len(), 1.0);
        for i in (0..new.len()).filter(|&i| new[i]) {
            let expect = z[i] as f64 * std / 2.0;
            assert!(
                (w[i] as f64 - expect).abs() <= 1e-5 * (1.0 + expect.abs()),
                "{path} {i}"
            );
        }
    }
    // random_uniform: U(-mean|W|, mean|W|).
    for (new, w, w0, _) in &rigl_growth(GrowInit::RandomUniform(1.0)) {
        let m = w0.iter().map(|v| v.abs()).sum::<f32>() / w0.len() as f32;
        for i in (0..new.len()).filter(|&i| new[i]) {
            assert!(
                w[i].abs() <= m * (1.0 + 1e-5) && w[i] != 0.0,
                "{} vs {m}",
                w[i]
            );
        }
    }
    // initial_dist_2: distinct entries of a permutation of the initial weights, halved.
    for (new, w, w0, _) in &rigl_growth(GrowInit::InitialDist(2.0)) {
        let mut pool: Vec<u32> = w0.iter().map(|v| (v / 2.0).to_bits()).collect();
        for i in (0..new.len()).filter(|&i| new[i]) {
            let at = pool.iter().position(|&b| b == w[i].to_bits());
            assert!(at.is_some(), "{} is not an initial weight / 2", w[i]);
            pool.swap_remove(at.unwrap());
        }
    }
    // zeros.
    for (new, w, _, _) in &rigl_growth(GrowInit::Zeros) {
        assert!((0..new.len()).all(|i| !new[i] || w[i] == 0.0));
    }
}

#[test]
fn initial_weights_are_kept_and_checkpointed_for_initial_dist() {
    let device = device();
    let dst = DstConfig::new(Method::Set).with_grow_init(GrowInit::InitialDist(1.0));
    let model = Mlp::new([6, 12, 10, 3], &device);
    let (model, trainer) = SparseTrainer::init(model, &SparsityConfig::uniform(0.6), dst).unwrap();
    let initial = floats_to_host(trainer.initial_weights()["fc2.weight"].clone());
    assert_eq!(
        initial,
        floats_to_host(model.fc2.weight.base().reshape([-1]))
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.ckpt");
    let optim = sgd();
    crate::save_checkpoint(&path, &model, &optim, &trainer, &HashMap::new()).unwrap();
    let fresh = Mlp::new([6, 12, 10, 3], &device);
    let r = crate::load_checkpoint(&path, fresh, sgd(), &device).unwrap();
    assert_eq!(
        floats_to_host(r.trainer.initial_weights()["fc2.weight"].clone()),
        initial
    );
    // Without initial_dist nothing is kept.
    let (_, plain) = SparseTrainer::init(
        Mlp::new([6, 12, 10, 3], &device),
        &SparsityConfig::uniform(0.6),
        DstConfig::new(Method::Set),
    )
    .unwrap();
    assert!(plain.initial_weights().is_empty());
}

#[test]
fn rigl_acc_scale_starts_new_slots_at_a_multiple_of_the_gradient() {
    let device = device();
    let dst = DstConfig::new(Method::Rigl)
        .with_begin_step(3)
        .with_frequency(100)
        .with_end_step(100)
        .with_drop_fraction(0.5)
        .with_drop_anneal(DropAnneal::Constant)
        .with_rigl_acc_scale(0.5);
    let (mut model, mut trainer) = SparseTrainer::init(
        Mlp::new([6, 12, 10, 3], &device),
        &SparsityConfig::uniform(0.6),
        dst,
    )
    .unwrap();
    let mut optim = crate::optim::SparseSgdConfig::new()
        .with_momentum(Some(MomentumConfig::new().with_dampening(0.0)))
        .init();
    let mut checked = 0;
    for i in 0..5 {
        let grads = model.grads(i, 8, &device);
        let update = trainer.is_update_step();
        let g = floats_to_host(grads.get::<2>(model.fc2.weight.id).unwrap().reshape([-1]));
        let v_before = optim.velocity(model.fc2.weight.id).map(floats_to_host);
        let m_before = bools_to_host(model.mask("fc2.weight").unwrap());
        let out = trainer.step(model, &mut optim, 0.05, grads).unwrap();
        model = out.model;
        if !update {
            continue;
        }
        let v = floats_to_host(optim.velocity(model.fc2.weight.id).unwrap());
        let v_before = v_before.unwrap();
        let m = bools_to_host(model.mask("fc2.weight").unwrap());
        for j in 0..m.len() {
            if m[j] && !m_before[j] {
                assert_eq!(v[j], g[j] * 0.5, "new connection {j}");
                checked += 1;
            } else {
                assert_eq!(v[j].to_bits(), v_before[j].to_bits(), "elsewhere {j}");
            }
        }
    }
    assert!(checked > 0, "the test needs new connections");
}

#[test]
fn snip_score_includes_the_l2_gradient() {
    let device = device();
    let sparsity = SparsityConfig::uniform(0.75);
    let base = Mlp::new([6, 8, 8, 3], &device);
    let lambda = 2.0f32;
    let (model, mut trainer) = SparseTrainer::init(
        base,
        &sparsity,
        DstConfig::new(Method::Snip).with_weight_decay(lambda as f64),
    )
    .unwrap();
    let grads = model.grads(0, 8, &device);
    let g = floats_to_host(grads.get::<2>(model.fc2.weight.id).unwrap().reshape([-1]));
    let w = floats_to_host(model.fc2.weight.base().reshape([-1]));
    let out = trainer.step(model, &mut sgd(), 0.05, grads).unwrap();
    let mask = bools_to_host(out.model.mask("fc2.weight").unwrap());
    // The kept connections are the 16 of largest |(g + lambda w) w| (ties to lower index).
    let score: Vec<f32> = g
        .iter()
        .zip(&w)
        .map(|(g, w)| ((g + w * lambda) * w).abs())
        .collect();
    let mut order: Vec<usize> = (0..score.len()).collect();
    order.sort_by(|&a, &b| score[b].total_cmp(&score[a]).then(a.cmp(&b)));
    let mut expect = vec![false; score.len()];
    for &i in &order[..16] {
        expect[i] = true;
    }
    assert_eq!(mask, expect);
    // Without the L2 term the choice differs for this lambda.
    let plain: Vec<f32> = g.iter().zip(&w).map(|(g, w)| (g * w).abs()).collect();
    let mut order: Vec<usize> = (0..plain.len()).collect();
    order.sort_by(|&a, &b| plain[b].total_cmp(&plain[a]).then(a.cmp(&b)));
    let mut without = vec![false; plain.len()];
    for &i in &order[..16] {
        without[i] = true;
    }
    assert_ne!(
        mask, without,
        "lambda must change the choice for the test to bite"
    );
}

fn check_new_connections_reset(optim_for: fn() -> ModuleOptimizer, name: &str) {
    let device = device();
    let dst = DstConfig::new(Method::Rigl)
        .with_frequency(3)
        .with_drop_fraction(0.5)
        .with_drop_anneal(DropAnneal::Constant);
    let (mut model, mut trainer) = SparseTrainer::init(
        Mlp::new([6, 12, 10, 3], &device),
        &SparsityConfig::uniform(0.6),
        dst,
    )
    .unwrap();
    let mut optim = optim_for();
    let mut checked = 0;
    let mut total_new = 0;
    for i in 0..10 {
        let grads = model.grads(i, 8, &device);
        let update_now = trainer.is_update_step();
        let state_before = optim_state(&optim);
        let masks_before = masks(&model);
        let out = trainer.step(model, &mut optim, 0.05, grads).unwrap();
        model = out.model;
        if !update_now || state_before.is_empty() {
            continue;
        }
        let state_after = optim_state(&optim);
        let layers = model.sparse_layers();
        let weights = read_weights(&model, layers.iter().map(|l| l.path.as_str()));
        for (li, l) in layers.iter().enumerate() {
            let new_mask = bools_to_host(l.mask.clone().unwrap());
            let new: Vec<bool> = new_mask
                .iter()
                .zip(&masks_before[li])
                .map(|(n, o)| *n && !*o)
                .collect();
            // A layer may regrow every dropped connection in place; the test needs new
            // connections somewhere (checked below), not in every layer.
            total_new += new.iter().filter(|&&b| b).count();
            let w = &weights[&l.path];
            assert!(
                w.iter().zip(&new).all(|(w, n)| !*n || *w == 0.0),
                "{name}: new weights start at 0"
            );
            for ((id, slot), after) in &state_after {
                if *id != l.id.val() || after.len() != new.len() {
                    continue;
                }
                let before = &state_before[&(*id, slot.clone())];
                for i in 0..new.len() {
                    if new[i] {
                        assert_eq!(after[i], 0.0, "{name}: slot {slot} at a new connection");
                    } else {
                        assert_eq!(
                            after[i].to_bits(),
                            before[i].to_bits(),
                            "{name}: slot {slot} elsewhere"
                        );
                    }
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 0, "{name}: no optimizer slot was checked");
    assert!(total_new > 0, "{name}: the test needs new connections");
}

#[test]
fn new_connections_zero_weight_and_optimizer_state_sgd_momentum() {
    check_new_connections_reset(sgd, "sgd nesterov");
    check_new_connections_reset(
        || {
            SgdConfig::new()
                .with_momentum(Some(MomentumConfig::new()))
                .init()
        },
        "sgd momentum",
    );
}

#[test]
fn new_connections_zero_weight_and_optimizer_state_adam() {
    check_new_connections_reset(|| AdamConfig::new().init(), "adam");
    check_new_connections_reset(|| AdamWConfig::new().init(), "adamw");
}

/// A `SlotOptimizer` resets its slots on the device; Burn's optimizer through its record.
/// Both runs must be the same bit for bit through every update, and every slot is zero at
/// every new connection.
fn check_slot_optimizer<R: crate::optim::SlotRule>(
    burn_optim: fn() -> ModuleOptimizer,
    ours: fn() -> crate::optim::SlotOptimizer<R>,
) {
    let device = device();
    for method in [
        Method::Rigl,
        Method::Set,
        Method::Snfs,
        Method::StaticRezero,
    ] {
        let name = format!("{} {method}", R::NAME);
        let dst = DstConfig::new(method)
            .with_frequency(3)
            .with_drop_fraction(0.5)
            .with_drop_anneal(DropAnneal::Constant);
        let sparsity = SparsityConfig::uniform(0.6);
        let net = Mlp::new([6, 12, 10, 3], &device);
        let (mut a, mut ta) = SparseTrainer::init(net.clone(), &sparsity, dst.clone()).unwrap();
        let (mut b, mut tb) = SparseTrainer::init(net, &sparsity, dst).unwrap();
        let (mut burn, mut ours) = (burn_optim(), ours());
        let mut new_seen = 0;
        for i in 0..12 {
            let ga = a.grads(i, 8, &device);
            a = ta.step(a, &mut burn, 0.05, ga).unwrap().model;
            let before = masks(&b);
            let gb = b.grads(i, 8, &device);
            let out = tb.step(b, &mut ours, 0.05, gb).unwrap();
            b = out.model;
            assert_eq!(masks(&a), masks(&b), "{name}: masks at call {i}");
            let paths: Vec<String> = b.sparse_layers().into_iter().map(|l| l.path).collect();
            let wa = read_weights(&a, paths.iter().map(String::as_str));
            let wb = read_weights(&b, paths.iter().map(String::as_str));
            for p in &paths {
                let bits = |w: &Vec<f32>| w.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&wa[p]), bits(&wb[p]), "{name}: {p} at call {i}");
            }
            if method == Method::StaticRezero || out.update.is_none() {
                continue;
            }
            for (l, old) in b.sparse_layers().into_iter().zip(before) {
                let Some(state) = ours.state(l.id) else {
                    continue;
                };
                let m = bools_to_host(l.mask.unwrap());
                for slot in &state.slots {
                    let v = floats_to_host(slot.clone());
                    for ((v, m), o) in v.iter().zip(&m).zip(&old) {
                        if *m && !*o {
                            assert_eq!(*v, 0.0, "{name}: a slot at a new connection");
                            new_seen += 1;
                        }
                    }
                }
            }
        }
        if method != Method::StaticRezero {
            assert!(new_seen > 0, "{name}: the test needs new connections");
        }
    }
}

#[test]
fn slot_optimizers_run_exactly_like_burn_optimizers() {
    use crate::optim::{SparseAdamConfig, SparseAdamWConfig, SparseSgdConfig};
    fn momentum() -> MomentumConfig {
        MomentumConfig::new()
            .with_nesterov(true)
            .with_dampening(0.0)
    }
    check_slot_optimizer(
        || SgdConfig::new().with_momentum(Some(momentum())).init(),
        || {
            SparseSgdConfig::new()
                .with_momentum(Some(momentum()))
                .init()
        },
    );
    check_slot_optimizer(
        || AdamConfig::new().with_amsgrad(true).init(),
        || SparseAdamConfig::new().with_amsgrad(true).init(),
    );
    check_slot_optimizer(
        || AdamWConfig::new().with_weight_decay(1e-2).init(),
        || SparseAdamWConfig::new().with_weight_decay(1e-2).init(),
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]
    #[test]
    fn nnz_is_conserved_through_every_update(
        dims in (2usize..9, 2usize..12, 2usize..10, 2usize..5),
        sparsity in 0.0f64..0.95,
        drop in 0.0f64..1.0,
        method in prop::sample::select(vec![Method::Set, Method::Snfs, Method::Rigl, Method::StaticRezero, Method::Scratch]),
        erk in any::<bool>(),
        seed in 0u64..1000,
    ) {
        let device = device();
        let model = Mlp::new([dims.0, dims.1, dims.2, dims.3], &device);
        let sparsity = if erk { SparsityConfig::erk(sparsity) } else { SparsityConfig::uniform(sparsity) }.with_seed(seed);
        let dst = DstConfig::new(method).with_frequency(2).with_drop_fraction(drop).with_drop_anneal(DropAnneal::Constant);
        let (model, mut trainer) = SparseTrainer::init(model, &sparsity, dst).unwrap();
        let target: Vec<usize> = trainer.plan().unwrap().layers.iter().map(|l| l.n_active).collect();
        prop_assert_eq!(nnz(&model), target.clone());
        let mut optim = sgd();
        let mut ok = true;
        run(model, &mut trainer, &mut optim, 7, |m, _, _| ok &= nnz(m) == target);
        prop_assert!(ok);
    }
}

/// `fc2`'s stored weights with `value` written at the flat positions of `at` (through a
/// module mapper, which keeps the attached mask).
fn poisoned(model: Mlp, at: &[usize], value: f32) -> Mlp {
    struct Poison<'a>(ParamId, &'a [usize], f32);
    impl burn::module::ModuleMapper for Poison<'_> {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            if param.id != self.0 {
                return param;
            }
            let (id, w, mapper) = param.consume();
            let context = crate::param_context::ParamContext::capture(&w);
            let (shape, device) = (w.shape(), w.device());
            let mut v = floats_to_host(w.inner().reshape([-1]));
            for &i in self.1 {
                v[i] = self.2;
            }
            let n = v.len();
            let poisoned = Tensor::<1>::from_data(TensorData::new(v, [n]), &device.inner());
            Param::from_mapped_value(id, context.restore(poisoned.reshape(shape), id), mapper)
        }
    }
    let id = model.fc2.weight.id;
    model.map(&mut Poison(id, at, value))
}

/// Runs `model` until the trainer's next step is a mask update.
fn until_update(model: Mlp, trainer: &mut SparseTrainer, optim: &mut ModuleOptimizer) -> Mlp {
    let mut model = run(model, trainer, optim, 1, |_, _, _| {});
    while !trainer.is_update_step() {
        model = run(model, trainer, optim, 1, |_, _, _| {});
    }
    model
}

#[test]
fn non_finite_weights_and_gradients_are_counted_and_a_diverged_layer_is_an_error() {
    let d = device();
    let dims = [6, 12, 10, 3];
    let sparsity = SparsityConfig::uniform(0.5).with_seed(2);
    let init = |method| {
        let dst = DstConfig::new(method).with_frequency(2).with_end_step(20);
        SparseTrainer::init(Mlp::new(dims, &d), &sparsity, dst).unwrap()
    };
    let per_layer = |stats: &UpdateStats| -> Vec<(usize, usize)> {
        stats
            .layers
            .iter()
            .map(|l| (l.non_finite_weights, l.non_finite_gradients))
            .collect()
    };
    let inactive = |model: &Mlp| -> Vec<usize> {
        let m = &masks(model)[1];
        (0..120).filter(|&i| !m[i]).take(3).collect()
    };

    // SET (masked forward): two NaN and one infinite stored weight at inactive positions of
    // fc2 do not reach the forward pass, and are counted.
    let (model, mut trainer) = init(Method::Set);
    let mut optim = sgd();
    let model = until_update(model, &mut trainer, &mut optim);
    let at = inactive(&model);
    let model = poisoned(poisoned(model, &at[..2], f32::NAN), &at[2..], f32::INFINITY);
    let out = floats_to_host(model.forward(Tensor::ones([2, 6], &d)).reshape([-1]));
    assert!(out.iter().all(|v| v.is_finite()), "{out:?}");
    let grads = model.grads(7, 8, &d);
    let stats = trainer
        .step(model, &mut optim, 0.05, grads)
        .unwrap()
        .update
        .unwrap();
    assert_eq!(per_layer(&stats), [(0, 0), (3, 0), (0, 0)]);
    assert_eq!(stats.non_finite(), (3, 0));
    let json = serde_json::to_string(&stats).unwrap();
    assert!(json.contains("\"non_finite_weights\":3"), "{json}");
    // Older updates.json files without the counts still read.
    let old = json.replace(",\"non_finite_weights\":0,\"non_finite_gradients\":0", "");
    assert!(!old.contains("\"non_finite_weights\":0"));
    let back: UpdateStats = serde_json::from_str(&old).unwrap();
    assert_eq!(back.layers[0].non_finite_weights, 0);

    // RigL: a NaN entry of fc2's dense gradient at an inactive position is counted.
    let (model, mut trainer) = init(Method::Rigl);
    let mut optim = sgd();
    let model = until_update(model, &mut trainer, &mut optim);
    let at = inactive(&model);
    let mut grads = model.grads(7, 8, &d);
    let g = grads.remove::<2>(model.fc2.weight.id).unwrap();
    let mut v = floats_to_host(g.clone().reshape([-1]));
    v[at[0]] = f32::NAN;
    let g = Tensor::<1>::from_data(TensorData::new(v, [120]), &g.device()).reshape([12, 10]);
    grads.register::<2>(model.fc2.weight.id, g);
    let out = trainer.step(model, &mut optim, 0.05, grads).unwrap();
    assert_eq!(per_layer(&out.update.unwrap()), [(0, 0), (0, 1), (0, 0)]);

    // All of fc2 NaN: its 60 active connections cannot be chosen among finite weights.
    let model = until_update(out.model, &mut trainer, &mut optim);
    let model = poisoned(model, &(0..120).collect::<Vec<_>>(), f32::NAN);
    let grads = model.grads(8, 8, &d);
    let err = trainer.step(model, &mut optim, 0.05, grads).err().unwrap();
    assert!(
        matches!(
            &err,
            SparsityError::NonFiniteWeights { path, non_finite: 120, finite: 0, needed: 60, .. }
                if path == "fc2.weight"
        ),
        "{err}"
    );
    assert!(err.to_string().contains("the run has diverged"), "{err}");
}

/// The flat stored weights of the kernel at `path` of the test MLP.
fn kernel_at(model: &Mlp, path: &str) -> Vec<f32> {
    let layer = match path {
        "fc1.weight" => &model.fc1,
        "fc2.weight" => &model.fc2,
        _ => &model.fc3,
    };
    floats_to_host(layer.weight.val().reshape([-1]))
}

/// The masks of the test MLP's sparse layers by path.
fn masks_by_path(model: &Mlp) -> Vec<(String, Vec<bool>)> {
    model
        .sparse_layers()
        .into_iter()
        .map(|l| (l.path, bools_to_host(l.mask.unwrap())))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 160, failure_persistence: None, ..ProptestConfig::default() })]

    /// For every method, option and optimizer, after every step: each masked layer holds the
    /// plan's count (SNIP: every weight before its shot; gradual pruning: never below its final
    /// count, the final count after its end step); an update reports the active and dropped
    /// counts its masks show and (but for pruning, whose pruned weights may come back)
    /// switches on as many previously inactive positions as it reports, all at weight zero;
    /// nothing changes outside update steps.
    #[test]
    fn invariants_hold_after_every_step(
        method in prop::sample::select(Method::ALL.to_vec()),
        optimizer in 0usize..4,
        sparsity in 0.3f64..0.95,
        erk in any::<bool>(),
        first_dense in any::<bool>(),
        last in prop::option::of(0.0f64..0.9),
        custom in prop::option::of(0.0f64..0.95),
        allow_regrow in any::<bool>(),
        train_on_update_steps in any::<bool>(),
        anneal in prop::sample::select(vec![DropAnneal::Constant, DropAnneal::Cosine, DropAnneal::ExponentialK(0.5)]),
        drop in 0.05f64..0.9,
        seed in 0u64..1000,
    ) {
        let d = device();
        let mut config = if erk { SparsityConfig::erk(sparsity) } else { SparsityConfig::uniform(sparsity) }
            .with_seed(seed)
            .with_last_layer_sparsity(last);
        if first_dense {
            config = config.first_layer_dense();
        }
        if let Some(c) = custom {
            config = config.with_custom_sparsity("fc2.weight", c);
        }
        let dst = DstConfig::new(method)
            .with_frequency(2)
            .with_end_step(10)
            .with_drop_fraction(drop)
            .with_drop_anneal(anneal)
            .with_allow_regrow(allow_regrow)
            .with_train_on_update_steps(train_on_update_steps);
        let Ok((model, mut trainer)) = SparseTrainer::init(Mlp::new([5, 9, 7, 3], &d), &config, dst) else {
            // Infeasible ERK plans and refused combinations are typed errors, tested elsewhere.
            return Ok(());
        };
        let plan: HashMap<String, (usize, usize, f64)> = trainer
            .plan()
            .map(|p| p.layers.iter().filter(|l| l.masked).map(|l| (l.path.clone(), (l.n_active, l.numel(), l.sparsity))).collect())
            .unwrap_or_default();
        macro_rules! check {
            ($optim:expr) => {{
                let mut optim = $optim;
                let mut model = model;
                let mut before = masks_by_path(&model);
                let mut updates = 0u64;
                for i in 0..14 {
                    let g = model.grads(i, 6, &d);
                    let out = trainer.step(model, &mut optim, 0.05, g).unwrap();
                    model = out.model;
                    let now = masks_by_path(&model);
                    if let Some(stats) = &out.update {
                        updates += 1;
                        for ((path, b), (_, a)) in before.iter().zip(&now) {
                            let new: Vec<usize> = (0..a.len()).filter(|&k| a[k] && !b[k]).collect();
                            let layer = stats.layers.iter().find(|l| &l.path == path).unwrap();
                            prop_assert_eq!(layer.active, a.iter().filter(|&&x| x).count(), "{} {} active at call {}: {:?}", method, path, i, stats);
                            prop_assert_eq!(layer.dropped, (0..a.len()).filter(|&k| b[k] && !a[k]).count(), "{} {} dropped at call {}: {:?}", method, path, i, stats);
                            // Gradual and straight-through pruning: a pruned weight whose magnitude
                            // reaches the kept ones again comes back with its weight.
                            if matches!(method, Method::Prune | Method::Ste) {
                                continue;
                            }
                            if method != Method::StaticRezero {
                                prop_assert_eq!(layer.reset, new.len(), "{} {} reset at call {}", method, path, i);
                            }
                            let w = kernel_at(&model, path);
                            prop_assert!(new.iter().all(|&k| w[k] == 0.0), "{}: a new connection of {} is not zero", method, path);
                        }
                    } else {
                        prop_assert_eq!(&now, &before, "{}: masks changed without an update", method);
                    }
                    for (path, m) in &now {
                        let count = m.iter().filter(|&&x| x).count();
                        let (planned, numel, s) = plan[path];
                        match method {
                            Method::Prune | Method::Ste => {
                                let last = ((numel as f32 * (1.0 - s as f32)).round_ties_even() as usize).min(numel);
                                prop_assert!(count >= last.min(planned), "{} {}: {} active, final {}", method, path, count, last);
                                if trainer.step_count() > 12 {
                                    prop_assert_eq!(count, last, "prune {} after its end", path);
                                }
                            }
                            Method::Snip if updates == 0 => prop_assert_eq!(count, numel),
                            _ => prop_assert_eq!(count, planned, "{} {}", method, path),
                        }
                    }
                    before = now;
                }
            }};
        }
        match optimizer {
            0 => check!(sgd()),
            1 => check!(crate::optim::SparseSgdConfig::new().with_momentum(Some(MomentumConfig::new())).init()),
            2 => check!(crate::optim::SparseAdamConfig::new().init()),
            _ => check!(crate::optim::SparseAdamWConfig::new().init()),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

    /// For every method and structure, after every step: every structured layer's mask keeps
    /// its structure in its output-major view (N:M: `n` of every `m` consecutive inputs of an
    /// output; constant fan-in: the same count per output); SNIP is dense before its shot and
    /// gradual pruning holds the same count in every group, ramping from dense to `k`; new
    /// connections start at zero weight.
    #[test]
    fn structure_holds_after_every_update(
        method in prop::sample::select(Method::ALL.to_vec()),
        structure in prop::sample::select(vec![
            Structure::NM { n: 2, m: 4 },
            Structure::NM { n: 1, m: 4 },
            Structure::NM { n: 3, m: 4 },
            Structure::NM { n: 1, m: 2 },
            Structure::ConstantFanIn,
        ]),
        fan_in_sparsity in 0.3f64..0.95,
        erk in any::<bool>(),
        last_dense in any::<bool>(),
        allow_regrow in any::<bool>(),
        drop in 0.05f64..0.9,
        seed in 0u64..1000,
    ) {
        let d = device();
        let sparsity = structure.implied_sparsity().unwrap_or(fan_in_sparsity);
        let mut config = if erk { SparsityConfig::erk(sparsity) } else { SparsityConfig::uniform(sparsity) }
            .with_structure(structure)
            .with_seed(seed);
        if last_dense {
            config = config.last_layer_dense();
        }
        let dst = DstConfig::new(method)
            .with_frequency(2)
            .with_end_step(10)
            .with_drop_fraction(drop)
            .with_drop_anneal(DropAnneal::Constant)
            .with_allow_regrow(allow_regrow);
        let (model, mut trainer) = SparseTrainer::init(Mlp::new([8, 12, 8, 4], &d), &config, dst).unwrap();
        let Some(plan) = trainer.plan().cloned() else {
            // Dense training: nothing is masked.
            prop_assert_eq!(method, Method::Dense);
            return Ok(());
        };
        let mut optim = sgd();
        let mut model = model;
        let mut before = masks_by_path(&model);
        let mut updates = 0;
        let mut checked = 0;
        for i in 0..14 {
            let g = model.grads(i, 6, &d);
            let out = trainer.step(model, &mut optim, 0.05, g).unwrap();
            model = out.model;
            updates += out.update.is_some() as usize;
            let now = masks_by_path(&model);
            for ((path, m), (_, b)) in now.iter().zip(&before) {
                let l = plan.layer(path).unwrap();
                let Some(groups) = &l.groups else {
                    continue;
                };
                checked += 1;
                let view = bools_to_host(groups.to_view(Tensor::<1, Bool>::from_data(
                    TensorData::new(m.clone(), [m.len()]),
                    &d,
                )));
                let per_group: Vec<usize> = view.chunks(groups.len).map(|c| c.iter().filter(|&&x| x).count()).collect();
                match method {
                    Method::Snip if updates == 0 => prop_assert!(m.iter().all(|&x| x)),
                    Method::Prune | Method::Ste => {
                        prop_assert!(per_group.iter().all(|&c| c == per_group[0] && c >= groups.k), "{} {} {}: {:?}", method, structure, path, per_group);
                        if trainer.step_count() > 12 {
                            prop_assert_eq!(per_group[0], groups.k);
                        }
                    }
                    _ => prop_assert_eq!(groups.first_violation(&view), None, "{} {} {} at call {}", method, structure, path, i),
                }
                if !matches!(method, Method::Prune | Method::Ste) {
                    let w = kernel_at(&model, path);
                    prop_assert!((0..m.len()).filter(|&k| m[k] && !b[k]).all(|k| w[k] == 0.0), "{}: a new connection of {} is not zero", method, path);
                }
            }
            before = now;
        }
        prop_assert!(checked > 0, "no structured layer was checked");
    }
}

#[test]
fn structured_rigl_changes_connections_and_keeps_two_of_four() {
    // Drop and grow must actually move connections inside the structure, not freeze it.
    let d = device();
    let config = SparsityConfig::n_m(2, 4).last_layer_dense().with_seed(5);
    let dst = DstConfig::new(Method::Rigl)
        .with_frequency(2)
        .with_end_step(100)
        .with_drop_fraction(0.5)
        .with_drop_anneal(DropAnneal::Constant);
    let (model, mut trainer) =
        SparseTrainer::init(Mlp::new([8, 12, 8, 4], &d), &config, dst).unwrap();
    let plan = trainer.plan().unwrap().clone();
    let start = masks_by_path(&model);
    let mut optim = sgd();
    let mut changed = 0;
    let end = run(model, &mut trainer, &mut optim, 9, |m, out, _| {
        if let Some(stats) = &out.update {
            changed += stats.layers.iter().map(|l| l.reset).sum::<usize>();
        }
        for (path, mask) in masks_by_path(m) {
            let l = plan.layer(&path).unwrap();
            let g = l.groups.as_ref().unwrap();
            let t = Tensor::<1, Bool>::from_data(TensorData::new(mask.clone(), [mask.len()]), &d);
            assert_eq!(
                g.first_violation(&bools_to_host(g.to_view(t))),
                None,
                "{path}"
            );
            assert_eq!(mask.iter().filter(|&&b| b).count(), l.n_active);
        }
    });
    assert!(changed > 0, "no connection moved");
    assert_eq!(plan.layers[0].n_active, 48);
    assert_eq!(plan.layers[1].n_active, 48);
    assert!(plan.layers[2].groups.is_none() && !plan.layers[2].masked);
    assert_ne!(start, masks_by_path(&end));
}

/// Host check of a global ranking: over the pooled layers' scores (each divided by its L2 norm
/// plus 1e-8), every kept score is at least every dropped one.
fn assert_global_top(scores: &[Vec<f32>], masks: &[Vec<bool>], total: usize) {
    let mut kept_min = f32::INFINITY;
    let mut dropped_max = 0.0f32;
    let mut kept = 0;
    for (s, m) in scores.iter().zip(masks) {
        let norm = s.iter().map(|x| x * x).sum::<f32>().sqrt() + 1e-8;
        for (x, &on) in s.iter().zip(m) {
            let x = x.abs() / norm;
            if on {
                kept += 1;
                kept_min = kept_min.min(x);
            } else {
                dropped_max = dropped_max.max(x);
            }
        }
    }
    assert_eq!(kept, total, "the pool keeps the sum of its planned counts");
    assert!(kept_min >= dropped_max, "{kept_min} < {dropped_max}");
}

#[test]
fn global_snip_ranks_the_pooled_layers_together() {
    let device = device();
    // fc3 has its own sparsity: it keeps its own count outside the pool.
    let sparsity = SparsityConfig::uniform(0.75).with_last_layer_sparsity(Some(0.5));
    let dst = DstConfig::new(Method::Snip).with_pruning_scope(PruningScope::Global);
    let (model, mut trainer) =
        SparseTrainer::init(Mlp::new([6, 8, 8, 3], &device), &sparsity, dst).unwrap();
    let grads = model.grads(0, 8, &device);
    let score = |w: &Param<Tensor<2>>| {
        let g = floats_to_host(grads.get::<2>(w.id).unwrap());
        let w = floats_to_host(w.base());
        g.iter().zip(&w).map(|(g, w)| g * w).collect::<Vec<f32>>()
    };
    let scores = [score(&model.fc1.weight), score(&model.fc2.weight)];
    let mut optim = sgd();
    let out = trainer.step(model, &mut optim, 0.05, grads).unwrap();
    let m = masks(&out.model);
    let counts = nnz(&out.model);
    assert_eq!(counts[2], 12, "fc3 keeps 50% of 24 on its own");
    assert_global_top(&scores, &m[..2], 12 + 16);
    // The mask is fixed afterwards, and the checkpoint check accepts the pooled counts.
    let model = run(out.model, &mut trainer, &mut optim, 3, |_, out, _| {
        assert!(out.update.is_none())
    });
    assert_eq!(masks(&model)[..2], m[..2]);
    trainer.check_model(&model).unwrap();
}

#[test]
fn global_pruning_ramps_the_pool_on_the_cubic_schedule() {
    let device = device();
    let sparsity = SparsityConfig::uniform(0.9);
    let dst = DstConfig::new(Method::Prune)
        .with_begin_step(2)
        .with_end_step(10)
        .with_frequency(2);
    let run_with = |scope| {
        let dst = dst.clone().with_pruning_scope(scope);
        // fc1's weights 100x smaller than the others': a raw ranking prunes it away first.
        let mut model = Mlp::new([10, 20, 10, 4], &device);
        model.fc1.weight = model
            .fc1
            .weight
            .clone()
            .map(|w| w.mul_scalar(0.01).detach().require_grad());
        let (model, mut trainer) = SparseTrainer::init(model, &sparsity, dst).unwrap();
        let plan = trainer.plan().unwrap().clone();
        let mut optim = sgd();
        let mut updates = 0;
        let model = run(model, &mut trainer, &mut optim, 14, |m, out, _| {
            if let Some(u) = &out.update {
                updates += 1;
                let ctx = UpdateContext {
                    step: u.step,
                    begin_step: 2,
                    end_step: 10,
                    ..UpdateContext::default()
                };
                let total: usize = plan
                    .layers
                    .iter()
                    .map(|l| GradualPruning::kept_at(l.numel(), l.sparsity, &ctx))
                    .sum();
                assert_eq!(nnz(m).iter().sum::<usize>(), total, "step {}", u.step);
            }
        });
        assert!(updates >= 4, "{updates} updates");
        trainer.check_model(&model).unwrap();
        nnz(&model)
    };
    let normalized = run_with(PruningScope::Global);
    let raw = run_with(PruningScope::GlobalUnnormalized);
    // Both end at the per-layer plan's total (model_pruning's rounding of each layer's count).
    let end = [20, 20, 4];
    assert_eq!(normalized.iter().sum::<usize>(), end.iter().sum::<usize>());
    assert_eq!(raw.iter().sum::<usize>(), end.iter().sum::<usize>());
    assert_eq!(
        raw[0], 0,
        "a raw ranking prunes the small layer away: {raw:?}"
    );
    assert!(normalized[0] > 0, "normalisation keeps fc1: {normalized:?}");
    assert_ne!(
        normalized,
        [20, 20, 4],
        "the pool's shares move: {normalized:?}"
    );
}

#[test]
fn global_scope_is_refused_where_it_does_not_apply() {
    let device = device();
    let err = DstConfig::new(Method::Rigl)
        .with_pruning_scope(PruningScope::Global)
        .validate()
        .unwrap_err()
        .to_string();
    assert!(err.contains("method rigl"), "{err}");
    let err = DstConfig::new(Method::Prune)
        .with_end_step(10)
        .with_threshold_decay(0.5)
        .with_pruning_scope(PruningScope::Global)
        .validate()
        .unwrap_err()
        .to_string();
    assert!(err.contains("threshold decay 0.5"), "{err}");
    let structured = SparsityConfig::n_m(2, 4);
    let err = SparseTrainer::init(
        Mlp::new([8, 8, 8, 4], &device),
        &structured,
        DstConfig::new(Method::Snip).with_pruning_scope(PruningScope::Global),
    )
    .map(|_| ())
    .unwrap_err()
    .to_string();
    assert!(err.contains("unstructured layers only"), "{err}");
}

#[test]
fn ste_trains_every_stored_weight_and_masks_their_top_magnitudes() {
    let device = device();
    let sparsity = SparsityConfig::uniform(0.75);
    // End step 0: the final sparsity from the first update on (jaxpruner's one-shot STE).
    let dst = DstConfig::new(Method::Ste).with_end_step(0);
    let (model, mut trainer) =
        SparseTrainer::init(Mlp::new([6, 8, 8, 3], &device), &sparsity, dst).unwrap();
    let plan = trainer.plan().unwrap().clone();
    assert!(trainer.is_update_step());
    assert_eq!(trainer.next_gradient_mode(), GradientMode::Dense);
    let mut optim = SgdConfig::new().init();
    let mut model = model;
    let mut moved_while_pruned = 0;
    let mut came_back = 0;
    for i in 0..12 {
        let before_mask = masks_by_path(&model);
        let before: Vec<Vec<f32>> = [&model.fc1, &model.fc2, &model.fc3]
            .iter()
            .map(|l| floats_to_host(l.weight.base().reshape([-1])))
            .collect();
        let grads = model.grads(i, 8, &device);
        let out = trainer.step(model, &mut optim, 0.5, grads).unwrap();
        assert!(out.trained, "every step trains");
        assert!(out.update.is_some(), "every step updates the mask");
        model = out.model;
        let stored: Vec<Vec<f32>> = [&model.fc1, &model.fc2, &model.fc3]
            .iter()
            .map(|l| floats_to_host(l.weight.base().reshape([-1])))
            .collect();
        for (((path, mask), w), (old, (_, old_mask))) in masks_by_path(&model)
            .iter()
            .zip(&stored)
            .zip(before.iter().zip(&before_mask))
        {
            let planned = plan.layer(path).unwrap();
            let kept = GradualPruning::kept_at(
                w.len(),
                planned.sparsity,
                &UpdateContext {
                    step: 1,
                    ..UpdateContext::default()
                },
            );
            // The mask is the top |w| of the stored weights after this step's update.
            assert_eq!(mask.iter().filter(|&&b| b).count(), kept, "{path}");
            let kept_min = (0..w.len())
                .filter(|&k| mask[k])
                .map(|k| w[k].abs())
                .fold(f32::INFINITY, f32::min);
            let dropped_max = (0..w.len())
                .filter(|&k| !mask[k])
                .map(|k| w[k].abs())
                .fold(0.0, f32::max);
            assert!(kept_min >= dropped_max, "{path} at step {i}");
            // Pruned weights train too (straight-through), and come back when they grow.
            if i > 0 {
                moved_while_pruned += (0..w.len())
                    .filter(|&k| !old_mask[k] && w[k] != old[k])
                    .count();
                came_back += (0..w.len()).filter(|&k| !old_mask[k] && mask[k]).count();
            }
        }
    }
    assert!(moved_while_pruned > 0, "pruned stored weights never moved");
    assert!(came_back > 0, "no pruned weight came back");
    // The model computes with the masked weights.
    let effective = floats_to_host(model.fc1.weight.val().reshape([-1]));
    let mask = &masks_by_path(&model)[0].1;
    assert!((0..mask.len()).all(|k| mask[k] || effective[k] == 0.0));
    trainer.check_model(&model).unwrap();
}
