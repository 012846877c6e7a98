//! [`SparsityPlan`]: the per-layer sparsities for a model, computed from shapes alone.

use crate::config::SparsityConfig;
use crate::distribution::{DistributionLayer, LayerShape, distribute, n_ones};
use crate::error::{Result, SparsityError};
use crate::pattern::matches_param;
use crate::structure::Groups;
use serde::{Deserialize, Serialize};

/// Why a layer has the sparsity it has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerRole {
    /// Sparsity from the distribution.
    Distributed,
    /// Made dense by ER/ERK (its density would exceed 1).
    DenseByDistribution,
    /// Sparsity from the custom map or a first/last-layer value.
    Custom,
    /// Left unmasked by the first- or last-layer rule.
    Unmasked,
    /// Left unmasked by the include/exclude patterns.
    Excluded,
}

/// One kernel of the model in the plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlannedLayer {
    /// Parameter path.
    pub path: String,
    /// Kernel shape.
    pub shape: LayerShape,
    /// Whether a mask is attached.
    pub masked: bool,
    /// Target sparsity (0 for unmasked layers).
    pub sparsity: f64,
    /// Active weights: `N - floor(s * N)`.
    pub n_active: usize,
    /// Why.
    pub role: LayerRole,
    /// The groups the mask is structured in (see [`crate::Structure`]); `None`: unstructured.
    #[serde(default)]
    pub groups: Option<Groups>,
}

impl LayerRole {
    /// Whether the sparsity is the distribution's (the layers a global ranking pools).
    pub fn follows_distribution(&self) -> bool {
        matches!(
            self,
            LayerRole::Distributed | LayerRole::DenseByDistribution
        )
    }
}

impl PlannedLayer {
    /// Number of weights.
    pub fn numel(&self) -> usize {
        self.shape.numel()
    }
}

/// The per-layer plan for a model, in layer order (every kernel of rank >= 2 is listed, masked
/// or not).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SparsityPlan {
    /// Every kernel parameter, in traversal order.
    pub layers: Vec<PlannedLayer>,
    /// ER/ERK's scale factor, when one applies.
    pub eps: Option<f64>,
}

impl SparsityPlan {
    /// Build the plan for kernels `(path, shape)` in layer order.
    ///
    /// # Errors
    /// Any [`SparsityConfig::validate`] error; [`SparsityError::UnmatchedPattern`] for an
    /// include or custom pattern that matches no kernel; [`SparsityError::EmptySelection`]
    /// when nothing is left to mask; distribution errors from
    /// [`crate::distribution::distribute`].
    pub fn build(kernels: &[(String, LayerShape)], config: &SparsityConfig) -> Result<Self> {
        config.validate()?;
        let available = || {
            kernels
                .iter()
                .map(|(p, _)| p.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        if kernels.is_empty() {
            return Err(SparsityError::EmptySelection {
                reason: "the module has no float parameter of rank >= 2 (linear or conv kernel)"
                    .into(),
            });
        }
        for pattern in &config.include {
            if !kernels.iter().any(|(p, _)| matches_param(pattern, p)) {
                return Err(SparsityError::UnmatchedPattern {
                    kind: "include",
                    pattern: pattern.clone(),
                    available: available(),
                });
            }
        }
        for (pattern, _) in &config.custom {
            if !kernels.iter().any(|(p, _)| matches_param(pattern, p)) {
                return Err(SparsityError::UnmatchedPattern {
                    kind: "custom",
                    pattern: pattern.clone(),
                    available: available(),
                });
            }
        }

        let selected: Vec<bool> = kernels
            .iter()
            .map(|(p, _)| {
                (config.include.is_empty() || config.include.iter().any(|i| matches_param(i, p)))
                    && !config.exclude.iter().any(|e| matches_param(e, p))
            })
            .collect();
        let first = selected.iter().position(|&s| s);
        let last = selected.iter().rposition(|&s| s);
        let Some(first) = first else {
            return Err(SparsityError::EmptySelection {
                reason: format!(
                    "the include/exclude patterns leave no kernel; kernels are: {}",
                    available()
                ),
            });
        };
        let last = last.unwrap_or(first);

        // Per selected kernel: None = unmasked by rule, Some(custom) otherwise.
        let mut roles = vec![LayerRole::Excluded; kernels.len()];
        let mut dist_layers = Vec::new();
        let mut dist_index = vec![None; kernels.len()];
        for (i, (path, shape)) in kernels.iter().enumerate() {
            if !selected[i] {
                continue;
            }
            let rule = if i == first && config.first_layer_sparsity.is_some() {
                config.first_layer_sparsity
            } else if i == last && config.last_layer_sparsity.is_some() {
                config.last_layer_sparsity
            } else {
                None
            };
            let custom = match rule {
                Some(0.0) => {
                    roles[i] = LayerRole::Unmasked;
                    continue;
                }
                Some(s) => Some(s),
                None => config
                    .custom
                    .iter()
                    .find(|(p, _)| matches_param(p, path))
                    .map(|(_, s)| *s),
            };
            roles[i] = if custom.is_some() {
                LayerRole::Custom
            } else {
                LayerRole::Distributed
            };
            dist_index[i] = Some(dist_layers.len());
            dist_layers.push(DistributionLayer {
                name: path.clone(),
                shape: shape.clone(),
                custom,
            });
        }
        if dist_layers.is_empty() {
            return Err(SparsityError::EmptySelection {
                reason: "the first/last-layer rules leave every selected kernel unmasked".into(),
            });
        }
        let outcome = distribute(
            &dist_layers,
            config.sparsity,
            config.distribution,
            config.erk_power_scale,
        )?;

        let layers = kernels
            .iter()
            .enumerate()
            .map(|(i, (path, shape))| {
                let (masked, mut sparsity, role) = match dist_index[i] {
                    Some(d) => {
                        let role = if outcome.dense.contains(&d) {
                            LayerRole::DenseByDistribution
                        } else {
                            roles[i]
                        };
                        (true, outcome.sparsities[d], role)
                    }
                    None => (false, 0.0, roles[i]),
                };
                let mut n_active = n_ones(sparsity, shape.numel());
                let mut groups = None;
                if masked && sparsity > 0.0 {
                    // N:M fixes the sparsity of every sparse layer; constant fan-in rounds the
                    // distribution's count to a whole number per output.
                    let structured = config.structure.implied_sparsity().unwrap_or(sparsity);
                    groups = Groups::of_layer(config.structure, path, shape, structured)?;
                    if let Some(g) = &groups {
                        n_active = g.n_active();
                        sparsity = 1.0 - n_active as f64 / shape.numel().max(1) as f64;
                    }
                }
                Ok(PlannedLayer {
                    path: path.clone(),
                    shape: shape.clone(),
                    masked,
                    sparsity,
                    n_active,
                    role,
                    groups,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            layers,
            eps: outcome.eps,
        })
    }

    /// The planned layer at `path`.
    pub fn layer(&self, path: &str) -> Option<&PlannedLayer> {
        self.layers.iter().find(|l| l.path == path)
    }

    /// Active weights over all kernels (unmasked ones count in full).
    pub fn n_active(&self) -> usize {
        self.layers.iter().map(|l| l.n_active).sum()
    }

    /// Weights over all kernels.
    pub fn numel(&self) -> usize {
        self.layers.iter().map(PlannedLayer::numel).sum()
    }

    /// Global sparsity over all kernels.
    pub fn global_sparsity(&self) -> f64 {
        1.0 - self.n_active() as f64 / self.numel().max(1) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mnist() -> Vec<(String, LayerShape)> {
        vec![
            ("fc1.weight".into(), LayerShape::tf(&[784, 300])),
            ("fc2.weight".into(), LayerShape::tf(&[300, 100])),
            ("fc3.weight".into(), LayerShape::tf(&[100, 10])),
        ]
    }

    #[test]
    fn mnist_reference_setup() {
        let config = SparsityConfig::uniform(0.98)
            .with_custom_sparsity("fc2", 0.882)
            .last_layer_dense();
        let plan = SparsityPlan::build(&mnist(), &config).unwrap();
        let active: Vec<usize> = plan.layers.iter().map(|l| l.n_active).collect();
        assert_eq!(active, [4704, 3540, 1000]);
        assert_eq!(plan.n_active(), 9244);
        assert_eq!(plan.numel(), 266_200);
        assert!((plan.global_sparsity() - 0.9653).abs() < 5e-5);
        assert_eq!(plan.layers[2].role, LayerRole::Unmasked);
        assert!(!plan.layers[2].masked);
        assert_eq!(plan.layers[1].role, LayerRole::Custom);
    }

    #[test]
    fn first_layer_rules() {
        let plan =
            SparsityPlan::build(&mnist(), &SparsityConfig::erk(0.9).first_layer_dense()).unwrap();
        assert!(!plan.layers[0].masked);
        assert!(plan.layers[1].masked && plan.layers[2].masked);
        let plan = SparsityPlan::build(
            &mnist(),
            &SparsityConfig::uniform(0.9).with_first_layer_sparsity(Some(0.5)),
        )
        .unwrap();
        assert_eq!(plan.layers[0].sparsity, 0.5);
        assert_eq!(plan.layers[0].role, LayerRole::Custom);
        assert_eq!(plan.layers[1].sparsity, 0.9);
    }

    #[test]
    fn include_exclude_and_errors() {
        let plan =
            SparsityPlan::build(&mnist(), &SparsityConfig::uniform(0.5).exclude("fc3")).unwrap();
        assert_eq!(plan.layers[2].role, LayerRole::Excluded);
        let plan =
            SparsityPlan::build(&mnist(), &SparsityConfig::uniform(0.5).include("fc2")).unwrap();
        assert_eq!(
            plan.layers.iter().map(|l| l.masked).collect::<Vec<_>>(),
            [false, true, false]
        );
        let err = SparsityPlan::build(
            &mnist(),
            &SparsityConfig::uniform(0.5).with_custom_sparsity("conv9", 0.1),
        )
        .unwrap_err();
        assert!(
            matches!(&err, SparsityError::UnmatchedPattern { pattern, .. } if pattern == "conv9")
        );
        assert!(err.to_string().contains("fc1.weight"), "{err}");
        assert!(matches!(
            SparsityPlan::build(&mnist(), &SparsityConfig::uniform(0.5).exclude("*")),
            Err(SparsityError::EmptySelection { .. })
        ));
        assert!(matches!(
            SparsityPlan::build(&[], &SparsityConfig::uniform(0.5)),
            Err(SparsityError::EmptySelection { .. })
        ));
        assert!(matches!(
            SparsityPlan::build(&mnist(), &SparsityConfig::uniform(1.5)),
            Err(SparsityError::InvalidSparsity { .. })
        ));
    }
}
