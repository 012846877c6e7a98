//! [`SparsityConfig`]: which weights become sparse, how sparse, and how masks start.

use crate::distribution::Distribution;
use crate::error::{Result, SparsityError, check_sparsity};
use crate::mask::GradientMode;
use crate::structure::Structure;
use burn::config::Config;
use serde::{Deserialize, Serialize};

/// How the initial mask of each layer is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum MaskInit {
    /// Exactly `floor(s * N)` zeros placed uniformly at random by the counter-based generator
    /// keyed by `(seed, parameter path, step 0)`: identical on every backend, run and replica.
    #[default]
    Random,
    /// Keep the `N - floor(s * N)` weights of largest magnitude (ties to the lower index), for
    /// sparsifying a trained model.
    Magnitude,
    /// All ones: every selected weight is masked but active, for methods that choose the mask
    /// later (SNIP, gradual pruning).
    Dense,
}

impl core::str::FromStr for MaskInit {
    type Err = String;

    fn from_str(s: &str) -> core::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "random" => Ok(MaskInit::Random),
            "magnitude" => Ok(MaskInit::Magnitude),
            "dense" => Ok(MaskInit::Dense),
            other => Err(format!(
                "unknown mask init `{other}`: expected random, magnitude or dense"
            )),
        }
    }
}

/// Configuration of [`Sparsify::sparsify`](crate::Sparsify::sparsify).
///
/// Selection: every float parameter of rank >= 2 (the kernels of linear and conv layers;
/// biases and normalisation parameters are rank 1 and never masked), narrowed by `include`
/// and `exclude` patterns (see [`crate::pattern`]). Layer order (for the first- and last-layer
/// rules) is the module's traversal order, its fields in declaration order.
///
/// ```
/// use rigl_core::SparsityConfig;
/// let config = SparsityConfig::erk(0.9).first_layer_dense().with_seed(7);
/// assert!(config.validate().is_ok());
/// ```
#[derive(Config, Debug, PartialEq)]
pub struct SparsityConfig {
    /// Global sparsity: the fraction of zeros, in `[0, 1)`.
    pub sparsity: f64,
    /// How the sparsity is spread over layers.
    #[config(default = "Distribution::Uniform")]
    pub distribution: Distribution,
    /// ERK's power scale (the reference's `erk_power_scale`); ignored by the others.
    #[config(default = 1.0)]
    pub erk_power_scale: f64,
    /// Sparsity of the first maskable layer: `None` follows the distribution, `Some(0.0)` leaves
    /// the layer unmasked (the reference's `first_layer_sparsity = 0`), another value sets it and
    /// takes the layer out of the budget.
    #[config(default = "None")]
    pub first_layer_sparsity: Option<f64>,
    /// Sparsity of the last maskable layer, with the same meaning as `first_layer_sparsity`.
    #[config(default = "None")]
    pub last_layer_sparsity: Option<f64>,
    /// Per-layer sparsities by path pattern; the first matching pattern wins. Such layers keep
    /// their value and take no part in the ER/ERK budget. `0.0` keeps a layer masked but dense.
    #[config(default = "Vec::new()")]
    pub custom: Vec<(String, f64)>,
    /// Only parameters matching one of these patterns are masked (empty: all maskable ones).
    #[config(default = "Vec::new()")]
    pub include: Vec<String>,
    /// Parameters matching one of these patterns are never masked.
    #[config(default = "Vec::new()")]
    pub exclude: Vec<String>,
    /// How initial masks are chosen.
    #[config(default = "MaskInit::Random")]
    pub init: MaskInit,
    /// How gradients reach the stored weights.
    #[config(default = "GradientMode::Masked")]
    pub gradient_mode: GradientMode,
    /// Seed of the counter-based generator behind random masks.
    #[config(default = 0)]
    pub seed: u64,
    /// The structure masks keep (see [`crate::Structure`]). N:M fixes every sparse layer's
    /// sparsity at `1 - n / m`, so `sparsity` must equal it, and custom sparsities may only
    /// keep a layer dense (0) or equal it; constant fan-in follows the distribution.
    #[config(default = "Structure::Unstructured")]
    pub structure: Structure,
}

impl SparsityConfig {
    /// Uniform distribution at `sparsity`.
    pub fn uniform(sparsity: f64) -> Self {
        Self::new(sparsity)
    }

    /// Erdos-Renyi distribution at `sparsity`.
    pub fn er(sparsity: f64) -> Self {
        Self::new(sparsity).with_distribution(Distribution::Er)
    }

    /// Erdos-Renyi-Kernel distribution at `sparsity`.
    pub fn erk(sparsity: f64) -> Self {
        Self::new(sparsity).with_distribution(Distribution::Erk)
    }

    /// Leave the first maskable layer unmasked (dense).
    pub fn first_layer_dense(self) -> Self {
        self.with_first_layer_sparsity(Some(0.0))
    }

    /// Leave the last maskable layer unmasked (dense).
    pub fn last_layer_dense(self) -> Self {
        self.with_last_layer_sparsity(Some(0.0))
    }

    /// Add a custom sparsity for the layers matching `pattern`.
    pub fn with_custom_sparsity(mut self, pattern: impl Into<String>, sparsity: f64) -> Self {
        self.custom.push((pattern.into(), sparsity));
        self
    }

    /// Mask only parameters matching `pattern` (may be called repeatedly).
    pub fn include(mut self, pattern: impl Into<String>) -> Self {
        self.include.push(pattern.into());
        self
    }

    /// Never mask parameters matching `pattern` (may be called repeatedly).
    pub fn exclude(mut self, pattern: impl Into<String>) -> Self {
        self.exclude.push(pattern.into());
        self
    }

    /// N:M structure (`n` active of every `m` consecutive inputs of an output), at its sparsity
    /// `1 - n / m`.
    pub fn n_m(n: usize, m: usize) -> Self {
        let structure = Structure::NM { n, m };
        Self::new(structure.implied_sparsity().unwrap_or(0.0)).with_structure(structure)
    }

    /// Check every value that does not depend on the model.
    ///
    /// # Errors
    /// [`SparsityError::InvalidSparsity`] for a global, first- or last-layer sparsity outside
    /// `[0, 1)`, [`SparsityError::InvalidCustomSparsity`] for a custom value outside `[0, 1]`,
    /// [`SparsityError::InvalidPowerScale`] for a non-finite ERK power, and
    /// [`SparsityError::InvalidStructure`] for an invalid N:M or a sparsity it contradicts.
    pub fn validate(&self) -> Result<()> {
        check_sparsity("global", self.sparsity)?;
        if let Some(s) = self.first_layer_sparsity {
            check_sparsity("first-layer", s)?;
        }
        if let Some(s) = self.last_layer_sparsity {
            check_sparsity("last-layer", s)?;
        }
        for (pattern, value) in &self.custom {
            if !(0.0..=1.0).contains(value) {
                return Err(SparsityError::InvalidCustomSparsity {
                    pattern: pattern.clone(),
                    value: *value,
                });
            }
        }
        if !self.erk_power_scale.is_finite() {
            return Err(SparsityError::InvalidPowerScale(self.erk_power_scale));
        }
        self.structure.validate()?;
        if let Some(implied) = self.structure.implied_sparsity() {
            let agrees = |s: f64| (s - implied).abs() < 1e-9;
            if !agrees(self.sparsity) {
                return Err(SparsityError::InvalidStructure(format!(
                    "{} makes every sparse layer {implied} sparse, but the sparsity is {} (set the sparsity to {implied})",
                    self.structure, self.sparsity
                )));
            }
            let rules = [
                ("first-layer", self.first_layer_sparsity),
                ("last-layer", self.last_layer_sparsity),
            ];
            let custom = self.custom.iter().map(|(p, s)| (p.as_str(), Some(*s)));
            for (what, value) in rules.into_iter().chain(custom) {
                if let Some(s) = value
                    && s != 0.0
                    && !agrees(s)
                {
                    return Err(SparsityError::InvalidStructure(format!(
                        "{} makes every sparse layer {implied} sparse, but `{what}` asks for {s} (0 keeps it dense)",
                        self.structure
                    )));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_and_validation() {
        let c = SparsityConfig::erk(0.9).first_layer_dense().with_seed(3);
        assert_eq!(c.distribution, Distribution::Erk);
        assert_eq!(c.first_layer_sparsity, Some(0.0));
        assert_eq!(c.seed, 3);
        c.validate().unwrap();

        let err = SparsityConfig::uniform(1.5).validate().unwrap_err();
        assert!(err.to_string().contains("1.5"), "{err}");
        assert!(matches!(
            SparsityConfig::uniform(0.5)
                .with_last_layer_sparsity(Some(1.0))
                .validate(),
            Err(SparsityError::InvalidSparsity { .. })
        ));
        assert!(matches!(
            SparsityConfig::uniform(0.5)
                .with_custom_sparsity("fc1", -0.5)
                .validate(),
            Err(SparsityError::InvalidCustomSparsity { .. })
        ));
    }

    #[test]
    fn mask_init_parses_as_it_serialises() {
        for init in [MaskInit::Random, MaskInit::Magnitude, MaskInit::Dense] {
            let name = serde_json::to_string(&init).unwrap();
            assert_eq!(name.trim_matches('"').parse::<MaskInit>(), Ok(init));
        }
        let err = "lottery".parse::<MaskInit>().unwrap_err();
        assert!(err.contains("unknown mask init `lottery`"), "{err}");
    }

    #[test]
    fn round_trips_through_json() {
        let c = SparsityConfig::er(0.8)
            .with_custom_sparsity("fc2", 0.5)
            .exclude("head*")
            .with_init(MaskInit::Magnitude);
        let json = serde_json::to_string(&c).unwrap();
        assert!(json.contains("\"er\""), "{json}");
        let back: SparsityConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
    }
}
