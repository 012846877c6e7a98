//! `rigl bench --suite sparse`: the masked dense path against sparse execution, side by side in
//! one run on one device, for the cases of `benches/RESULTS.md`.
//!
//! - `mlp-train-step`: one training step (forward, backward, SGD with Nesterov momentum and
//!   L2) of the MNIST MLP at the reference set-up (4,704 / 3,540 active weights in the two
//!   masked layers, the output layer dense), batch 100, no mask update. Dense is today's masked
//!   path (`--execution dense`), sparse is `--execution sparse`.
//! - `linear-4096-infer`: the forward of a 90%-sparse 4096x4096 linear layer at batch 1, 16, 64
//!   and 256. Dense is Burn's matmul on the weight with its zeros stored (what a dense
//!   deployment runs), sparse is the sparse kernel.
//! - `linear-4096-fan-in-infer`: the same layer at constant fan-in 410 (10%), batch 1, 16, 64
//!   and 256: Burn's matmul on the weight with its zeros stored against the condensed product
//!   ([`rigl_kernels::condensed_linear`], the layout constant fan-in and N:M layers allow).
//! - `wrn-train-step`: one training step (forward, backward, SGD with momentum) of WRN-22-2 at
//!   90% ERK sparsity, batch 32 of 32x32 RGB images, no mask update; dense is the masked path,
//!   sparse is `--execution sparse`.
//! - `resnet50-infer`: the forward of ResNet-50 at 90% ERK sparsity on one 224x224 image
//!   (inference: no autodiff, batch-norm running statistics); dense is the masked path, sparse
//!   is `--execution sparse`.

use crate::CliError;
use crate::settings::TrainSettings;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rigl_core::nn::{Execution, SparseExecution, SparseLinear, SparseLinearConfig};
use rigl_core::optim::SparseOptimizer;
use rigl_core::{Sparsify, SparsityConfig};
use rigl_models::{MlpConfig, ResNetConfig, WideResNetConfig};
use serde::Serialize;
use std::time::Instant;

/// One case of the sparse suite.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct SparseBenchRow {
    /// The case: `mlp-train-step`, `linear-4096-infer`, `wrn-train-step` or
    /// `resnet50-infer`.
    pub case: String,
    /// Batch size.
    pub batch: usize,
    /// Active weights over all weights of the masked layers.
    pub density: f64,
    /// Median wall time of the dense run, in milliseconds.
    pub dense_ms: f64,
    /// Median wall time of the sparse run, in milliseconds.
    pub sparse_ms: f64,
    /// `dense_ms / sparse_ms`.
    pub speedup: f64,
}

fn median_ms(repeats: usize, mut once: impl FnMut()) -> f64 {
    once();
    let mut times: Vec<f64> = (0..repeats)
        .map(|_| {
            let start = Instant::now();
            once();
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn uniform(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = rigl_kernels::catalogue::SplitMix64::new(seed);
    (0..n)
        .map(|_| (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0)
        .collect()
}

fn row(case: &str, batch: usize, density: f64, dense_ms: f64, sparse_ms: f64) -> SparseBenchRow {
    SparseBenchRow {
        case: case.into(),
        batch,
        density,
        dense_ms,
        sparse_ms,
        speedup: dense_ms / sparse_ms,
    }
}

/// Median time of one MLP training step in `execution`.
fn mlp_step_ms(
    device: &Device,
    execution: Execution,
    repeats: usize,
) -> Result<(f64, f64), CliError> {
    let device = device.clone().autodiff();
    let sparsity = SparsityConfig::uniform(0.98)
        .with_custom_sparsity("fc2", 0.882)
        .last_layer_dense();
    // Seeded under the lock runs in this process share: the generator is the device's.
    let model = crate::train::seeded(&device, 0, || {
        MlpConfig::new()
            .with_execution(SparseExecution::new(execution))
            .init(&device)
    })
    .sparsify(&sparsity)?;
    let density = masked_density(&model.sparsity_report());
    let settings = TrainSettings::default();
    let mut optim = crate::train::sgd(
        &TrainSettings {
            momentum: 0.9,
            nesterov: true,
            weight_decay: 1e-4,
            ..settings
        },
        &[],
    );
    let batch = 100;
    let x = Tensor::<2>::from_data(
        TensorData::new(uniform(batch * 784, 1), [batch, 784]),
        &device,
    );
    let labels: Vec<i64> = (0..batch as i64).map(|i| (i * 7) % 10).collect();
    let y = Tensor::<1, Int>::from_data(TensorData::new(labels, [batch]), &device);
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let mut slot = Some(model);
    let ms = median_ms(repeats, || {
        let model = slot.take().expect("the model is put back after every step");
        let loss = loss_fn.forward(model.forward(x.clone()), y.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        slot = Some(optim.step(0.1.into(), model, grads));
    });
    Ok((ms, density))
}

fn linear_4096(batch: usize, repeats: usize, device: &Device) -> Result<SparseBenchRow, CliError> {
    let layer: SparseLinear = crate::train::seeded(device, 4096, || {
        SparseLinearConfig::new(4096, 4096)
            .with_execution(SparseExecution::new(Execution::Sparse))
            .init(device)
    })
    .sparsify(SparsityConfig::uniform(0.9))?;
    let report = layer.sparsity_report();
    let density = report.nnz as f64 / report.numel as f64;
    // Dense deployment: the masked weight stored with its zeros, no mask attached.
    let dense = {
        let zeros = layer.weight.val();
        let mut plain = crate::train::seeded(device, 0, || {
            SparseLinearConfig::new(4096, 4096)
                .with_execution(SparseExecution::new(Execution::Dense))
                .init(device)
        });
        plain.weight = burn::module::Param::from_tensor(zeros);
        plain
    };
    let x = Tensor::<2>::from_data(
        TensorData::new(uniform(batch * 4096, 2), [batch, 4096]),
        device,
    );
    let read = |y: Tensor<2>| {
        let _ = y.slice([0..1, 0..1]).into_scalar::<f32>();
    };
    let dense_ms = median_ms(repeats, || read(dense.forward(x.clone())));
    let sparse_ms = median_ms(repeats, || read(layer.forward(x.clone())));
    Ok(row(
        "linear-4096-infer",
        batch,
        density,
        dense_ms,
        sparse_ms,
    ))
}

/// A 4096x4096 layer at constant fan-in 410 (10% density): Burn's matmul on the weight with
/// its zeros stored against the condensed product.
fn linear_4096_fan_in(batch: usize, repeats: usize, device: &Device) -> SparseBenchRow {
    let p = rigl_kernels::catalogue::constant_fan_in_problem(batch, 4096, 4096, 410, 4096);
    let m = &p.matmul;
    let condensed = rigl_kernels::Condensed::from_linear(&m.weight, &m.mask, m.rows, m.cols)
        .expect("the problem has a constant fan-in");
    let dense = Tensor::<2>::from_data(TensorData::new(m.masked_weight(), [4096, 4096]), device);
    let x = Tensor::<2>::from_data(TensorData::new(m.x.clone(), [batch, 4096]), device);
    let read = |y: Tensor<2>| {
        let _ = y.slice([0..1, 0..1]).into_scalar::<f32>();
    };
    let dense_ms = median_ms(repeats, || read(x.clone().matmul(dense.clone())));
    let condensed_ms = median_ms(repeats, || {
        read(rigl_kernels::condensed_linear(x.clone(), &condensed).expect("shapes fit"))
    });
    row(
        "linear-4096-fan-in-infer",
        batch,
        410.0 / 4096.0,
        dense_ms,
        condensed_ms,
    )
}

/// Active weights over all weights of the masked layers of `report`.
fn masked_density(report: &rigl_core::SparsityReport) -> f64 {
    let masked: Vec<_> = report.layers.iter().filter(|l| l.masked).collect();
    masked.iter().map(|l| l.nnz).sum::<usize>() as f64
        / masked.iter().map(|l| l.numel).sum::<usize>() as f64
}

/// Median time of one WRN-22-2 training step (batch 32) in `execution`.
fn wrn_step_ms(
    device: &Device,
    execution: Execution,
    repeats: usize,
) -> Result<(f64, f64), CliError> {
    let device = device.clone().autodiff();
    let model = crate::train::seeded(&device, 22, || {
        WideResNetConfig::new()
            .with_execution(SparseExecution::new(execution))
            .init(&device)
    })
    .sparsify(SparsityConfig::erk(0.9))?;
    let density = masked_density(&model.sparsity_report());
    let mut optim = crate::train::sgd(
        &TrainSettings {
            momentum: 0.9,
            weight_decay: 5e-4,
            ..TrainSettings::default()
        },
        &[],
    );
    let batch = 32;
    let x = Tensor::<4>::from_data(
        TensorData::new(uniform(batch * 3 * 32 * 32, 3), [batch, 3, 32, 32]),
        &device,
    );
    let labels: Vec<i64> = (0..batch as i64).map(|i| (i * 3) % 10).collect();
    let y = Tensor::<1, Int>::from_data(TensorData::new(labels, [batch]), &device);
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let mut slot = Some(model);
    let ms = median_ms(repeats, || {
        let model = slot.take().expect("the model is put back after every step");
        let loss = loss_fn.forward(model.forward(x.clone()), y.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        slot = Some(optim.step(0.1.into(), model, grads));
    });
    Ok((ms, density))
}

/// ResNet-50 at 90% ERK, one 224x224 image, dense and sparse execution.
fn resnet50_infer(device: &Device, repeats: usize) -> Result<SparseBenchRow, CliError> {
    let model = crate::train::seeded(device, 50, || ResNetConfig::resnet50().init(device))
        .sparsify(SparsityConfig::erk(0.9))?;
    let density = masked_density(&model.sparsity_report());
    let x = Tensor::<4>::from_data(
        TensorData::new(uniform(3 * 224 * 224, 5), [1, 3, 224, 224]),
        device,
    );
    let read = |y: Tensor<2>| {
        let _ = y.slice([0..1, 0..1]).into_scalar::<f32>();
    };
    let dense = model
        .clone()
        .with_execution(SparseExecution::new(Execution::Dense));
    let sparse = model.with_execution(SparseExecution::new(Execution::Sparse));
    let dense_ms = median_ms(repeats, || read(dense.forward(x.clone())));
    let sparse_ms = median_ms(repeats, || read(sparse.forward(x.clone())));
    Ok(row("resnet50-infer", 1, density, dense_ms, sparse_ms))
}

/// Time every case of the sparse suite on `device` (a CPU device: the sparse kernels run on
/// the CPU backend).
///
/// # Errors
/// Sparsity errors of the set-up (none for the built-in cases).
pub fn measure(device: &Device, repeats: usize) -> Result<Vec<SparseBenchRow>, CliError> {
    let mut rows = measure_batches(device, repeats, &[1, 16, 64, 256])?;
    rows.extend(measure_convolutions(device, repeats.clamp(1, 5))?);
    Ok(rows)
}

/// The convolutional cases: `wrn-train-step` and `resnet50-infer`.
///
/// # Errors
/// As [`measure`].
pub fn measure_convolutions(
    device: &Device,
    repeats: usize,
) -> Result<Vec<SparseBenchRow>, CliError> {
    let (dense_ms, density) = wrn_step_ms(device, Execution::Dense, repeats)?;
    let (sparse_ms, _) = wrn_step_ms(device, Execution::Sparse, repeats)?;
    Ok(vec![
        row("wrn-train-step", 32, density, dense_ms, sparse_ms),
        resnet50_infer(device, repeats)?,
    ])
}

/// The MLP step and the linear layer at `batches` (no convolutions).
///
/// # Errors
/// As [`measure`].
pub fn measure_batches(
    device: &Device,
    repeats: usize,
    batches: &[usize],
) -> Result<Vec<SparseBenchRow>, CliError> {
    let (dense_ms, density) = mlp_step_ms(device, Execution::Dense, repeats.max(20))?;
    let (sparse_ms, _) = mlp_step_ms(device, Execution::Sparse, repeats.max(20))?;
    let mut rows = vec![row("mlp-train-step", 100, density, dense_ms, sparse_ms)];
    for &batch in batches {
        rows.push(linear_4096(batch, repeats, device)?);
    }
    for &batch in batches {
        rows.push(linear_4096_fan_in(batch, repeats, device));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_case_reports_both_paths() {
        let rows = measure_batches(&Device::flex(), 1, &[1]).unwrap();
        let cases: Vec<&str> = rows.iter().map(|r| r.case.as_str()).collect();
        assert_eq!(
            cases,
            [
                "mlp-train-step",
                "linear-4096-infer",
                "linear-4096-fan-in-infer"
            ]
        );
        // The reference MLP set-up: 8,244 of 265,200 masked weights active.
        assert!((rows[0].density - 8244.0 / 265_200.0).abs() < 1e-12);
        assert!((rows[1].density - 0.1).abs() < 1e-6);
        assert!((rows[2].density - 410.0 / 4096.0).abs() < 1e-12);
        for r in &rows {
            assert!(r.dense_ms > 0.0 && r.sparse_ms > 0.0, "{r:?}");
            assert!((r.speedup - r.dense_ms / r.sparse_ms).abs() < 1e-12);
            let json = serde_json::to_value(r).unwrap();
            for field in ["case", "dense_ms", "sparse_ms", "speedup"] {
                assert!(json.get(field).is_some(), "{field} missing");
            }
        }
    }
}
