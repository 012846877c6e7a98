//! `rigl train` settings: defaults, a TOML file with the flags' names as keys, and flags,
//! each overriding the one before.

use crate::CliError;
use clap::{ArgAction, Args, FromArgMatches};
use rigl_core::nn::{Execution, SparseExecution};
use rigl_core::optim::WeightDecayScope;
use rigl_core::{
    Distribution, DropAnneal, DstConfig, GrowInit, MaskInit, Method, PruningScope, SparsityConfig,
    Structure,
};
use rigl_data::ImageSet;
use rigl_models::{ModelKind, ModelOptions};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Everything a training run is made of, as flags of `rigl train` and as keys of a TOML file
/// (`delta-t = 100`): one list, whose defaults are the flags' defaults.
///
/// [`TrainSettings::resolve`] merges the three layers: defaults, then the file, then the
/// flags given on the command line.
#[derive(Args, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default, deny_unknown_fields)]
pub struct TrainSettings {
    /// Model: mlp, wrn, resnet50, mobilenet-v1, mobilenet-v2.
    #[arg(long, default_value = "mlp")]
    pub model: ModelKind,
    /// Data set: mnist, fashion-mnist, cifar10, imagefolder.
    #[arg(long, default_value = "mnist")]
    pub dataset: String,
    /// Data directory (default: `$RIGL_DATA_DIR`, else the per-user cache).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Do not fetch a missing data set.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", default_value_t = false)]
    pub no_fetch: bool,
    /// Method: dense, scratch, static_rezero, set, snfs, rigl, snip, prune, ste (or the reference's
    /// names: baseline, static, momentum).
    #[arg(long, default_value = "rigl")]
    pub method: Method,
    /// Sparsity distribution: uniform, er, erk.
    #[arg(long, default_value = "uniform")]
    pub distribution: Distribution,
    /// Global sparsity in [0, 1).
    #[arg(long, default_value_t = 0.9)]
    pub sparsity: f64,
    /// First-layer sparsity (0: dense, unmasked); unset: follow the distribution.
    #[arg(long)]
    pub first_layer_sparsity: Option<f64>,
    /// Last-layer sparsity (0: dense, unmasked); unset: follow the distribution.
    #[arg(long)]
    pub last_layer_sparsity: Option<f64>,
    /// Custom sparsity of the layers matching a pattern, `PATTERN=S` (e.g. `fc2=0.882`;
    /// repeatable).
    #[arg(long, value_name = "PATTERN=S")]
    pub custom_sparsity: Vec<String>,
    /// Structure the masks keep: unstructured, N:M (e.g. 2:4: 2 active of every 4 consecutive
    /// inputs of an output; its sparsity is 1 - N/M, the default when `sparsity` is not given)
    /// or fan-in (every output of a layer the same number of active inputs).
    #[arg(long, default_value = "unstructured")]
    pub structure: Structure,
    /// ERK power scale.
    #[arg(long, default_value_t = 1.0)]
    pub erk_power_scale: f64,
    /// Initial masks: random or magnitude.
    #[arg(long, default_value = "random")]
    pub mask_init: MaskInit,
    /// Steps between mask updates (delta T).
    #[arg(long, default_value_t = 100)]
    pub delta_t: i64,
    /// Fraction of active connections dropped and regrown per update (alpha).
    #[arg(long, default_value_t = 0.3)]
    pub drop_fraction: f64,
    /// Drop-fraction anneal: constant, cosine, exponential_K.
    #[arg(long, default_value = "cosine")]
    pub drop_anneal: String,
    /// First step of mask updates.
    #[arg(long, default_value_t = 0)]
    pub begin_step: i64,
    /// Last step of mask updates; unset: 75% of the run (negative: never stop).
    #[arg(long, allow_hyphen_values = true)]
    pub end_step: Option<i64>,
    /// Scales the run: epochs, learning-rate boundaries and mask begin/end steps (steps
    /// truncated).
    #[arg(long, default_value_t = 1.0)]
    pub steps_multiplier: f64,
    /// Take the optimizer step on RigL's update iterations too.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", default_value_t = false)]
    pub train_on_update_steps: bool,
    /// Weight of new connections: zeros, initial_dist[_X], random_normal[_X],
    /// random_uniform[_X], and for RigL grad_scale[_X], grad_sign[_X] (the reference's
    /// `grow_init`; X divides).
    #[arg(long, default_value = "zeros")]
    pub grow_init: String,
    /// RigL: optimizer slots of new connections start at this multiple of the dense gradient
    /// (the reference's `rigl_acc_scale`; 0: zero).
    #[arg(long, default_value_t = 0.0)]
    pub rigl_acc_scale: f64,
    /// Which layers snip and prune rank together: layer (each its own count, the reference),
    /// global (one ranking of the layers the distribution sets, each layer's scores divided by
    /// their L2 norm, as jaxpruner's global pruners) or global-unnormalized.
    #[arg(long, default_value = "layer")]
    pub pruning_scope: PruningScope,
    /// Gradual pruning's threshold smoothing in [0, 1) (model_pruning's `threshold_decay`).
    #[arg(long, default_value_t = 0.0)]
    pub threshold_decay: f64,
    /// Mask depthwise kernels too (the reference's MobileNets never mask them, nor decay them).
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", default_value_t = false)]
    pub mask_depthwise: bool,
    /// Label smoothing of the cross-entropy loss.
    #[arg(long, default_value_t = 0.0)]
    pub label_smoothing: f64,
    /// Initial learning rate.
    #[arg(long, default_value_t = 0.1)]
    pub lr: f64,
    /// Epochs at which the learning rate is multiplied by `lr-decay-factor`, comma separated
    /// (e.g. 75,95).
    #[arg(long, value_delimiter = ',')]
    pub lr_decay_epochs: Vec<f64>,
    /// Optimizer steps after which the learning rate is multiplied by `lr-decay-factor`, comma
    /// separated (the reference's piecewise-constant schedule on the global step: the rate
    /// drops once the step exceeds a boundary; RigL's mask-only update iterations do not
    /// advance the step). Exclusive with `lr-decay-epochs`.
    #[arg(long, value_delimiter = ',')]
    pub lr_decay_steps: Vec<i64>,
    /// Learning-rate decay factor: after the i-th boundary the rate is `lr * factor^i`.
    #[arg(long, default_value_t = 0.1)]
    pub lr_decay_factor: f64,
    /// Multipliers of `lr` after each boundary, one per boundary, comma separated, instead of
    /// powers of `lr-decay-factor` (the reference's MobileNet schedule: 0.1,0.01,0.001,0.0003).
    #[arg(long, value_delimiter = ',')]
    pub lr_multipliers: Vec<f64>,
    /// Linear warm-up: the rate grows from 0 to `lr` over the first N optimizer steps (the
    /// reference's MobileNet schedule warms up over 8 epochs).
    #[arg(long, default_value_t = 0)]
    pub lr_warmup_steps: i64,
    /// SGD momentum (0: none).
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
    /// Nesterov momentum.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", default_value_t = true)]
    pub nesterov: bool,
    /// L2 weight decay.
    #[arg(long, default_value_t = 1e-4)]
    pub weight_decay: f64,
    /// Which parameters the weight decay applies to: kernels (the reference's L2 on conv and
    /// dense kernels only, never biases or normalisation parameters) or all (Burn's).
    #[arg(long, default_value = "kernels")]
    pub weight_decay_scope: WeightDecayScope,
    /// Batch size.
    #[arg(long, default_value_t = 100)]
    pub batch_size: usize,
    /// Epochs.
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    /// Stop after this many optimizer steps (for short runs).
    #[arg(long)]
    pub max_steps: Option<i64>,
    /// Use only the first N training images.
    #[arg(long)]
    pub train_subset: Option<usize>,
    /// Use only the first N test images.
    #[arg(long)]
    pub test_subset: Option<usize>,
    /// Seed of weights, masks, data order and augmentation.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Device: flex (CPU), wgpu, cuda.
    #[arg(long, default_value = "flex")]
    pub device: String,
    /// Width: the widen factor k of wrn (an integer; default 2) or the width multiplier of the
    /// MobileNets (default 1).
    #[arg(long)]
    pub width: Option<f64>,
    /// Depth of wrn, 6n + 4 (default 22).
    #[arg(long)]
    pub depth: Option<usize>,
    /// Dropout in wrn's blocks, in [0, 1) (default 0.3).
    #[arg(long)]
    pub dropout: Option<f64>,
    /// Resolution image folders are loaded at (default 224; the other data sets have their
    /// own).
    #[arg(long)]
    pub input_size: Option<usize>,
    /// How sparse-aware layers compute: dense (Burn's products on the masked weights), sparse
    /// (sparse kernels on the active weights between mask updates), auto (sparse for layers
    /// whose density is at most --linear-max-density, convolutions at most
    /// --conv-max-density). Backends without sparse kernels run dense and say so once.
    #[arg(long, default_value = "auto")]
    pub execution: Execution,
    /// The highest density, in [0, 1], at which `auto` runs a linear layer sparse.
    #[arg(long, default_value_t = SparseExecution::DEFAULT_LINEAR_MAX_DENSITY)]
    pub linear_max_density: f64,
    /// The highest density, in [0, 1], at which `auto` runs a convolution sparse.
    #[arg(long, default_value_t = SparseExecution::DEFAULT_CONV_MAX_DENSITY)]
    pub conv_max_density: f64,
}

/// Settings a resumed run may change: where the data comes from, the device and how its layers
/// compute, how long to train and how much of the test set to score. Every other setting changes the result.
const RESUMABLE_KEYS: [&str; 9] = [
    "data-dir",
    "no-fetch",
    "device",
    "execution",
    "linear-max-density",
    "conv-max-density",
    "epochs",
    "max-steps",
    "test-subset",
];

/// Keys of earlier versions, read as the key they became.
const RENAMED_KEYS: [(&str, &str); 4] = [
    ("wrn-depth", "depth"),
    ("wrn-width", "width"),
    ("width-multiplier", "width"),
    ("image-size", "input-size"),
];

impl Default for TrainSettings {
    /// The flags' defaults.
    fn default() -> Self {
        let command = Self::augment_args(clap::Command::new("defaults"));
        let matches = command
            .try_get_matches_from(["defaults"])
            .expect("every setting has a default or is optional");
        Self::from_arg_matches(&matches).expect("the defaults parse")
    }
}

impl TrainSettings {
    /// The settings of a run: the defaults, then the keys of `file` (TOML), then the settings
    /// of `flags` whose ids (field names) are in `given`, the flags given on the command line.
    /// A learning-rate schedule given by flag replaces the other kind from the file. The
    /// result is validated.
    ///
    /// # Errors
    /// [`CliError::Config`] for a file that cannot be read or parsed; [`CliError::Invalid`]
    /// for invalid values.
    pub fn resolve(
        file: Option<&Path>,
        flags: &TrainSettings,
        given: &[String],
    ) -> Result<Self, CliError> {
        let mut table = match file {
            Some(path) => {
                let (table, _) = Self::read_toml_file(path)?;
                table
            }
            None => toml::Table::new(),
        };
        let flags = toml::Table::try_from(flags)
            .map_err(|e| CliError::Invalid(format!("cannot represent the flags: {e}")))?;
        let given: Vec<String> = given.iter().map(|id| id.replace('_', "-")).collect();
        for key in &given {
            if let Some(value) = flags.get(key) {
                table.insert(key.clone(), value.clone());
            }
        }
        // N:M fixes the sparsity: it is the default when neither the file nor a flag sets it.
        if !table.contains_key("sparsity") {
            let structure = table
                .get("structure")
                .and_then(|v| v.as_str())
                .and_then(|s| s.parse::<Structure>().ok());
            if let Some(implied) = structure.and_then(|s| s.implied_sparsity()) {
                table.insert("sparsity".into(), toml::Value::Float(implied));
            }
        }
        for (flag, other) in [
            ("lr-decay-steps", "lr-decay-epochs"),
            ("lr-decay-epochs", "lr-decay-steps"),
        ] {
            if given.iter().any(|k| k == flag) && !given.iter().any(|k| k == other) {
                table.remove(other);
            }
        }
        let settings = Self::deserialize(table).map_err(|e| CliError::Invalid(e.to_string()))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Read a TOML file.
    ///
    /// # Errors
    /// [`CliError::Config`] naming the file and the key or value at fault.
    pub fn from_toml_file(path: &Path) -> Result<Self, CliError> {
        Self::read_toml_file(path).map(|(_, settings)| settings)
    }

    /// The file's keys (earlier names renamed) and the settings they make.
    fn read_toml_file(path: &Path) -> Result<(toml::Table, Self), CliError> {
        let config = |reason: String| CliError::Config {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| config(e.to_string()))?;
        let table = Self::toml_table(&text).map_err(config)?;
        let settings = Self::deserialize(table.clone()).map_err(|e| config(e.to_string()))?;
        Ok((table, settings))
    }

    fn toml_table(text: &str) -> Result<toml::Table, String> {
        let mut table: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
        for (old, new) in RENAMED_KEYS {
            if let Some(value) = table.remove(old) {
                if table.contains_key(new) {
                    return Err(format!(
                        "`{old}` and `{new}` are both set: `{old}` is the earlier name of `{new}`"
                    ));
                }
                table.insert(new.to_string(), value);
            }
        }
        Ok(table)
    }

    /// Parse TOML text.
    ///
    /// # Errors
    /// The parser's message (unknown key, wrong type, ...).
    pub fn from_toml(text: &str) -> Result<Self, String> {
        Self::deserialize(Self::toml_table(text)?).map_err(|e| e.to_string())
    }

    /// The settings as TOML (what a run directory keeps as `config.toml`).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// The settings of `self` that differ from `saved` (a run's checkpointed settings) and
    /// would change the result of resuming it: `key: saved -> now`, one per key, in key order.
    /// `epochs` may grow (a run can be extended; with `end-step` unset its default, 75% of the
    /// run, moves with it).
    pub fn resume_differences(&self, saved: &TrainSettings) -> Vec<String> {
        let table = |s: &TrainSettings| toml::Table::try_from(s).unwrap_or_default();
        let (now, before) = (table(self), table(saved));
        let mut keys: Vec<&String> = now.keys().chain(before.keys()).collect();
        keys.sort();
        keys.dedup();
        let show = |v: Option<&toml::Value>| v.map_or("unset".to_string(), |v| v.to_string());
        keys.into_iter()
            .filter(|k| !RESUMABLE_KEYS.contains(&k.as_str()))
            .filter(|k| now.get(*k) != before.get(*k))
            .map(|k| format!("{k}: {} -> {}", show(before.get(k)), show(now.get(k))))
            .collect()
    }

    /// The model's knobs: the settings' own, and the data's classes, channels and size.
    pub fn model_options(&self, data: &ImageSet) -> ModelOptions {
        ModelOptions {
            num_classes: Some(data.classes),
            input_size: Some(data.height),
            in_channels: Some(data.channels),
            width: self.width,
            depth: self.depth,
            dropout: self.dropout,
            execution: Some(self.sparse_execution()),
        }
    }

    /// The execution policy of sparse-aware layers.
    pub fn sparse_execution(&self) -> SparseExecution {
        SparseExecution::new(self.execution)
            .with_linear_max_density(self.linear_max_density)
            .with_conv_max_density(self.conv_max_density)
    }

    /// The sparsity configuration.
    ///
    /// # Errors
    /// [`CliError::Invalid`] for a malformed `PATTERN=S`, and the configuration's own checks.
    pub fn sparsity_config(&self) -> Result<SparsityConfig, CliError> {
        let mut c = SparsityConfig::new(self.sparsity)
            .with_distribution(self.distribution)
            .with_erk_power_scale(self.erk_power_scale)
            .with_first_layer_sparsity(self.first_layer_sparsity)
            .with_last_layer_sparsity(self.last_layer_sparsity)
            .with_init(self.mask_init)
            .with_structure(self.structure)
            .with_seed(self.seed);
        for entry in &self.custom_sparsity {
            let (pattern, value) = entry.split_once('=').ok_or_else(|| {
                CliError::Invalid(format!("custom sparsity `{entry}` is not PATTERN=S"))
            })?;
            let value: f64 = value.trim().parse().map_err(|_| {
                CliError::Invalid(format!(
                    "custom sparsity `{entry}`: `{value}` is not a number"
                ))
            })?;
            c = c.with_custom_sparsity(pattern.trim(), value);
        }
        c.validate()?;
        Ok(c)
    }

    /// The dynamic-sparse-training configuration for a run of `total_steps` optimizer steps.
    ///
    /// # Errors
    /// [`CliError::Invalid`] for an unknown anneal, and the configuration's own checks.
    pub fn dst_config(&self, total_steps: i64) -> Result<DstConfig, CliError> {
        let anneal: DropAnneal = self.drop_anneal.parse().map_err(CliError::Invalid)?;
        let grow_init: GrowInit = self.grow_init.parse().map_err(CliError::Invalid)?;
        // The end step scales with the multiplier in DstConfig; the default is 75% of the
        // (already scaled) run, so divide it back.
        let end = self
            .end_step
            .unwrap_or_else(|| ((total_steps as f64 * 0.75) / self.steps_multiplier) as i64);
        let c = DstConfig::new(self.method)
            .with_begin_step(self.begin_step)
            .with_end_step(end)
            .with_frequency(self.delta_t)
            .with_drop_fraction(self.drop_fraction)
            .with_drop_anneal(anneal)
            .with_grow_init(grow_init)
            .with_training_steps_multiplier(self.steps_multiplier)
            .with_train_on_update_steps(self.train_on_update_steps)
            .with_rigl_acc_scale(self.rigl_acc_scale)
            .with_threshold_decay(self.threshold_decay)
            .with_pruning_scope(self.pruning_scope)
            .with_weight_decay(self.weight_decay);
        c.validate()?;
        Ok(c)
    }

    /// Epochs after the multiplier, truncated (the reference's `int(...)`), at least 1.
    pub fn total_epochs(&self) -> usize {
        (((self.epochs as f64) * self.steps_multiplier) as usize).max(1)
    }

    /// The learning rate of the optimizer step taken at step counter `step` (optimizer steps
    /// taken before it) in `epoch` (0-based).
    ///
    /// With `lr-decay-epochs`, the rate drops at the start of each listed epoch (scaled by the
    /// multiplier); with `lr-decay-steps`, once `step` exceeds a listed step (each scaled by the
    /// multiplier and truncated, as the reference scales its boundaries), as TF's
    /// `piecewise_constant(global_step, boundaries, values)` does.
    ///
    /// `lr-multipliers`, when given, replace the powers of the factor; during `lr-warmup-steps`
    /// the rate is `lr * step / warmup` (the reference's MobileNet warm-up, which starts at 0).
    pub fn lr_at(&self, epoch: usize, step: i64) -> f64 {
        let warmup = self.scaled_steps(self.lr_warmup_steps);
        if step < warmup {
            return self.lr * step as f64 / warmup as f64;
        }
        let drops = if self.lr_decay_steps.is_empty() {
            self.lr_decay_epochs
                .iter()
                .filter(|&&e| (epoch as f64) >= e * self.steps_multiplier)
                .count()
        } else {
            self.lr_decay_steps
                .iter()
                .filter(|&&b| step > self.scaled_steps(b))
                .count()
        };
        match drops {
            0 => self.lr,
            d if !self.lr_multipliers.is_empty() => self.lr * self.lr_multipliers[d - 1],
            d => self.lr * self.lr_decay_factor.powi(d as i32),
        }
    }

    /// A step count of the base run scaled by the multiplier, truncated as the reference's
    /// `int(steps * training_steps_multiplier)`.
    pub fn scaled_steps(&self, steps: i64) -> i64 {
        (steps as f64 * self.steps_multiplier) as i64
    }

    /// The optimizer steps of the whole run over `train_images` images: batches per epoch
    /// times [`total_epochs`](Self::total_epochs).
    ///
    /// # Errors
    /// [`CliError::Invalid`] when the count does not fit in 63 bits.
    pub fn total_steps(&self, train_images: usize) -> Result<i64, CliError> {
        train_images
            .div_ceil(self.batch_size.max(1))
            .checked_mul(self.total_epochs())
            .and_then(|n| i64::try_from(n).ok())
            .ok_or_else(|| {
                CliError::Invalid(format!(
                    "{} epochs of {train_images} images in batches of {} are more steps than a run can count",
                    self.total_epochs(),
                    self.batch_size
                ))
            })
    }

    /// Check values no other check covers.
    ///
    /// # Errors
    /// [`CliError::Invalid`] naming the setting.
    pub fn validate(&self) -> Result<(), CliError> {
        let bad = |m: String| Err(CliError::Invalid(m));
        if self.batch_size == 0 {
            return bad("batch size must be at least 1".into());
        }
        self.sparse_execution().validate()?;
        if self.train_subset == Some(0) {
            return bad("train subset 0: a run needs at least one training image".into());
        }
        if self.test_subset == Some(0) {
            return bad("test subset 0: scoring needs at least one test image".into());
        }
        if self.input_size == Some(0) {
            return bad("input size 0: images need at least one pixel".into());
        }
        if self.epochs == 0 {
            return bad("epochs must be at least 1".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!("learning rate {} must be positive", self.lr));
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return bad(format!(
                "label smoothing {} is outside [0, 1)",
                self.label_smoothing
            ));
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return bad(format!("momentum {} is outside [0, 1)", self.momentum));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(format!("weight decay {} must be >= 0", self.weight_decay));
        }
        if !self.lr_decay_steps.is_empty() && !self.lr_decay_epochs.is_empty() {
            return bad(
                "lr-decay-steps and lr-decay-epochs are both set: choose one schedule".into(),
            );
        }
        if let Some(b) = self.lr_decay_steps.iter().find(|&&b| b < 0) {
            return bad(format!("learning-rate decay step {b} is negative"));
        }
        let boundaries = self.lr_decay_steps.len().max(self.lr_decay_epochs.len());
        if !self.lr_multipliers.is_empty() && self.lr_multipliers.len() != boundaries {
            return bad(format!(
                "{} learning-rate multipliers for {boundaries} decay boundaries: give one per boundary",
                self.lr_multipliers.len()
            ));
        }
        if let Some(m) = self
            .lr_multipliers
            .iter()
            .find(|m| !(m.is_finite() && **m > 0.0))
        {
            return bad(format!("learning-rate multiplier {m} must be positive"));
        }
        if self.lr_warmup_steps < 0 {
            return bad(format!(
                "learning-rate warm-up of {} steps is negative",
                self.lr_warmup_steps
            ));
        }
        if !(self.steps_multiplier.is_finite() && self.steps_multiplier > 0.0) {
            return bad(format!(
                "steps multiplier {} must be positive",
                self.steps_multiplier
            ));
        }
        if !(0.0..=1.0).contains(&self.drop_fraction) {
            return bad(format!(
                "drop fraction {} is outside [0, 1]",
                self.drop_fraction
            ));
        }
        if !(self.lr_decay_factor.is_finite() && self.lr_decay_factor > 0.0) {
            return bad(format!(
                "learning-rate decay factor {} must be positive",
                self.lr_decay_factor
            ));
        }
        if !self.rigl_acc_scale.is_finite() {
            return bad(format!(
                "rigl-acc-scale {} must be finite",
                self.rigl_acc_scale
            ));
        }
        if !(0.0..=1.0).contains(&self.threshold_decay) {
            return bad(format!(
                "threshold decay {} is outside [0, 1]",
                self.threshold_decay
            ));
        }
        self.sparsity_config()?;
        self.drop_anneal
            .parse::<DropAnneal>()
            .map_err(CliError::Invalid)?;
        self.grow_init
            .parse::<GrowInit>()
            .map_err(CliError::Invalid)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CONFIGS: [&str; 5] = [
        include_str!("../../../configs/mnist-rigl.toml"),
        include_str!("../../../configs/mnist.toml"),
        include_str!("../../../configs/cifar-wrn.toml"),
        include_str!("../../../configs/imagenet-resnet50.toml"),
        include_str!("../../../configs/imagenet-mobilenet-v1.toml"),
    ];

    fn value() -> impl Strategy<Value = toml::Value> {
        prop_oneof![
            any::<i64>().prop_map(toml::Value::Integer),
            prop_oneof![Just(0i64), Just(-1), Just(1), Just(i64::MAX), Just(1 << 40)]
                .prop_map(toml::Value::Integer),
            prop_oneof![
                Just(f64::NAN),
                Just(f64::INFINITY),
                Just(-0.5),
                Just(0.0),
                Just(1.0),
                Just(1.5),
                Just(1e300),
                any::<f64>()
            ]
            .prop_map(toml::Value::Float),
            any::<bool>().prop_map(toml::Value::Boolean),
            "[a-z0-9=:._*-]{0,12}".prop_map(toml::Value::String),
            prop::collection::vec(
                prop_oneof![
                    (-5.0f64..200.0).prop_map(toml::Value::Float),
                    "[a-z0-9=._*]{0,8}".prop_map(toml::Value::String),
                    (-3i64..100_000).prop_map(toml::Value::Integer),
                ],
                0..4
            )
            .prop_map(toml::Value::Array),
        ]
    }

    /// A value of `old`'s type from the candidates (any value, an integer, a float, a string).
    fn same_type(
        old: &toml::Value,
        (any, int, float, string): (toml::Value, i64, f64, String),
    ) -> toml::Value {
        let small = [0, 1, 2, -1, 3, 7, 100, 1 << 40];
        match old {
            toml::Value::Integer(_) => toml::Value::Integer(if int % 3 == 0 {
                int
            } else {
                small[(int.unsigned_abs() % 8) as usize]
            }),
            toml::Value::Float(_) => toml::Value::Float(if int % 5 == 0 {
                [f64::NAN, f64::INFINITY, 1.0, 0.0, -0.0][(int.unsigned_abs() % 5) as usize]
            } else {
                float / 1e3
            }),
            toml::Value::String(_) => toml::Value::String(string),
            toml::Value::Boolean(_) => toml::Value::Boolean(int % 2 == 0),
            _ => any,
        }
    }

    #[test]
    fn density_thresholds_outside_the_unit_interval_are_named() {
        for (key, kind) in [
            ("linear-max-density", "linear"),
            ("conv-max-density", "convolution"),
        ] {
            let s = TrainSettings::from_toml(&format!("{key} = 1.5")).unwrap();
            let e = s.validate().unwrap_err().to_string();
            assert!(
                e.contains(&format!(
                    "density threshold 1.5 for {kind} layers is outside [0, 1]"
                )),
                "{e}"
            );
        }
        let s = TrainSettings::from_toml("conv-max-density = 0.5").unwrap();
        assert_eq!(s.sparse_execution().conv_max_density, 0.5);
        assert_eq!(
            TrainSettings::default().sparse_execution(),
            SparseExecution::default()
        );
    }

    /// Everything a run derives from its settings, as `rigl train` does before touching data.
    fn derive(s: &TrainSettings) {
        if s.validate().is_err() {
            return;
        }
        let data = ImageSet {
            pixels: Vec::new(),
            labels: Vec::new(),
            channels: 1,
            height: s.input_size.unwrap_or(28),
            width: s.input_size.unwrap_or(28),
            classes: 10,
            normalization: vec![(0.5, 0.25)],
        };
        // Model knobs (width, depth, dropout) are the model's to check.
        if s.model.config(&s.model_options(&data)).is_err() {
            return;
        }
        let _ = s.sparsity_config();
        if let Ok(total) = s.total_steps(60_000) {
            let _ = s.dst_config(total).map(|d| d.schedule());
            for step in [0, 1, total / 2, total] {
                let _ = s.lr_at(s.total_epochs() / 2, step);
                let _ = s.scaled_steps(step);
            }
        }
        let back = TrainSettings::from_toml(&s.to_toml()).expect("settings read back");
        assert!(
            back.resume_differences(s).is_empty(),
            "{:?}",
            back.resume_differences(s)
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2048, failure_persistence: None, ..ProptestConfig::default() })]

        /// Arbitrary text: settings or a typed error, never a panic.
        #[test]
        fn arbitrary_text_never_panics(text in "(?s).{0,300}") {
            if let Ok(s) = TrainSettings::from_toml(&text) {
                derive(&s);
            }
        }

        /// The shipped configurations with values replaced, keys added or removed: a run's
        /// settings or a typed error naming the problem, never a panic.
        #[test]
        fn edited_configs_never_panic(
            which in 0usize..5,
            edits in prop::collection::vec(
                (
                    any::<prop::sample::Index>(),
                    (value(), any::<i64>(), -1e3f64..1e3, "[a-z0-9=:._*-]{0,12}"),
                    prop::option::of("[a-z-]{1,14}"),
                    prop::bool::weighted(0.8),
                ),
                1..4,
            ),
            drop in prop::option::of(any::<prop::sample::Index>()),
        ) {
            let mut table: toml::Table = toml::from_str(CONFIGS[which]).unwrap();
            for (at, value, new_key, typed) in edits {
                let key = match new_key {
                    Some(k) => k,
                    None => {
                        let keys: Vec<String> = table.keys().cloned().collect();
                        keys[at.index(keys.len())].clone()
                    }
                };
                // Mostly a value of the type the key has, so that edits reach validation.
                let value = match (table.get(&key), typed) {
                    (Some(old), true) => same_type(old, value),
                    _ => value.0,
                };
                table.insert(key, value);
            }
            if let Some(d) = drop {
                let keys: Vec<String> = table.keys().cloned().collect();
                table.remove(&keys[d.index(keys.len())]);
            }
            let text = toml::to_string(&table).unwrap();
            if let Ok(s) = TrainSettings::from_toml(&text) {
                derive(&s);
            }
        }
    }
}
