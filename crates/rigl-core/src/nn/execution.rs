//! When a sparse-aware layer runs sparse: the execution policy.

use crate::error::{Result, SparsityError};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::Mutex;

/// How a sparse-aware layer computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Execution {
    /// Always the masked dense path (Burn's dense product on the masked weight).
    Dense,
    /// The sparse kernels whenever the layer has a mask, the backend has kernels and the step
    /// does not need the dense gradient.
    Sparse,
    /// [`Execution::Sparse`] for layers whose density is at most the policy's threshold for
    /// their kind, dense otherwise.
    #[default]
    Auto,
}

impl Execution {
    /// Every mode, in the order of the CLI's choices.
    pub const ALL: [Execution; 3] = [Execution::Dense, Execution::Sparse, Execution::Auto];

    /// The CLI name: `dense`, `sparse` or `auto`.
    pub fn name(self) -> &'static str {
        match self {
            Execution::Dense => "dense",
            Execution::Sparse => "sparse",
            Execution::Auto => "auto",
        }
    }
}

impl std::fmt::Display for Execution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Execution {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Execution::ALL
            .into_iter()
            .find(|e| e.name() == s)
            .ok_or_else(|| format!("unknown execution `{s}`: expected dense, sparse or auto"))
    }
}

/// The execution policy of sparse-aware layers.
///
/// Under [`Execution::Auto`] a linear layer runs sparse when its density (active weights over
/// all) is at most [`linear_max_density`](Self::linear_max_density). The default, 0.3, is
/// where the sparse kernels stop being faster than Burn's dense matmul on the CPU backend in
/// `benches/RESULTS.md` (MLP-sized layers at batch 100). A convolution runs sparse at most at
/// [`conv_max_density`](Self::conv_max_density), 0.3 by default: at 10% density the direct
/// sparse convolution trains 1.8-4x faster than Burn's dense one on WideResNet's 3x3 layers,
/// and its cost grows linearly with the density while the dense one stays.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SparseExecution {
    /// The mode.
    pub mode: Execution,
    /// The highest density at which [`Execution::Auto`] runs a linear layer sparse.
    pub linear_max_density: f64,
    /// The highest density at which [`Execution::Auto`] runs a convolution sparse.
    #[serde(default = "default_conv_max_density")]
    pub conv_max_density: f64,
}

fn default_conv_max_density() -> f64 {
    SparseExecution::DEFAULT_CONV_MAX_DENSITY
}

impl Default for SparseExecution {
    fn default() -> Self {
        Self {
            mode: Execution::Auto,
            linear_max_density: Self::DEFAULT_LINEAR_MAX_DENSITY,
            conv_max_density: Self::DEFAULT_CONV_MAX_DENSITY,
        }
    }
}

impl SparseExecution {
    /// The default density threshold of linear layers.
    pub const DEFAULT_LINEAR_MAX_DENSITY: f64 = 0.3;

    /// The default density threshold of convolutions.
    pub const DEFAULT_CONV_MAX_DENSITY: f64 = 0.3;

    /// The default policy in `mode`.
    pub fn new(mode: Execution) -> Self {
        Self {
            mode,
            ..Self::default()
        }
    }

    /// The policy with another threshold for linear layers.
    pub fn with_linear_max_density(mut self, density: f64) -> Self {
        self.linear_max_density = density;
        self
    }

    /// The policy with another threshold for convolutions.
    pub fn with_conv_max_density(mut self, density: f64) -> Self {
        self.conv_max_density = density;
        self
    }

    /// Check the thresholds.
    ///
    /// # Errors
    /// [`SparsityError::InvalidDensityThreshold`] for a threshold outside `[0, 1]` (NaN
    /// included).
    pub fn validate(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.linear_max_density) {
            return Err(SparsityError::InvalidDensityThreshold {
                kind: "linear",
                value: self.linear_max_density,
            });
        }
        if !(0.0..=1.0).contains(&self.conv_max_density) {
            return Err(SparsityError::InvalidDensityThreshold {
                kind: "convolution",
                value: self.conv_max_density,
            });
        }
        Ok(())
    }

    /// Whether a linear layer of `density` runs sparse under this policy.
    pub fn linear_runs_sparse(&self, density: f64) -> bool {
        match self.mode {
            Execution::Dense => false,
            Execution::Sparse => true,
            Execution::Auto => density <= self.linear_max_density,
        }
    }

    /// Whether a convolution of `density` runs sparse under this policy.
    pub fn conv_runs_sparse(&self, density: f64) -> bool {
        match self.mode {
            Execution::Dense => false,
            Execution::Sparse => true,
            Execution::Auto => density <= self.conv_max_density,
        }
    }
}

/// Log `message` at warn level the first time it is seen in this process.
pub(crate) fn warn_once(message: String) {
    static SEEN: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    if seen
        .get_or_insert_with(HashSet::new)
        .insert(message.clone())
    {
        log::warn!("{message}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_outside_the_unit_interval_are_typed_errors() {
        for bad in [-0.1, 1.5, f64::NAN, f64::INFINITY] {
            let e = SparseExecution::default()
                .with_linear_max_density(bad)
                .validate()
                .unwrap_err();
            assert!(
                matches!(
                    e,
                    SparsityError::InvalidDensityThreshold { kind: "linear", .. }
                ),
                "{e}"
            );
        }
        for ok in [0.0, 0.3, 1.0] {
            SparseExecution::default()
                .with_linear_max_density(ok)
                .with_conv_max_density(ok)
                .validate()
                .unwrap();
        }
        let e = SparseExecution::default()
            .with_conv_max_density(-1.0)
            .validate()
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "sparse-execution density threshold -1 for convolution layers is outside [0, 1]"
        );
    }

    #[test]
    fn policies_without_a_convolution_threshold_get_the_default() {
        let p: SparseExecution =
            serde_json::from_str(r#"{"mode":"auto","linear_max_density":0.2}"#).unwrap();
        assert_eq!(
            p.conv_max_density,
            SparseExecution::DEFAULT_CONV_MAX_DENSITY
        );
        assert_eq!(p.linear_max_density, 0.2);
    }

    #[test]
    fn auto_runs_sparse_up_to_the_threshold() {
        let p = SparseExecution::default().with_linear_max_density(0.25);
        assert!(p.linear_runs_sparse(0.02) && p.linear_runs_sparse(0.25));
        assert!(!p.linear_runs_sparse(0.26));
        let p = SparseExecution::default().with_conv_max_density(0.1);
        assert!(p.conv_runs_sparse(0.1) && !p.conv_runs_sparse(0.11));
        assert!(SparseExecution::new(Execution::Sparse).linear_runs_sparse(1.0));
        assert!(!SparseExecution::new(Execution::Dense).linear_runs_sparse(0.0));
        for e in Execution::ALL {
            assert_eq!(e.name().parse::<Execution>().unwrap(), e);
        }
        assert!("masked".parse::<Execution>().is_err());
    }
}
