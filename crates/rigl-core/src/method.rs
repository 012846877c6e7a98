//! [`Method`]: the names of the sparse training methods, and the registry that maps a name to
//! its [`MaskUpdater`].

use crate::trainer::DstConfig;
use crate::updater::{
    GradualPruning, MaskUpdater, Rigl, Scratch, Set, Snfs, Snip, StaticRezero, SteMagnitude,
};
use serde::{Deserialize, Serialize};

/// A sparse training method.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Dense training: no masks (the reference's `baseline`).
    #[serde(alias = "baseline")]
    Dense,
    /// The initial random mask, kept for the whole run (the true static baseline).
    Scratch,
    /// The reference's `static` method: the mask is kept, but at every update the
    /// lowest-magnitude `drop_fraction` of active weights and their optimizer state are reset
    /// to zero. The reference calls it `static`, which is accepted as an alias.
    #[serde(alias = "static")]
    StaticRezero,
    /// Sparse Evolutionary Training: drop by magnitude, grow at random.
    Set,
    /// Sparse Networks From Scratch (sparse momentum, the reference's `momentum`): grow by the
    /// EMA of the dense gradient.
    #[serde(alias = "momentum")]
    Snfs,
    /// Rigging the Lottery: grow by the dense gradient's magnitude.
    Rigl,
    /// Single-shot pruning at initialisation by |g * w|.
    Snip,
    /// Gradual magnitude pruning (Zhu & Gupta) from dense.
    Prune,
    /// Straight-through magnitude pruning (jaxpruner's `ste_magnitude_pruning`): dense
    /// weights, the forward pass on their top `|w|` at every step, the gradient to all of
    /// them.
    Ste,
}

impl Method {
    /// All methods, in documentation order.
    pub const ALL: [Method; 9] = [
        Method::Dense,
        Method::Scratch,
        Method::StaticRezero,
        Method::Set,
        Method::Snfs,
        Method::Rigl,
        Method::Snip,
        Method::Prune,
        Method::Ste,
    ];

    /// The reference's (google-research/rigl) names of methods, accepted wherever a method is
    /// named: its `baseline` is dense training, `static` the re-zeroing static method, and
    /// `momentum` SNFS.
    pub const ALIASES: [(&'static str, Method); 3] = [
        ("baseline", Method::Dense),
        ("static", Method::StaticRezero),
        ("momentum", Method::Snfs),
    ];

    /// The name used in configs and on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            Method::Dense => "dense",
            Method::Scratch => "scratch",
            Method::StaticRezero => "static_rezero",
            Method::Set => "set",
            Method::Snfs => "snfs",
            Method::Rigl => "rigl",
            Method::Snip => "snip",
            Method::Prune => "prune",
            Method::Ste => "ste",
        }
    }

    /// Whether masks start all ones (dense training, and the methods that choose them later:
    /// [`MaskUpdater::starts_dense`]).
    pub fn starts_dense(&self) -> bool {
        self.updater(&DstConfig::new(*self))
            .is_none_or(|u| u.starts_dense())
    }

    /// The updater implementing the method with the settings of `config` (`None` for dense
    /// training): the registry of methods. A new method is a file with its [`MaskUpdater`] and a
    /// line here.
    pub fn updater(&self, config: &DstConfig) -> Option<Box<dyn MaskUpdater>> {
        Some(match self {
            Method::Dense => return None,
            Method::Scratch => Box::new(Scratch),
            Method::StaticRezero => Box::new(StaticRezero),
            Method::Set => Box::new(Set),
            Method::Snfs => Box::new(Snfs::new(config.snfs_decay)),
            Method::Rigl => Box::new(Rigl),
            Method::Snip => Box::new(Snip::new(config.pruning_scope)),
            Method::Prune => Box::new(GradualPruning::new(config.pruning_scope)),
            Method::Ste => Box::new(SteMagnitude::new(config.pruning_scope)),
        })
    }
}

impl core::fmt::Display for Method {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

impl core::str::FromStr for Method {
    type Err = String;

    /// A method by its name or by the reference's name for it ([`Method::ALIASES`]).
    fn from_str(s: &str) -> core::result::Result<Self, String> {
        let s = s.to_ascii_lowercase().replace('-', "_");
        Method::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .or_else(|| {
                Method::ALIASES
                    .iter()
                    .find(|(alias, _)| *alias == s)
                    .map(|(_, m)| *m)
            })
            .ok_or_else(|| {
                let names: Vec<_> = Method::ALL.iter().map(|m| m.name()).collect();
                let aliases: Vec<_> = Method::ALIASES
                    .iter()
                    .map(|(a, m)| format!("{a} = {m}"))
                    .collect();
                format!(
                    "unknown method `{s}`: expected one of {} (or the reference's names: {})",
                    names.join(", "),
                    aliases.join(", ")
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_parse_by_name_and_by_the_reference_names() {
        for m in Method::ALL {
            assert_eq!(m.name().parse::<Method>().unwrap(), m);
            let json = serde_json::to_string(&m).unwrap();
            assert_eq!(serde_json::from_str::<Method>(&json).unwrap(), m);
        }
        for (alias, m) in [
            ("baseline", Method::Dense),
            ("static", Method::StaticRezero),
            ("momentum", Method::Snfs),
            ("Static-Rezero", Method::StaticRezero),
        ] {
            assert_eq!(alias.parse::<Method>().unwrap(), m, "{alias}");
        }
        for (alias, m) in [
            ("baseline", Method::Dense),
            ("static", Method::StaticRezero),
            ("momentum", Method::Snfs),
        ] {
            let json = format!("\"{alias}\"");
            assert_eq!(serde_json::from_str::<Method>(&json).unwrap(), m, "{alias}");
        }
        let e = "sparse_momentum".parse::<Method>().unwrap_err();
        assert!(e.contains("static = static_rezero"), "{e}");
    }
}
