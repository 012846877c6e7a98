//! `rigl train` settings: defaults, a TOML file with the flags' names as keys, and flags,
//! each overriding the one before.

use crate::CliError;
use rigl_core::optim::WeightDecayScope;
use rigl_core::{Distribution, DropAnneal, DstConfig, GrowInit, MaskInit, Method, SparsityConfig};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Everything a training run is made of. In a TOML file, keys are the flags' names
/// (`delta-t = 100`); on the command line, flags override the file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default, deny_unknown_fields)]
pub struct TrainSettings {
    /// Model: mlp, wrn, resnet50, mobilenet-v1, mobilenet-v2.
    pub model: String,
    /// Data set: mnist, fashion-mnist, cifar10, imagefolder.
    pub dataset: String,
    /// Data directory (default: `$RIGL_DATA_DIR`, else the per-user cache).
    pub data_dir: Option<PathBuf>,
    /// Do not fetch a missing data set.
    pub no_fetch: bool,
    /// Method: dense, scratch, static_rezero, set, snfs, rigl, snip, prune (or the reference's
    /// names: baseline, static, momentum).
    pub method: Method,
    /// Sparsity distribution: uniform, er, erk.
    pub distribution: Distribution,
    /// Global sparsity in [0, 1).
    pub sparsity: f64,
    /// First-layer sparsity (0: dense, unmasked); unset: follow the distribution.
    pub first_layer_sparsity: Option<f64>,
    /// Last-layer sparsity (0: dense, unmasked); unset: follow the distribution.
    pub last_layer_sparsity: Option<f64>,
    /// Custom per-layer sparsities, `PATTERN=S` (e.g. `fc2=0.882`).
    pub custom_sparsity: Vec<String>,
    /// ERK power scale.
    pub erk_power_scale: f64,
    /// Initial masks: random or magnitude.
    pub mask_init: MaskInit,
    /// Steps between mask updates (delta T).
    pub delta_t: i64,
    /// Drop fraction (alpha).
    pub drop_fraction: f64,
    /// Drop-fraction anneal: constant, cosine, exponential_K.
    pub drop_anneal: String,
    /// First step of mask updates.
    pub begin_step: i64,
    /// Last step of mask updates; unset: 75% of the run (negative: never stop).
    pub end_step: Option<i64>,
    /// Scales the run: epochs, learning-rate decay epochs and begin/end steps.
    pub steps_multiplier: f64,
    /// Take the optimizer step on RigL's update iterations too.
    pub train_on_update_steps: bool,
    /// Weight of new connections: zeros, initial_dist[_X], random_normal[_X],
    /// random_uniform[_X], and for RigL grad_scale[_X], grad_sign[_X] (the reference's
    /// `grow_init`; X divides).
    pub grow_init: String,
    /// RigL: optimizer slots of new connections start at this multiple of the dense gradient
    /// (the reference's `rigl_acc_scale`; 0: zero).
    pub rigl_acc_scale: f64,
    /// Gradual pruning's threshold smoothing (model_pruning's `threshold_decay`).
    pub threshold_decay: f64,
    /// Mask depthwise kernels too (the reference's MobileNets never mask them, nor decay them).
    pub mask_depthwise: bool,
    /// Label smoothing of the cross-entropy loss.
    pub label_smoothing: f64,
    /// Initial learning rate.
    pub lr: f64,
    /// Epochs at which the learning rate is multiplied by `lr-decay-factor`.
    pub lr_decay_epochs: Vec<f64>,
    /// Optimizer steps after which the learning rate is multiplied by `lr-decay-factor` (the
    /// reference's piecewise-constant schedule on the global step: the rate drops once the
    /// step exceeds a boundary). RigL's mask-only update iterations do not advance the step.
    /// Exclusive with `lr-decay-epochs`.
    pub lr_decay_steps: Vec<i64>,
    /// Learning-rate decay factor: after the i-th boundary the rate is `lr * factor^i`.
    pub lr_decay_factor: f64,
    /// Multipliers of `lr` after each boundary, one per boundary, instead of powers of
    /// `lr-decay-factor` (the reference's MobileNet schedule: 0.1, 0.01, 0.001, 0.0003).
    pub lr_multipliers: Vec<f64>,
    /// Linear warm-up: the rate grows from 0 to `lr` over the first N optimizer steps (the
    /// reference's MobileNet schedule warms up over 8 epochs).
    pub lr_warmup_steps: i64,
    /// SGD momentum (0: none).
    pub momentum: f64,
    /// Nesterov momentum.
    pub nesterov: bool,
    /// L2 weight decay.
    pub weight_decay: f64,
    /// Which parameters the weight decay applies to: kernels (the reference's L2 on conv and
    /// dense kernels only, never biases or normalisation parameters) or all (Burn's).
    pub weight_decay_scope: WeightDecayScope,
    /// Batch size.
    pub batch_size: usize,
    /// Epochs.
    pub epochs: usize,
    /// Stop after this many optimizer steps (for short runs).
    pub max_steps: Option<i64>,
    /// Use only the first N training images.
    pub train_subset: Option<usize>,
    /// Use only the first N test images.
    pub test_subset: Option<usize>,
    /// Seed of masks, data order and augmentation.
    pub seed: u64,
    /// Device: flex (CPU), wgpu, cuda.
    pub device: String,
    /// WideResNet depth.
    pub wrn_depth: usize,
    /// WideResNet widen factor.
    pub wrn_width: usize,
    /// Dropout in WideResNet blocks.
    pub dropout: f64,
    /// MobileNet width multiplier.
    pub width_multiplier: f64,
    /// Input resolution for image folders.
    pub image_size: usize,
}

impl Default for TrainSettings {
    fn default() -> Self {
        Self {
            model: "mlp".into(),
            dataset: "mnist".into(),
            data_dir: None,
            no_fetch: false,
            method: Method::Rigl,
            distribution: Distribution::Uniform,
            sparsity: 0.9,
            first_layer_sparsity: None,
            last_layer_sparsity: None,
            custom_sparsity: Vec::new(),
            erk_power_scale: 1.0,
            mask_init: MaskInit::Random,
            delta_t: 100,
            drop_fraction: 0.3,
            drop_anneal: "cosine".into(),
            begin_step: 0,
            end_step: None,
            steps_multiplier: 1.0,
            train_on_update_steps: false,
            grow_init: "zeros".into(),
            rigl_acc_scale: 0.0,
            threshold_decay: 0.0,
            mask_depthwise: false,
            label_smoothing: 0.0,
            lr: 0.1,
            lr_decay_epochs: Vec::new(),
            lr_decay_steps: Vec::new(),
            lr_decay_factor: 0.1,
            lr_multipliers: Vec::new(),
            lr_warmup_steps: 0,
            momentum: 0.9,
            nesterov: true,
            weight_decay: 1e-4,
            weight_decay_scope: WeightDecayScope::Kernels,
            batch_size: 100,
            epochs: 10,
            max_steps: None,
            train_subset: None,
            test_subset: None,
            seed: 0,
            device: "flex".into(),
            wrn_depth: 22,
            wrn_width: 2,
            dropout: 0.3,
            width_multiplier: 1.0,
            image_size: 224,
        }
    }
}

impl TrainSettings {
    /// Read a TOML file.
    ///
    /// # Errors
    /// [`CliError::Config`] naming the file and the key or value at fault.
    pub fn from_toml_file(path: &Path) -> Result<Self, CliError> {
        let text = std::fs::read_to_string(path).map_err(|e| CliError::Config {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Self::from_toml(&text).map_err(|reason| CliError::Config {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// Parse TOML text.
    ///
    /// # Errors
    /// The parser's message (unknown key, wrong type, ...).
    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// The settings as TOML (what a run directory keeps as `config.toml`).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
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

    /// Check values no other check covers.
    ///
    /// # Errors
    /// [`CliError::Invalid`] naming the setting.
    pub fn validate(&self) -> Result<(), CliError> {
        let bad = |m: String| Err(CliError::Invalid(m));
        if self.batch_size == 0 {
            return bad("batch size must be at least 1".into());
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
