//! [`WeightDecayScope`]: which parameters an optimizer's weight decay applies to.

/// Which parameters a [`SlotOptimizer`](super::SlotOptimizer)'s weight decay applies to.
///
/// Burn's optimizers decay every parameter ([`All`](Self::All), the default of the `Sparse*`
/// configs, so that they stay equal to Burn's). The reference implementation of RigL adds its
/// L2 term for the kernels of conv and dense layers only, never for biases or normalisation
/// parameters ([`Kernels`](Self::Kernels), what `rigl train` uses).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightDecayScope {
    /// Every parameter with a gradient (Burn's behaviour).
    #[default]
    All,
    /// Float parameters of rank >= 2 only: the kernels of linear and conv layers, the
    /// parameters [`Sparsify`](crate::Sparsify) can mask. Biases and normalisation parameters
    /// (rank 1) are not decayed.
    Kernels,
}

impl WeightDecayScope {
    /// Whether a parameter of rank `rank` is decayed.
    pub fn decays(&self, rank: usize) -> bool {
        match self {
            Self::All => true,
            Self::Kernels => rank >= 2,
        }
    }
}

impl core::str::FromStr for WeightDecayScope {
    type Err = String;

    fn from_str(s: &str) -> core::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "all" => Ok(Self::All),
            "kernels" => Ok(Self::Kernels),
            other => Err(format!(
                "unknown weight-decay scope `{other}`: expected all or kernels"
            )),
        }
    }
}

impl core::fmt::Display for WeightDecayScope {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::All => "all",
            Self::Kernels => "kernels",
        })
    }
}
