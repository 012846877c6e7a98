//! `rigl train`: sparse training of a model on a data set, with a progress bar, a run
//! directory (resolved config, per-epoch metrics as CSV and JSON, mask-update log, SVG plots,
//! an atomic checkpoint every epoch, a final summary) and `--resume`.

use crate::CliError;
use crate::metrics::{EpochRecord, read_json, write_atomic, write_outputs};
use crate::run_dir::RunDir;
use crate::settings::TrainSettings;
use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::GradientsParams;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::tensor::{Device, Int, Tensor};
use clap::Args;
use clap::parser::ValueSource;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rigl_core::optim::{SparseSgd, SparseSgdConfig};
use rigl_core::{Method, SparseTrainer, Sparsify, UpdateStats, load_checkpoint, save_checkpoint};
use rigl_data::{Augmentation, ImageSet, MnistVariant, Split};
use rigl_models::counter::{CountOptions, TrainingOptions, count_model};
use rigl_models::{Classifier, ModelBuilder, ModelConfig, SparseArchitecture, WithModel};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Arguments of `rigl train`: where the run lives, and its [`TrainSettings`], which can also
/// come from `--config FILE` (TOML, keys named as the flags); flags override the file.
#[derive(Args, Debug, Clone, Default)]
pub struct TrainArgs {
    /// TOML file with settings (keys are the flag names, e.g. `delta-t = 100`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Run directory (default: runs/<model>-<dataset>-<method>-<sparsity>).
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Continue the run in the run directory from its last checkpoint.
    #[arg(long, conflicts_with = "overwrite")]
    pub resume: bool,
    /// Replace the run an existing run directory holds (its files are removed first).
    #[arg(long)]
    pub overwrite: bool,
    /// No progress bar; one line per epoch.
    #[arg(long)]
    pub quiet: bool,
    /// The settings as the flags give them (defaults where a flag is absent).
    #[command(flatten)]
    pub flags: TrainSettings,
    /// The ids of the settings given on the command line (see [`TrainArgs::with_given`]).
    #[arg(skip)]
    pub given: Vec<String>,
}

impl TrainArgs {
    /// Record which settings `matches` (of the `train` subcommand) took from the command line,
    /// so that only those override the config file.
    pub fn with_given(mut self, matches: &clap::ArgMatches) -> Self {
        self.given = matches
            .ids()
            .filter(|id| matches.value_source(id.as_str()) == Some(ValueSource::CommandLine))
            .map(|id| id.as_str().to_string())
            .collect();
        self
    }

    /// The settings: defaults, then the config file, then the flags given.
    ///
    /// # Errors
    /// Config-file errors and invalid values.
    pub fn settings(&self) -> Result<TrainSettings, CliError> {
        TrainSettings::resolve(self.config.as_deref(), &self.flags, &self.given)
    }
}

/// The device named `name`.
///
/// # Errors
/// [`CliError::Invalid`] for an unknown device or one this build does not include;
/// [`SparsityError::DeviceUnavailable`](rigl_core::SparsityError::DeviceUnavailable) for one
/// it includes that this machine lacks.
pub fn device(name: &str) -> Result<Device, CliError> {
    let device = named_device(name)?;
    if name != "flex" && name != "cpu" {
        rigl_core::check_device(&device)?;
    }
    Ok(device)
}

fn named_device(name: &str) -> Result<Device, CliError> {
    match name {
        "flex" | "cpu" => Ok(Device::flex()),
        #[cfg(feature = "wgpu")]
        "wgpu" => Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)),
        #[cfg(feature = "cuda")]
        "cuda" => Ok(Device::cuda(0)),
        "wgpu" | "cuda" => Err(CliError::Invalid(format!(
            "this build has no {name} backend: rebuild with `--features {name}`"
        ))),
        other => Err(CliError::Invalid(format!(
            "unknown device `{other}`: expected flex, wgpu or cuda"
        ))),
    }
}

/// The train and test sets of `settings`.
///
/// # Errors
/// Data errors (missing files that cannot be fetched, corrupt files) and unknown data sets.
pub fn load_data(settings: &TrainSettings) -> Result<(ImageSet, ImageSet), CliError> {
    let root = rigl_data::data_dir(settings.data_dir.as_deref());
    let (train, test) = match settings.dataset.as_str() {
        "mnist" | "fashion-mnist" | "fashion_mnist" => {
            let variant: MnistVariant = settings.dataset.parse().map_err(CliError::Invalid)?;
            let dir = rigl_data::mnist::ensure(&root, variant, !settings.no_fetch)?;
            (
                rigl_data::mnist::load(&dir, variant, Split::Train, true)?,
                rigl_data::mnist::load(&dir, variant, Split::Test, true)?,
            )
        }
        "cifar10" | "cifar-10" => {
            let dir = root.join("cifar-10-batches-bin");
            (
                rigl_data::cifar::load(&dir, Split::Train)?,
                rigl_data::cifar::load(&dir, Split::Test)?,
            )
        }
        "imagefolder" => {
            let load = |split: &str| -> Result<ImageSet, CliError> {
                Ok(
                    rigl_data::image_folder::ImageFolder::open(&root.join(split))?
                        .load(settings.input_size.unwrap_or(224))?,
                )
            };
            (load("train")?, load("val")?)
        }
        other => {
            return Err(CliError::Invalid(format!(
                "unknown data set `{other}`: expected mnist, fashion-mnist, cifar10 or imagefolder"
            )));
        }
    };
    let train = match settings.train_subset {
        Some(n) => train.take(n),
        None => train,
    };
    let test = match settings.test_subset {
        Some(n) => test.take(n),
        None => test,
    };
    Ok((train, test))
}

/// Held while a run seeds the backend's generator and draws from it (initialisation, a step's
/// dropout): the generator is one per device, shared by every run in the process.
static RNG_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Build a model with the backend's generator seeded by `seed`, so a run's initial weights
/// depend on its seed alone (the lock keeps concurrent runs in one process apart).
pub fn seeded<M: Module>(device: &Device, seed: u64, init: impl FnOnce() -> M) -> M {
    struct Touch;
    impl burn::module::ModuleVisitor for Touch {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
            // Parameters initialise lazily: draw their values now, under the seed.
            let _ = param.val();
        }
    }
    let _guard = RNG_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    device.seed(seed);
    let model = init();
    model.visit(&mut Touch);
    model
}

/// The model configuration `settings` name, sized for `data` (classes, channels, resolution).
///
/// # Errors
/// [`CliError::Model`] for a knob the model does not take or a value it cannot use.
pub fn model_config(settings: &TrainSettings, data: &ImageSet) -> Result<ModelConfig, CliError> {
    Ok(settings.model.config(&settings.model_options(data))?)
}

/// What a finished run reports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Model name.
    pub model: String,
    /// Data set name.
    pub dataset: String,
    /// Method.
    pub method: String,
    /// Final test accuracy.
    pub test_accuracy: f64,
    /// Best test accuracy over epochs.
    pub best_test_accuracy: f64,
    /// Final global sparsity of the kernels.
    pub sparsity: f64,
    /// Active kernel weights.
    pub nnz: usize,
    /// Inference FLOPs of the final model.
    pub inference_flops: f64,
    /// Inference FLOPs relative to the dense model.
    pub inference_flops_ratio: f64,
    /// Training FLOPs relative to dense training (method, delta T, multiplier).
    pub training_flops_ratio: f64,
    /// Model size in decimal MB.
    pub size_mb: f64,
    /// Optimizer steps.
    pub steps: i64,
    /// Epochs run.
    pub epochs: usize,
    /// Total wall time of the training epochs (this invocation and resumed ones).
    pub train_seconds: f64,
}

/// SGD as the reference trains (momentum without dampening, optional Nesterov, L2 added to the
/// gradient): `SparseSgd`, whose updates equal Burn's `Sgd` bit for bit and whose momentum is
/// reset at new connections on the device.
pub(crate) fn sgd(s: &TrainSettings, no_decay: &[String]) -> SparseSgd {
    let momentum = (s.momentum > 0.0).then(|| {
        MomentumConfig::new()
            .with_momentum(s.momentum)
            .with_dampening(0.0)
            .with_nesterov(s.nesterov)
    });
    let decay = (s.weight_decay > 0.0).then(|| WeightDecayConfig::new(s.weight_decay as f32));
    SparseSgdConfig::new()
        .with_momentum(momentum)
        .with_weight_decay(decay)
        .with_weight_decay_scope(s.weight_decay_scope)
        .init()
        .without_decay_for(no_decay.to_vec())
}

/// The sparsity configuration of a run of `arch`, and the kernels that get no weight decay:
/// unless `mask-depthwise`, the depthwise kernels are excluded from both, as the reference's
/// MobileNets never mask nor decay them.
///
/// # Errors
/// Invalid settings and architectures.
pub fn sparsity_for<A: SparseArchitecture>(
    s: &TrainSettings,
    arch: &A,
) -> Result<(rigl_core::SparsityConfig, Vec<String>), CliError> {
    let mut sparsity = s.sparsity_config()?;
    let depthwise = if s.mask_depthwise {
        Vec::new()
    } else {
        arch.depthwise_kernels()?
    };
    for path in &depthwise {
        sparsity = sparsity.exclude(path.clone());
    }
    Ok((sparsity, depthwise))
}

/// Accuracy and mean loss of `model` on `data`.
pub fn evaluate<M: Classifier>(model: &M, data: &ImageSet, device: &Device) -> (f64, f64) {
    let model = model.valid();
    let loss_fn = CrossEntropyLossConfig::new().init(device);
    let (mut correct, mut loss_sum) = (0i64, 0.0f64);
    let indices: Vec<usize> = (0..data.len()).collect();
    for chunk in indices.chunks(1000) {
        let (x, y) = data.batch(chunk, None, device);
        let logits = model.logits(x);
        loss_sum += loss_fn
            .forward(logits.clone(), y.clone())
            .into_scalar::<f64>()
            * chunk.len() as f64;
        correct += accuracy_count(logits, y);
    }
    let n = data.len().max(1) as f64;
    (correct as f64 / n, loss_sum / n)
}

fn accuracy_count(logits: Tensor<2>, y: Tensor<1, Int>) -> i64 {
    logits
        .argmax(1)
        .reshape([-1])
        .equal(y)
        .int()
        .sum()
        .into_scalar::<i64>()
}

/// The default run directory of `s`.
pub fn default_run_dir(s: &TrainSettings) -> PathBuf {
    PathBuf::from("runs").join(format!(
        "{}-{}-{}-{}",
        s.model, s.dataset, s.method, s.sparsity
    ))
}

/// Run `rigl train`.
///
/// # Errors
/// Settings, data, model, training and I/O errors.
pub fn run(args: &TrainArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let settings = args.settings()?;
    let run_dir = args
        .run_dir
        .clone()
        .unwrap_or_else(|| default_run_dir(&settings));
    let start = if args.resume {
        Start::Resume
    } else if args.overwrite {
        Start::Overwrite
    } else {
        Start::Fresh
    };
    train(&settings, &run_dir, start, args.quiet, out).map(|_| ())
}

/// How a run treats its directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// A new run: the directory must not hold one.
    Fresh,
    /// A new run replacing the one the directory holds.
    Overwrite,
    /// Continue the run the directory holds from its checkpoint.
    Resume,
}

/// Train with `settings` into `run_dir`; the library entry point of `rigl train`.
///
/// # Errors
/// Settings, data, model, training and I/O errors.
pub fn train(
    settings: &TrainSettings,
    run_dir: &Path,
    start: Start,
    quiet: bool,
    out: &mut dyn Write,
) -> Result<Summary, CliError> {
    let (train_set, test_set) = load_data(settings)?;
    let run = TrainRun {
        settings,
        device: device(&settings.device)?.autodiff(),
        train_set,
        test_set,
        run_dir,
        start,
        quiet,
    };
    model_config(settings, &run.train_set)?.build(Train { run: &run, out })
}

/// Train the model of a configuration (see [`ModelConfig::build`]).
struct Train<'a, 'o> {
    run: &'a TrainRun<'a>,
    out: &'o mut dyn Write,
}

impl WithModel for Train<'_, '_> {
    type Output = Result<Summary, CliError>;

    fn with<C: ModelBuilder>(self, config: &C) -> Self::Output {
        let device = &self.run.device;
        let model = seeded(device, self.run.settings.seed, || config.init_model(device));
        self.run.train(model, config, self.out)
    }
}

const CHECKPOINT: &str = "checkpoint.ckpt";

/// The checkpoint metadata key of a run's [`Position`].
const POSITION: &str = "rigl.position";

/// Where a run stands when its checkpoint is written: kept in the checkpoint, so that the
/// checkpoint alone says which metrics belong to it and where in an epoch to go on.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Position {
    /// Completed epochs.
    epoch: usize,
    /// Batches of the next epoch already trained (0 at an epoch boundary).
    batch: usize,
    /// The unfinished epoch's sum of batch losses times batch sizes.
    loss_sum: f64,
    /// The unfinished epoch's correct predictions.
    correct: i64,
    /// The unfinished epoch's training images.
    seen: usize,
    /// The unfinished epoch's seconds.
    seconds: f64,
    /// Entries of `metrics.json` the checkpoint's state has.
    records: usize,
    /// Entries of `updates.json` the checkpoint's state has.
    updates: usize,
}

impl Position {
    /// The checkpoint's user metadata for this position (`epoch` as well, which earlier
    /// checkpoints had alone).
    fn to_user(&self) -> HashMap<String, String> {
        HashMap::from([
            ("epoch".to_string(), self.epoch.to_string()),
            (
                POSITION.to_string(),
                serde_json::to_string(self).expect("plain numbers serialise"),
            ),
        ])
    }

    /// The position a checkpoint's user metadata records; for a checkpoint that has only
    /// `epoch` (written before positions were kept), at that epoch's end with the metrics
    /// files as they are.
    fn of_checkpoint(
        user: &HashMap<String, String>,
        history: &[EpochRecord],
        updates: &[UpdateStats],
    ) -> Result<Self, CliError> {
        let corrupt = |what: &str| CliError::Invalid(format!("the checkpoint's {what} is corrupt"));
        match user.get(POSITION) {
            Some(json) => serde_json::from_str(json).map_err(|_| corrupt("position")),
            None => Ok(Self {
                epoch: user
                    .get("epoch")
                    .map(|e| e.parse().map_err(|_| corrupt("epoch")))
                    .transpose()?
                    .unwrap_or(0),
                records: history.len(),
                updates: updates.len(),
                ..Self::default()
            }),
        }
    }
}

/// The backend generator's seed for step `step` of a run seeded `seed` (SplitMix64 of both).
fn step_seed(seed: u64, step: i64) -> u64 {
    let mut z = seed ^ (step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One `rigl train` run: its settings, device, data and run directory.
struct TrainRun<'a> {
    settings: &'a TrainSettings,
    device: Device,
    train_set: ImageSet,
    test_set: ImageSet,
    run_dir: &'a Path,
    start: Start,
    quiet: bool,
}

impl TrainRun<'_> {
    /// Train `model` (of architecture `arch`), writing progress to `out`.
    fn train<M: Classifier, A: SparseArchitecture>(
        &self,
        model: M,
        arch: &A,
        out: &mut dyn Write,
    ) -> Result<Summary, CliError> {
        let Self {
            settings: s,
            device,
            train_set,
            test_set,
            run_dir,
            start,
            quiet,
        } = self;
        let (run_dir, quiet) = (*run_dir, *quiet);
        let dir = RunDir::lock(run_dir)?;
        let ckpt = run_dir.join(CHECKPOINT);
        let resume = *start == Start::Resume;
        match start {
            Start::Resume if !ckpt.is_file() => {
                return Err(CliError::Invalid(format!(
                    "--resume: {} holds no checkpoint ({CHECKPOINT}) to continue from",
                    run_dir.display()
                )));
            }
            Start::Fresh if dir.holds_a_run() => {
                return Err(CliError::RunExists(run_dir.to_path_buf()));
            }
            Start::Overwrite => dir.clear()?,
            _ => {}
        }
        let total_steps = s.total_steps(train_set.len())?;
        let batches_per_epoch = train_set.len().div_ceil(s.batch_size);
        let epochs = s.total_epochs();
        let (sparsity, depthwise) = sparsity_for(s, arch)?;
        let dst = s.dst_config(total_steps)?;

        let (mut model, mut optim, mut trainer, mut history, mut updates, start) = if resume {
            let saved = TrainSettings::from_toml_file(&run_dir.join("config.toml"))?;
            let differences = s.resume_differences(&saved);
            if !differences.is_empty() {
                return Err(CliError::ResumeMismatch {
                    dir: run_dir.to_path_buf(),
                    differences,
                });
            }
            let r = load_checkpoint(&ckpt, model, sgd(s, &depthwise), device)?;
            let mut history: Vec<EpochRecord> = read_json(&run_dir.join("metrics.json"))?;
            let mut updates: Vec<UpdateStats> = read_json(&run_dir.join("updates.json"))?;
            let position = Position::of_checkpoint(&r.user, &history, &updates)?;
            // The metrics files are written before the checkpoint: entries past the
            // checkpoint's are from a run stopped between the two writes.
            if history.len() < position.records || updates.len() < position.updates {
                return Err(CliError::Invalid(format!(
                    "{} is inconsistent: metrics.json has {} epochs and updates.json {} updates, \
                     but the checkpoint was written after {} and {}",
                    run_dir.display(),
                    history.len(),
                    updates.len(),
                    position.records,
                    position.updates
                )));
            }
            history.truncate(position.records);
            updates.truncate(position.updates);
            writeln!(
                out,
                "Resuming {} from epoch {}{} (step {})",
                run_dir.display(),
                position.epoch,
                if position.batch > 0 {
                    format!(", batch {}", position.batch)
                } else {
                    String::new()
                },
                r.trainer.step_count()
            )?;
            (r.model, r.optim, r.trainer, history, updates, position)
        } else {
            let (model, trainer) = SparseTrainer::init(model, &sparsity, dst.clone())?;
            (
                model,
                sgd(s, &depthwise),
                trainer,
                Vec::new(),
                Vec::new(),
                Position::default(),
            )
        };
        write_atomic(&run_dir.join("config.toml"), s.to_toml().as_bytes())?;

        writeln!(
            out,
            "Training {} on {} ({} train / {} test images), {} at sparsity {} ({}), {} epochs of {} batches, run directory {}",
            s.model,
            s.dataset,
            train_set.len(),
            test_set.len(),
            s.method,
            s.sparsity,
            s.distribution,
            epochs,
            batches_per_epoch,
            run_dir.display()
        )?;
        if start.epoch == 0 && start.batch == 0 {
            writeln!(out, "{}", model.sparsity_report())?;
        }

        let smoothing = (s.label_smoothing > 0.0).then_some(s.label_smoothing as f32);
        let loss_fn = CrossEntropyLossConfig::new()
            .with_smoothing(smoothing)
            .init(device);
        let augment =
            (s.dataset.starts_with("cifar")).then_some(Augmentation { pad: 4, flip: true });
        // Writes the metrics files, then the checkpoint, which commits the state: a run stopped
        // between the two resumes from the checkpoint and drops the metrics past it.
        let commit = |model: &M,
                      optim: &SparseSgd,
                      trainer: &SparseTrainer,
                      position: &Position,
                      history: &[EpochRecord],
                      updates: &[UpdateStats]| {
            write_outputs(run_dir, history, updates)?;
            save_checkpoint(&ckpt, model, optim, trainer, &position.to_user())?;
            Ok::<(), CliError>(())
        };
        let mut stopped_eval = None;
        for epoch in start.epoch..epochs {
            let mut lr = s.lr_at(epoch, trainer.step_count());
            let order = train_set.epoch_order(s.seed, epoch as u32);
            let bar = progress_bar(batches_per_epoch, epoch + 1, epochs, quiet);
            let started = Instant::now();
            let resumed = if epoch == start.epoch {
                start.clone()
            } else {
                Position::default()
            };
            bar.inc(resumed.batch as u64);
            let (mut loss_sum, mut correct, mut seen) =
                (resumed.loss_sum, resumed.correct, resumed.seen);
            let mut stopped_at = None;
            for (b, chunk) in order.chunks(s.batch_size).enumerate().skip(resumed.batch) {
                if s.max_steps.is_some_and(|m| trainer.step_count() >= m) {
                    stopped_at = Some(b);
                    break;
                }
                // Dropout draws from the backend's generator: seeded per step, a resumed run
                // draws what the uninterrupted one does.
                let (x, y) =
                    train_set.batch(chunk, augment.map(|a| (a, s.seed, epoch as u32)), device);
                let rng = RNG_LOCK.lock().unwrap_or_else(|p| p.into_inner());
                device.seed(step_seed(s.seed, trainer.step_count()));
                let logits = model.logits(x);
                drop(rng);
                let loss = loss_fn.forward(logits.clone(), y.clone());
                let loss_value = loss.clone().into_scalar::<f64>();
                if !loss_value.is_finite() {
                    return Err(CliError::Invalid(format!(
                        "the loss became {loss_value} at step {}: lower the learning rate",
                        trainer.step_count()
                    )));
                }
                correct += accuracy_count(logits.detach(), y.clone());
                seen += chunk.len();
                loss_sum += loss_value * chunk.len() as f64;
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                lr = s.lr_at(epoch, trainer.step_count());
                let step = trainer.step(model, &mut optim, lr, grads)?;
                model = step.model;
                if let Some(u) = step.update {
                    updates.push(u);
                }
                if b % 10 == 0 {
                    let rate = seen as f64 / started.elapsed().as_secs_f64().max(1e-9);
                    bar.set_message(format!(
                        "loss {:.4} acc {:.3} {:.0} samples/s",
                        loss_sum / seen.max(1) as f64,
                        correct as f64 / seen.max(1) as f64,
                        rate
                    ));
                }
                bar.inc(1);
            }
            bar.finish_and_clear();
            let seconds = resumed.seconds + started.elapsed().as_secs_f64();
            if let Some(batch) = stopped_at {
                // --max-steps in the middle of the epoch: keep where the epoch stands, so that
                // --resume trains the rest of it.
                if batch > resumed.batch {
                    let (test_accuracy, test_loss) = evaluate(&model, test_set, device);
                    writeln!(
                        out,
                        "stopped at step {} after {batch} of {batches_per_epoch} batches of epoch {}: test acc {test_accuracy:.4} (--resume continues the epoch)",
                        trainer.step_count(),
                        epoch + 1
                    )?;
                    let position = Position {
                        epoch,
                        batch,
                        loss_sum,
                        correct,
                        seen,
                        seconds,
                        records: history.len(),
                        updates: updates.len(),
                    };
                    commit(&model, &optim, &trainer, &position, &history, &updates)?;
                    stopped_eval = Some((test_accuracy, test_loss, seconds));
                }
                break;
            }
            let (test_accuracy, test_loss) = evaluate(&model, test_set, device);
            let report = model.sparsity_report();
            let record = EpochRecord {
                epoch: epoch + 1,
                step: trainer.step_count(),
                lr,
                train_loss: loss_sum / seen.max(1) as f64,
                train_accuracy: correct as f64 / seen.max(1) as f64,
                test_loss,
                test_accuracy,
                sparsity: report.sparsity,
                density: report
                    .layers
                    .iter()
                    .map(|l| (l.path.clone(), 1.0 - l.sparsity))
                    .collect(),
                samples_per_second: seen as f64 / seconds.max(1e-9),
                seconds,
            };
            writeln!(
                out,
                "epoch {:>3}/{epochs}  step {:>6}  lr {:.4}  loss {:.4}  train acc {:.4}  test acc {:.4}  sparsity {:.4}  {:.0} samples/s",
                record.epoch,
                record.step,
                lr,
                record.train_loss,
                record.train_accuracy,
                record.test_accuracy,
                record.sparsity,
                record.samples_per_second
            )?;
            history.push(record);
            let position = Position {
                epoch: epoch + 1,
                records: history.len(),
                updates: updates.len(),
                ..Position::default()
            };
            commit(&model, &optim, &trainer, &position, &history, &updates)?;
        }

        let report = model.sparsity_report();
        let options = CountOptions {
            training: TrainingOptions {
                method: s.method,
                delta_t: s.delta_t.max(1) as u64,
                multiplier: s.steps_multiplier,
                ..TrainingOptions::default()
            },
            structure: s.structure,
            ..CountOptions::default()
        };
        let count = match s.method {
            Method::Prune => {
                // The training cost follows the pruning schedule of the configuration; the
                // model's own masks give the inference counts (a global ranking or a run
                // stopped early leaves other per-layer counts than the plan's).
                let schedule = rigl_models::counter::count(
                    arch,
                    &sparsity,
                    &CountOptions {
                        training: TrainingOptions {
                            method: Method::Prune,
                            pruning: rigl_models::counter::PruningSchedule {
                                total_steps: total_steps.max(2) as u64,
                                begin_step: dst.schedule().begin_step.max(0) as u64,
                                end_step: dst.schedule().end_step.max(1) as u64,
                            },
                            ..options.training
                        },
                        ..options
                    },
                )?;
                let inference = CountOptions {
                    training: TrainingOptions {
                        method: Method::Dense,
                        ..options.training
                    },
                    ..options
                };
                let mut count = count_model(&model, arch, &inference)?;
                count.totals.training_flops_ratio = schedule.totals.training_flops_ratio;
                count.training = schedule.training;
                count
            }
            _ => count_model(&model, arch, &options)?,
        };
        let last = history.last();
        let summary = Summary {
            model: s.model.to_string(),
            dataset: s.dataset.clone(),
            method: s.method.to_string(),
            test_accuracy: stopped_eval
                .map(|(accuracy, _, _)| accuracy)
                .or(last.map(|r| r.test_accuracy))
                .unwrap_or(0.0),
            // A run stopped inside an epoch counts that epoch's evaluation and time too.
            best_test_accuracy: history
                .iter()
                .map(|r| r.test_accuracy)
                .chain(stopped_eval.map(|(accuracy, _, _)| accuracy))
                .fold(0.0, f64::max),
            sparsity: report.sparsity,
            nnz: report.nnz,
            inference_flops: count.totals.inference_flops,
            inference_flops_ratio: count.totals.inference_flops_ratio,
            training_flops_ratio: count.totals.training_flops_ratio,
            size_mb: count.totals.size_mb,
            steps: trainer.step_count(),
            epochs: history.len(),
            train_seconds: history
                .iter()
                .map(|r| r.seconds)
                .chain(stopped_eval.map(|(_, _, seconds)| seconds))
                .fold(0.0, |a, b| a + b),
        };
        write_atomic(
            &run_dir.join("summary.json"),
            serde_json::to_string_pretty(&summary)?.as_bytes(),
        )?;
        writeln!(out, "\n{report}")?;
        writeln!(
            out,
            "\nDone: test accuracy {:.4} (best {:.4}), sparsity {:.4} ({} active weights), inference {:.4e} FLOPs ({:.3}x dense), training {:.3}x dense FLOPs, {:.3} MB, {} steps in {:.1} s",
            summary.test_accuracy,
            summary.best_test_accuracy,
            summary.sparsity,
            summary.nnz,
            summary.inference_flops,
            summary.inference_flops_ratio,
            summary.training_flops_ratio,
            summary.size_mb,
            summary.steps,
            summary.train_seconds
        )?;
        Ok(summary)
    }
}

fn progress_bar(len: usize, epoch: usize, epochs: usize, quiet: bool) -> ProgressBar {
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::with_draw_target(Some(len as u64), ProgressDrawTarget::stderr())
    };
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "epoch {epoch}/{epochs} [{{bar:30}}] {{pos}}/{{len}} {{msg}} ({{eta}})"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CliError, run as cli};
    use rigl_core::{PruningScope, Structure};
    use rigl_models::{MlpConfig, MobileNetV1Config, ModelKind, WideResNetConfig};

    fn parse(args: &[&str]) -> Result<TrainSettings, CliError> {
        let cli = crate::parse(["rigl", "train"].iter().chain(args.iter()))?;
        match cli.command {
            crate::Command::Train(a) => a.settings(),
            _ => unreachable!(),
        }
    }

    #[test]
    fn flags_parse_and_bad_values_are_errors() {
        let s = parse(&[
            "--method",
            "set",
            "--sparsity",
            "0.95",
            "--lr-decay-epochs",
            "75,95",
            "--end-step",
            "-1",
        ])
        .unwrap();
        assert_eq!(s.method, Method::Set);
        assert_eq!(s.lr_decay_epochs, [75.0, 95.0]);
        assert_eq!(s.end_step, Some(-1));
        for (flag, value) in [
            ("--train-subset", "0"),
            ("--test-subset", "0"),
            ("--input-size", "0"),
        ] {
            let err = parse(&[flag, value]).unwrap_err();
            assert!(matches!(err, CliError::Invalid(_)), "{flag}: {err:?}");
            assert!(err.to_string().contains(" 0"), "{flag}: {err}");
        }
        let err = parse(&["--method", "magic"]).unwrap_err().to_string();
        assert!(err.contains("unknown method `magic`"), "{err}");
        let err = parse(&["--sparsity", "1.5"]).unwrap_err().to_string();
        assert!(err.contains("1.5") && err.contains("[0, 1)"), "{err}");
        let err = parse(&["--custom-sparsity", "fc2"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("PATTERN=S"), "{err}");
        assert!(matches!(
            parse(&["--batch-size", "0"]),
            Err(CliError::Invalid(_))
        ));
        assert!(device("tpu").is_err());
    }

    #[test]
    fn pruning_scope_flag_reaches_the_trainer_config() {
        let s = parse(&["--method", "prune", "--pruning-scope", "global"]).unwrap();
        assert_eq!(s.pruning_scope, PruningScope::Global);
        let d = s.dst_config(1000).unwrap();
        assert_eq!(d.pruning_scope, PruningScope::Global);
        let back = TrainSettings::from_toml(&s.to_toml()).unwrap();
        assert_eq!(back.pruning_scope, PruningScope::Global);
        let s = parse(&["--method", "rigl", "--pruning-scope", "global"]).unwrap();
        let err = s.dst_config(1000).unwrap_err().to_string();
        assert!(err.contains("method rigl"), "{err}");
        let err = parse(&["--pruning-scope", "everywhere"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown pruning scope"), "{err}");
    }

    #[test]
    fn structure_flag_sets_the_implied_sparsity() {
        let s = parse(&["--structure", "2:4"]).unwrap();
        assert_eq!(s.structure, Structure::NM { n: 2, m: 4 });
        assert_eq!(s.sparsity, 0.5);
        let c = s.sparsity_config().unwrap();
        assert_eq!(
            (c.structure, c.sparsity),
            (Structure::NM { n: 2, m: 4 }, 0.5)
        );
        let s = parse(&["--structure", "fan-in", "--sparsity", "0.9"]).unwrap();
        assert_eq!((s.structure, s.sparsity), (Structure::ConstantFanIn, 0.9));
        // A sparsity N:M cannot keep, from a flag or a file, is an error naming both.
        let err = parse(&["--structure", "1:4", "--sparsity", "0.9"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("1:4") && err.contains("0.75") && err.contains("0.9"),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("run.toml");
        std::fs::write(&file, "structure = \"1:4\"\nsparsity = 0.98\n").unwrap();
        let path = file.to_str().unwrap();
        let err = parse(&["--config", path]).unwrap_err().to_string();
        assert!(err.contains("0.75") && err.contains("0.98"), "{err}");
        let s = parse(&["--config", path, "--sparsity", "0.75"]).unwrap();
        assert_eq!(s.structure, Structure::NM { n: 1, m: 4 });
        std::fs::write(&file, "structure = \"1:4\"\n").unwrap();
        assert_eq!(parse(&["--config", path]).unwrap().sparsity, 0.75);
        for bad in ["3:3", "0:4", "2-4", "blocks"] {
            let err = parse(&["--structure", bad]).unwrap_err().to_string();
            assert!(err.contains("structure"), "{bad}: {err}");
        }
    }

    #[test]
    fn config_file_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("run.toml");
        std::fs::write(
            &file,
            "method = \"snfs\"\nsparsity = 0.8\ndelta-t = 50\nlr-decay-epochs = [30.0]\n",
        )
        .unwrap();
        let f = file.to_str().unwrap();
        let s = parse(&["--config", f]).unwrap();
        assert_eq!((s.method, s.sparsity, s.delta_t), (Method::Snfs, 0.8, 50));
        // Both a flag and the file: the flag wins, the rest comes from the file.
        let s = parse(&["--config", f, "--sparsity", "0.95", "--method", "rigl"]).unwrap();
        assert_eq!((s.method, s.sparsity, s.delta_t), (Method::Rigl, 0.95, 50));
        // Unknown keys and bad values in the file are errors naming the file and key.
        std::fs::write(&file, "sparsty = 0.8\n").unwrap();
        let err = parse(&["--config", f]).unwrap_err().to_string();
        assert!(err.contains("run.toml") && err.contains("sparsty"), "{err}");
        std::fs::write(&file, "sparsity = 1.5\n").unwrap();
        assert!(parse(&["--config", f]).is_err());
        std::fs::write(&file, "method = \"magic\"\n").unwrap();
        assert!(parse(&["--config", f]).is_err());
        // The resolved settings round-trip through TOML.
        let s = parse(&["--method", "rigl", "--custom-sparsity", "fc2=0.882"]).unwrap();
        assert_eq!(TrainSettings::from_toml(&s.to_toml()).unwrap(), s);
    }

    #[test]
    fn a_flag_given_at_its_default_still_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("run.toml");
        std::fs::write(
            &file,
            "lr = 0.2\nnesterov = false\nno-fetch = true\nseed = 5\nlr-decay-steps = [10]\n",
        )
        .unwrap();
        let f = file.to_str().unwrap();
        let s = parse(&["--config", f]).unwrap();
        assert_eq!(
            (s.lr, s.nesterov, s.no_fetch, s.seed),
            (0.2, false, true, 5)
        );
        // 0.1, true and 0 are the defaults: given on the command line, they still win.
        let s = parse(&[
            "--config",
            f,
            "--lr",
            "0.1",
            "--nesterov",
            "--no-fetch",
            "false",
            "--seed",
            "0",
        ])
        .unwrap();
        assert_eq!(
            (s.lr, s.nesterov, s.no_fetch, s.seed),
            (0.1, true, false, 0)
        );
        assert_eq!(s.lr_decay_steps, [10], "the file's schedule stays");
        // A schedule of the other kind by flag replaces the file's.
        let s = parse(&["--config", f, "--lr-decay-epochs", "3"]).unwrap();
        assert_eq!(
            (s.lr_decay_epochs.as_slice(), s.lr_decay_steps.len()),
            (&[3.0][..], 0)
        );
        // Without a file the defaults are the flags' defaults.
        assert_eq!(parse(&[]).unwrap(), TrainSettings::default());
        assert_eq!(
            TrainSettings::from_toml("").unwrap(),
            TrainSettings::default()
        );
    }

    #[test]
    fn earlier_key_names_still_read() {
        let s = TrainSettings::from_toml(
            "model = \"wrn\"\nwrn-depth = 16\nwrn-width = 4\nimage-size = 64\n",
        )
        .unwrap();
        assert_eq!(
            (s.model, s.depth, s.width),
            (ModelKind::Wrn, Some(16), Some(4.0))
        );
        assert_eq!(s.input_size, Some(64));
        let s = TrainSettings::from_toml("width-multiplier = 0.5\n").unwrap();
        assert_eq!(s.width, Some(0.5));
        let err = TrainSettings::from_toml("width = 2\nwrn-width = 2\n").unwrap_err();
        assert!(
            err.contains("`wrn-width` and `width` are both set"),
            "{err}"
        );
    }

    #[test]
    fn model_knobs_are_checked_against_the_model() {
        let data = ImageSet {
            pixels: vec![0; 28 * 28],
            labels: vec![0],
            channels: 1,
            height: 28,
            width: 28,
            classes: 10,
            normalization: vec![(0.0, 1.0)],
        };
        let config = |args: &[&str]| model_config(&parse(args).unwrap(), &data);
        let ModelConfig::Wrn(c) =
            config(&["--model", "wrn", "--depth", "16", "--width", "4"]).unwrap()
        else {
            panic!("not a wrn")
        };
        assert_eq!(
            (c.depth, c.widen_factor, c.dropout, c.in_channels),
            (16, 4, 0.3, 1)
        );
        let err = |args: &[&str]| config(args).unwrap_err().to_string();
        assert!(err(&["--model", "wrn", "--depth", "20"]).contains("6n + 4"));
        assert!(err(&["--model", "wrn", "--dropout", "1.0"]).contains("[0, 1)"));
        assert!(err(&["--model", "mlp", "--width", "2"]).contains("does not apply to mlp"));
        assert!(err(&["--model", "mobilenet-v1", "--width", "0"]).contains("width multiplier"));
    }

    #[test]
    fn learning_rate_schedule() {
        let s = parse(&[
            "--lr",
            "0.2",
            "--lr-decay-epochs",
            "75,95",
            "--lr-decay-factor",
            "0.5",
        ])
        .unwrap();
        assert_eq!(s.lr_at(0, 0), 0.2);
        assert_eq!(s.lr_at(75, 0), 0.1);
        assert_eq!(s.lr_at(99, 0), 0.05);

        // On optimizer steps, as TF's piecewise_constant: the rate drops once the step
        // exceeds a boundary; the multiplier scales the boundaries, truncating.
        let s = parse(&[
            "--lr",
            "0.2",
            "--lr-decay-steps",
            "300,500",
            "--lr-decay-factor",
            "0.5",
        ])
        .unwrap();
        let rates: Vec<f64> = [0, 300, 301, 500, 501, 10_000]
            .into_iter()
            .map(|t| s.lr_at(7, t))
            .collect();
        assert_eq!(rates, [0.2, 0.2, 0.1, 0.1, 0.05, 0.05]);
        let s = parse(&["--lr-decay-steps", "300", "--steps-multiplier", "1.499"]).unwrap();
        assert_eq!(s.scaled_steps(300), 449, "int(300 * 1.499) = int(449.7)");
        assert_eq!(s.lr_at(0, 449), s.lr);
        assert!(s.lr_at(0, 450) < s.lr);
        // The multiplier truncates the epochs too: int(10 * 1.499) = 14.
        assert_eq!(s.total_epochs(), 14);
        // Both kinds at once is an error; a flag replaces the other kind from a file.
        let err = parse(&["--lr-decay-steps", "300", "--lr-decay-epochs", "3"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("choose one"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("steps.toml");
        std::fs::write(&file, "lr-decay-epochs = [3.0]\n").unwrap();
        let f = file.to_str().unwrap();
        let s = parse(&["--config", f, "--lr-decay-steps", "300"]).unwrap();
        assert_eq!((s.lr_decay_epochs.len(), s.lr_decay_steps), (0, vec![300]));
    }

    #[test]
    fn learning_rate_warm_up_and_multipliers() {
        let s = parse(&[
            "--lr",
            "0.4",
            "--lr-warmup-steps",
            "100",
            "--lr-decay-steps",
            "1000,2000",
            "--lr-multipliers",
            "0.1,0.0003",
        ])
        .unwrap();
        let rates: Vec<f64> = [0, 50, 99, 100, 1000, 1001, 2001]
            .into_iter()
            .map(|t| s.lr_at(0, t))
            .collect();
        assert_eq!(
            rates,
            [0.0, 0.2, 0.4 * 0.99, 0.4, 0.4, 0.4 * 0.1, 0.4 * 0.0003]
        );
        let err = parse(&["--lr-decay-steps", "1000,2000", "--lr-multipliers", "0.1"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("one per boundary"), "{err}");
        assert!(parse(&["--lr-warmup-steps", "-1"]).is_err());
    }

    #[test]
    fn reference_names_and_defaults() {
        let s = parse(&["--method", "momentum"]).unwrap();
        assert_eq!(s.method, Method::Snfs);
        let s = parse(&["--method", "static"]).unwrap();
        assert_eq!(s.method, Method::StaticRezero);
        let s = parse(&["--method", "baseline"]).unwrap();
        assert_eq!(s.method, Method::Dense);
        // The reference's L2 is on the kernels only.
        assert_eq!(
            s.weight_decay_scope,
            rigl_core::optim::WeightDecayScope::Kernels
        );
        let s = parse(&[
            "--weight-decay-scope",
            "all",
            "--grow-init",
            "random_normal_2",
        ])
        .unwrap();
        assert_eq!(
            s.weight_decay_scope,
            rigl_core::optim::WeightDecayScope::All
        );
        let dst = s.dst_config(1000).unwrap();
        assert_eq!(dst.grow_init, rigl_core::GrowInit::RandomNormal(2.0));
        assert_eq!(dst.weight_decay, s.weight_decay, "SNIP's L2 term");
        let err = parse(&["--grow-init", "initial_value"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown grow init"), "{err}");
        // The multiplier truncates the scaled mask steps (int(1000 * 1.4999) = 1499).
        let s = parse(&["--end-step", "1000", "--steps-multiplier", "1.4999"]).unwrap();
        assert_eq!(s.dst_config(10).unwrap().schedule().end_step, 1499);
    }

    #[test]
    fn depthwise_kernels_are_neither_masked_nor_decayed() {
        let arch = MobileNetV1Config::new()
            .with_width_multiplier(0.25)
            .with_num_classes(10)
            .with_input_size(32);
        let s = parse(&["--model", "mobilenet-v1", "--sparsity", "0.9"]).unwrap();
        let (sparsity, no_decay) = sparsity_for(&s, &arch).unwrap();
        assert_eq!(no_decay.len(), 13);
        let plan = arch.sparsity_plan(&sparsity).unwrap();
        for l in &plan.layers {
            let depthwise = no_decay.contains(&l.path);
            assert_eq!(l.masked, !depthwise, "{}", l.path);
        }
        let s = parse(&["--model", "mobilenet-v1", "--mask-depthwise", "true"]).unwrap();
        let (sparsity, no_decay) = sparsity_for(&s, &arch).unwrap();
        assert!(no_decay.is_empty());
        assert!(
            arch.sparsity_plan(&sparsity)
                .unwrap()
                .layers
                .iter()
                .all(|l| l.masked)
        );
        // No model without depthwise kernels loses a layer.
        let (_, none) = sparsity_for(&s, &MlpConfig::new()).unwrap();
        assert!(none.is_empty());
    }

    /// Every shipped config parses, validates and gives a schedule; the reference recipes carry
    /// the reference's numbers.
    #[test]
    fn shipped_configs_are_valid_reference_recipes() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let s = TrainSettings::from_toml_file(&path).unwrap();
            s.validate()
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            s.dst_config(100_000).unwrap();
            names.push(path.file_stem().unwrap().to_string_lossy().to_string());
        }
        names.sort();
        assert_eq!(
            names,
            [
                "cifar-wrn",
                "imagenet-mobilenet-v1",
                "imagenet-resnet50",
                "mnist",
                "mnist-rigl"
            ]
        );
        let mnist = TrainSettings::from_toml_file(&dir.join("mnist.toml")).unwrap();
        assert_eq!((mnist.epochs, mnist.batch_size), (200, 100));
        assert_eq!(mnist.lr_at(199, 45_000), 0.2);
        assert!((mnist.lr_at(199, 45_001) - 0.2 / 3.0).abs() < 1e-12);
        assert!((mnist.lr_at(0, 57_001) - 0.2 / 9.0).abs() < 1e-12);
        // The output layer is masked at sparsity 0 and takes part in updates.
        let plan = MlpConfig::new()
            .sparsity_plan(&mnist.sparsity_config().unwrap())
            .unwrap();
        let counts: Vec<_> = plan.layers.iter().map(|l| (l.masked, l.n_active)).collect();
        assert_eq!(counts, [(true, 4704), (true, 3540), (true, 1000)]);
        let cifar = TrainSettings::from_toml_file(&dir.join("cifar-wrn.toml")).unwrap();
        let plan = WideResNetConfig::new()
            .sparsity_plan(&cifar.sparsity_config().unwrap())
            .unwrap();
        assert!(!plan.layers[0].masked, "the first convolution stays dense");
        assert!(
            plan.layers.last().unwrap().masked,
            "the classifier is masked"
        );
        assert!((cifar.lr_at(0, 60_001) - 0.1 * 0.04).abs() < 1e-12);
        let mobilenet =
            TrainSettings::from_toml_file(&dir.join("imagenet-mobilenet-v1.toml")).unwrap();
        assert!((mobilenet.lr_at(0, 5005) - 0.4 * 5005.0 / 10010.0).abs() < 1e-12);
        assert!((mobilenet.lr_at(0, 150_137) - 0.4 * 0.0003).abs() < 1e-12);
        let resnet = TrainSettings::from_toml_file(&dir.join("imagenet-resnet50.toml")).unwrap();
        assert!((resnet.lr_at(0, 87_580) - 0.4 * 0.01).abs() < 1e-12);
    }

    fn mnist_args(dir: &Path, extra: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = [
            "rigl",
            "train",
            "--quiet",
            "--model",
            "mlp",
            "--dataset",
            "mnist",
            "--method",
            "rigl",
            "--distribution",
            "erk",
            "--sparsity",
            "0.9",
            "--lr",
            "0.1",
            "--test-subset",
            "2000",
            "--run-dir",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.push(dir.display().to_string());
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    }

    /// A few hundred steps on real MNIST (fetched when missing) reach a clear accuracy bar
    /// and keep the requested sparsity.
    #[test]
    fn trains_on_real_mnist() {
        let dir = tempfile::tempdir().unwrap();
        let mut out = Vec::new();
        cli(
            mnist_args(
                dir.path(),
                &[
                    "--epochs",
                    "2",
                    "--train-subset",
                    "15000",
                    "--delta-t",
                    "50",
                ],
            ),
            &mut out,
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        let summary: Summary = read_json(&dir.path().join("summary.json")).unwrap();
        assert!(
            summary.test_accuracy >= 0.90,
            "accuracy {}\n{text}",
            summary.test_accuracy
        );
        assert!(summary.steps >= 250, "{}", summary.steps);
        // ERK 0.9 over the three kernels: the plan's exact count.
        let plan = MlpConfig::new()
            .sparsity_plan(&rigl_core::SparsityConfig::erk(0.9))
            .unwrap();
        assert_eq!(summary.nnz, plan.n_active());
        for f in [
            "metrics.csv",
            "metrics.json",
            "updates.csv",
            "loss.svg",
            "accuracy.svg",
            "density.svg",
            "changes.svg",
            "config.toml",
            "checkpoint.ckpt",
        ] {
            assert!(dir.path().join(f).is_file(), "{f} missing");
        }
        // `rigl eval` on the run directory agrees with the training run.
        let mut out = Vec::new();
        cli(
            [
                "rigl",
                "eval",
                "--json",
                "--checkpoint",
                dir.path().to_str().unwrap(),
            ],
            &mut out,
        )
        .unwrap();
        let eval: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let acc = eval["test_accuracy"].as_f64().unwrap();
        assert!(acc >= 0.9);
        // `--export` writes the compressed weights; evaluating them gives the same accuracy,
        // and the file is close to the counted size.
        let export = dir.path().join("model.bpk");
        let run = |extra: &[&str]| {
            let mut args = vec![
                "rigl",
                "eval",
                "--json",
                "--checkpoint",
                dir.path().to_str().unwrap(),
            ];
            args.extend_from_slice(extra);
            let mut out = Vec::new();
            cli(args, &mut out).unwrap();
            serde_json::from_slice::<serde_json::Value>(&out).unwrap()
        };
        let exported = run(&["--export", export.to_str().unwrap()]);
        let bytes = exported["export_bytes"].as_u64().unwrap();
        assert_eq!(bytes, std::fs::metadata(&export).unwrap().len());
        let counted = exported["size_mb"].as_f64().unwrap() * 1e6;
        assert!((bytes as f64) < counted + 20_000.0, "{bytes} vs {counted}");
        let from_export = run(&["--weights", export.to_str().unwrap()]);
        assert_eq!(from_export["test_accuracy"].as_f64().unwrap(), acc);
        assert_eq!(from_export["sparsity"]["nnz"], eval["sparsity"]["nnz"]);
        let err = cli(
            ["rigl", "eval", "--checkpoint", "/nonexistent"],
            &mut Vec::new(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("not a run directory"));
    }

    /// A 1:4 run: `rigl train` and `rigl eval` count its layers with two index bits per kept
    /// weight, and the masks keep one of every four inputs.
    #[test]
    fn structured_run_is_counted_with_index_bits() {
        let dir = tempfile::tempdir().unwrap();
        let mut args = mnist_args(dir.path(), &["--epochs", "1"]);
        // 1:4 fixes the sparsity (0.75); the output layer stays dense.
        let at = args.iter().position(|a| a == "--sparsity").unwrap();
        args[at + 1] = "0.75".into();
        let at = args.iter().position(|a| a == "--distribution").unwrap();
        args[at + 1] = "uniform".into();
        args.extend(
            [
                "--structure",
                "1:4",
                "--last-layer-sparsity",
                "0",
                "--train-subset",
                "500",
                "--delta-t",
                "2",
                "--end-step",
                "4",
            ]
            .map(String::from),
        );
        cli(args, &mut Vec::new()).unwrap();
        let summary: Summary = read_json(&dir.path().join("summary.json")).unwrap();
        assert_eq!(summary.nnz, 58_800 + 7_500 + 1_000);
        let bits = (58_800.0 + 300.0 + 7_500.0 + 100.0 + 1_000.0 + 10.0) * 32.0
            + 2.0 * (58_800.0 + 7_500.0);
        assert!(
            (summary.size_mb - bits / 8e6).abs() < 1e-12,
            "{}",
            summary.size_mb
        );
        let mut out = Vec::new();
        let path = dir.path().to_str().unwrap();
        cli(["rigl", "eval", "--json", "--checkpoint", path], &mut out).unwrap();
        let eval: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert!((eval["size_mb"].as_f64().unwrap() - bits / 8e6).abs() < 1e-12);
    }

    /// Stopping after one epoch and resuming gives the uninterrupted run's results exactly.
    #[test]
    fn resume_matches_an_uninterrupted_run() {
        let full = tempfile::tempdir().unwrap();
        let part = tempfile::tempdir().unwrap();
        let small = [
            "--train-subset",
            "3000",
            "--delta-t",
            "7",
            "--end-step",
            "40",
        ];
        let args = |d: &Path, epochs: &str, resume: bool| {
            let mut a = mnist_args(d, &["--epochs", epochs]);
            a.extend(small.iter().map(|s| s.to_string()));
            if resume {
                a.push("--resume".into());
            }
            a
        };
        cli(args(full.path(), "2", false), &mut Vec::new()).unwrap();
        cli(args(part.path(), "1", false), &mut Vec::new()).unwrap();
        let mut out = Vec::new();
        cli(args(part.path(), "2", true), &mut out).unwrap();
        assert!(String::from_utf8(out).unwrap().contains("Resuming"));
        let a: Vec<EpochRecord> = read_json(&full.path().join("metrics.json")).unwrap();
        let b: Vec<EpochRecord> = read_json(&part.path().join("metrics.json")).unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(b.len(), 2);
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(
                (x.step, x.train_loss, x.test_accuracy, x.test_loss),
                (y.step, y.train_loss, y.test_accuracy, y.test_loss)
            );
        }
        // Resuming a different kind of run into the same directory is refused.
        let mut wrong = args(part.path(), "3", true);
        let m = wrong.iter().position(|a| a == "--method").unwrap();
        wrong[m + 1] = "set".into();
        let err = cli(wrong, &mut Vec::new()).unwrap_err();
        assert!(matches!(err, CliError::ResumeMismatch { .. }), "{err:?}");
        let err = err.to_string();
        assert!(
            err.contains("--resume") && err.contains("method: \"rigl\" -> \"set\""),
            "{err}"
        );
        let mut wrong = args(part.path(), "2", true);
        wrong.extend([
            "--seed".to_string(),
            "1".to_string(),
            "--erk-power-scale".into(),
            "0.5".into(),
        ]);
        let err = cli(wrong, &mut Vec::new()).unwrap_err().to_string();
        assert!(
            err.contains("erk-power-scale: 1.0 -> 0.5") && err.contains("seed: 0 -> 1"),
            "{err}"
        );
        // A new run into a directory that holds one is refused, unless asked to overwrite.
        let err = cli(args(part.path(), "1", false), &mut Vec::new()).unwrap_err();
        assert!(matches!(err, CliError::RunExists(_)), "{err:?}");
        // --resume without a checkpoint is an error, not a fresh start.
        let empty = tempfile::tempdir().unwrap();
        let err = cli(args(empty.path(), "1", true), &mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("holds no checkpoint"), "{err}");
        assert!(!empty.path().join("config.toml").exists());
        // A corrupt metrics file is an error on resume, not an empty history.
        let metrics = part.path().join("metrics.json");
        let kept = std::fs::read(&metrics).unwrap();
        std::fs::write(&metrics, &kept[..kept.len() / 2]).unwrap();
        let err = cli(args(part.path(), "3", true), &mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("metrics.json is corrupt"), "{err}");
        std::fs::write(&metrics, &kept).unwrap();
        // A directory another run holds is refused, naming the holder.
        let held = RunDir::lock(part.path()).unwrap();
        let err = cli(args(part.path(), "3", true), &mut Vec::new()).unwrap_err();
        assert!(matches!(err, CliError::RunLocked { .. }), "{err:?}");
        drop(held);
        // --overwrite replaces the run.
        let mut again = args(part.path(), "1", false);
        again.push("--overwrite".into());
        cli(again, &mut Vec::new()).unwrap();
        let b: Vec<EpochRecord> = read_json(&part.path().join("metrics.json")).unwrap();
        assert_eq!(b.len(), 1);
    }

    /// `--max-steps` in the middle of an epoch, then `--resume`, trains the rest of that epoch:
    /// the metrics equal the uninterrupted run's. A run stopped between writing the metrics and
    /// the checkpoint resumes from the checkpoint, dropping the metrics past it.
    #[test]
    fn stopping_mid_epoch_or_between_writes_resumes_exactly() {
        let small = [
            "--train-subset",
            "2000",
            "--batch-size",
            "100",
            "--delta-t",
            "7",
            "--end-step",
            "50",
        ];
        let args = |d: &Path, extra: &[&str]| {
            let mut a = mnist_args(d, &small);
            if !extra.contains(&"--epochs") {
                a.extend(["--epochs".to_string(), "3".to_string()]);
            }
            a.extend(extra.iter().map(|s| s.to_string()));
            a
        };
        let metrics = |d: &Path| -> Vec<(usize, i64, u64, u64, u64)> {
            read_json::<Vec<EpochRecord>>(&d.join("metrics.json"))
                .unwrap()
                .iter()
                .map(|r| {
                    (
                        r.epoch,
                        r.step,
                        r.train_loss.to_bits(),
                        r.train_accuracy.to_bits(),
                        r.test_loss.to_bits(),
                    )
                })
                .collect()
        };
        let full = tempfile::tempdir().unwrap();
        cli(args(full.path(), &[]), &mut Vec::new()).unwrap();
        let expected = metrics(full.path());
        assert_eq!(expected.len(), 3);
        let updates = |d: &Path| read_json::<Vec<UpdateStats>>(&d.join("updates.json")).unwrap();

        // Stopped ten steps into epoch 2 (mask-only update steps are not optimizer steps, so
        // the batch index is read from the message).
        let stop = expected[0].1 + 10;
        let part = tempfile::tempdir().unwrap();
        let mut out = Vec::new();
        cli(
            args(part.path(), &["--max-steps", &stop.to_string()]),
            &mut out,
        )
        .unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.contains(&format!("stopped at step {stop} after ")),
            "{out}"
        );
        assert!(out.contains("of 20 batches of epoch 2"), "{out}");
        assert!(out.contains("(--resume continues the epoch)"), "{out}");
        let batch: usize = out
            .split("stopped at step ")
            .nth(1)
            .unwrap()
            .split(' ')
            .nth(2)
            .unwrap()
            .parse()
            .unwrap();
        assert!((10..20).contains(&batch), "{out}");
        assert_eq!(metrics(part.path()), expected[..1]);
        let mut out = Vec::new();
        cli(args(part.path(), &["--resume"]), &mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.contains(&format!("from epoch 1, batch {batch} (step {stop})")),
            "{out}"
        );
        assert_eq!(metrics(part.path()), expected);
        assert_eq!(updates(part.path()), updates(full.path()));

        // A stop after the metrics of epoch 3 were written but before its checkpoint: the
        // directory holds epoch 2's checkpoint and epoch 3's metrics.
        let crash = tempfile::tempdir().unwrap();
        cli(args(crash.path(), &["--epochs", "2"]), &mut Vec::new()).unwrap();
        let ckpt = std::fs::read(crash.path().join(CHECKPOINT)).unwrap();
        cli(args(crash.path(), &["--resume"]), &mut Vec::new()).unwrap();
        std::fs::write(crash.path().join(CHECKPOINT), &ckpt).unwrap();
        let mut out = Vec::new();
        cli(args(crash.path(), &["--resume"]), &mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.contains(&format!("from epoch 2 (step {})", expected[1].1)),
            "{out}"
        );
        assert_eq!(metrics(crash.path()), expected);
        assert_eq!(updates(crash.path()), updates(full.path()));

        // Metrics behind the checkpoint cannot come from a crash: an error, not a guess.
        let short: Vec<EpochRecord> = read_json(&crash.path().join("metrics.json")).unwrap();
        std::fs::write(
            crash.path().join("metrics.json"),
            serde_json::to_string(&short[..1]).unwrap(),
        )
        .unwrap();
        let err = cli(
            args(crash.path(), &["--resume", "--epochs", "4"]),
            &mut Vec::new(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("is inconsistent: metrics.json has 1 epochs"),
            "{err}"
        );
    }
}
