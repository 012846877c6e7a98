//! `rigl eval --checkpoint DIR`: test accuracy, per-layer sparsity and FLOPs of a trained run.

use crate::CliError;
use crate::settings::TrainSettings;
use crate::train::{device, evaluate, load_data, model_config, seeded};
use burn::tensor::Device;
use clap::Args;
use rigl_core::{SparseInference, Sparsify, load_checkpoint_model};
use rigl_data::ImageSet;
use rigl_models::counter::{CountOptions, count_model};
use rigl_models::{Classifier, ModelBuilder, SparseArchitecture, WithModel};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Arguments of `rigl eval`.
#[derive(Args, Debug, Clone)]
pub struct EvalArgs {
    /// A run directory written by `rigl train` (holds config.toml and checkpoint.ckpt).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Data directory (default: the one the run used).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Device: flex (CPU), wgpu, cuda.
    #[arg(long, default_value = "flex")]
    pub device: String,
    /// How sparse-aware layers compute (dense, sparse, auto); unset: as the run trained.
    #[arg(long)]
    pub execution: Option<rigl_core::nn::Execution>,
    /// Evaluate the weights of this `SparseInference` file (written by `--export`) instead of
    /// the run's checkpoint.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Also write the evaluated weights for inference, compressed (`SparseInference`: active
    /// values and a one-bit mask per masked weight), to this file.
    #[arg(long)]
    pub export: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// What `rigl eval` reports.
#[derive(Debug, Serialize)]
pub struct Evaluation {
    /// Test accuracy.
    pub test_accuracy: f64,
    /// Test loss.
    pub test_loss: f64,
    /// Per-layer and global sparsity.
    pub sparsity: rigl_core::SparsityReport,
    /// Inference FLOPs.
    pub inference_flops: f64,
    /// Relative to dense.
    pub inference_flops_ratio: f64,
    /// Model size in decimal MB.
    pub size_mb: f64,
    /// Bytes of the `--export` file, when one was written.
    pub export_bytes: Option<u64>,
}

/// Run `rigl eval`.
///
/// # Errors
/// A directory without a config or checkpoint, data and model errors.
pub fn run(args: &EvalArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let dir = &args.checkpoint;
    let config = dir.join("config.toml");
    if !config.is_file() || !dir.join("checkpoint.ckpt").is_file() {
        return Err(CliError::Invalid(format!(
            "{} is not a run directory of `rigl train` (it needs config.toml and checkpoint.ckpt)",
            dir.display()
        )));
    }
    let mut s = TrainSettings::from_toml_file(&config)?;
    if args.data_dir.is_some() {
        s.data_dir = args.data_dir.clone();
    }
    s.device = args.device.clone();
    if let Some(e) = args.execution {
        s.execution = e;
    }
    s.train_subset = Some(1);
    let device = device(&s.device)?;
    let (train_set, test_set) = load_data(&s)?;
    let e = model_config(&s, &train_set)?.build(Evaluate {
        seed: s.seed,
        dir,
        test_set: &test_set,
        device: &device,
        weights: args.weights.as_deref(),
        export: args.export.as_deref(),
        structure: s.structure,
    })?;
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&e)?)?;
    } else {
        writeln!(out, "{}\n", e.sparsity)?;
        writeln!(
            out,
            "test accuracy {:.4}  test loss {:.4}  sparsity {:.4}  inference {:.4e} FLOPs ({:.3}x dense)  size {:.3} MB",
            e.test_accuracy,
            e.test_loss,
            e.sparsity.sparsity,
            e.inference_flops,
            e.inference_flops_ratio,
            e.size_mb
        )?;
        if let (Some(path), Some(bytes)) = (&args.export, e.export_bytes) {
            writeln!(
                out,
                "exported {} ({:.3} MB)",
                path.display(),
                bytes as f64 / 1e6
            )?;
        }
    }
    Ok(())
}

/// Evaluate the model of a configuration (see [`rigl_models::ModelConfig::build`]).
struct Evaluate<'a> {
    seed: u64,
    dir: &'a Path,
    test_set: &'a ImageSet,
    device: &'a Device,
    weights: Option<&'a Path>,
    export: Option<&'a Path>,
    /// The run's mask structure (N:M layers are counted with index bits).
    structure: rigl_core::Structure,
}

impl WithModel for Evaluate<'_> {
    type Output = Result<Evaluation, CliError>;

    fn with<C: ModelBuilder>(self, config: &C) -> Self::Output {
        let model = seeded(self.device, self.seed, || config.init_model(self.device));
        evaluate_run(model, config, &self)
    }
}

fn evaluate_run<M: Classifier, A: SparseArchitecture>(
    model: M,
    arch: &A,
    how: &Evaluate<'_>,
) -> Result<Evaluation, CliError> {
    let model = match how.weights {
        Some(path) => SparseInference::load(&model, path)?,
        None => load_checkpoint_model(how.dir.join("checkpoint.ckpt"), model, how.device)?.model,
    };
    let (test_accuracy, test_loss) = evaluate(&model, how.test_set, how.device);
    let count = count_model(
        &model,
        arch,
        &CountOptions {
            structure: how.structure,
            ..CountOptions::default()
        },
    )?;
    let export_bytes = match how.export {
        Some(path) => Some(SparseInference::save(&model, path)?.bytes),
        None => None,
    };
    Ok(Evaluation {
        test_accuracy,
        test_loss,
        sparsity: model.sparsity_report(),
        inference_flops: count.totals.inference_flops,
        inference_flops_ratio: count.totals.inference_flops_ratio,
        size_mb: count.totals.size_mb,
        export_bytes,
    })
}
