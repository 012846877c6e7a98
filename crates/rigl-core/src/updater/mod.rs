//! Mask updaters: one trait, one file per algorithm.
//!
//! | method | file | mask changes | grows by |
//! |---|---|---|---|
//! | `scratch` | [`scratch`] | never (the initial random mask is kept) | - |
//! | `static_rezero` | [`static_rezero`] | never; re-zeroes the lowest-magnitude weights | - |
//! | `set` | [`set`] | drop by \|w\|, grow | random (counter-based) |
//! | `snfs` | [`snfs`] | drop by \|w\|, grow | \|EMA of the dense gradient\| |
//! | `rigl` | [`rigl`] | drop by \|w\|, grow | \|dense gradient\| |
//! | `snip` | [`snip`] | once, at the first step | keeps top \|g * w\| |
//! | `prune` | [`gradual_pruning`] | prunes on a cubic schedule | - |

pub mod drop_grow;
pub mod gradual_pruning;
pub mod rigl;
pub mod scratch;
pub mod set;
pub mod snfs;
pub mod snip;
pub mod static_rezero;

use crate::error::Result;
use serde::{Deserialize, Serialize};

/// A sparse training method.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Dense training: no masks.
    Dense,
    /// The initial random mask, kept for the whole run (the true static baseline).
    Scratch,
    /// The reference's `static` method: the mask is kept, but at every update the
    /// lowest-magnitude `drop_fraction` of active weights and their optimizer state are reset
    /// to zero.
    StaticRezero,
    /// Sparse Evolutionary Training: drop by magnitude, grow at random.
    Set,
    /// Sparse Networks From Scratch (sparse momentum): grow by the EMA of the dense gradient.
    Snfs,
    /// Rigging the Lottery: grow by the dense gradient's magnitude.
    Rigl,
    /// Single-shot pruning at initialisation by |g * w|.
    Snip,
    /// Gradual magnitude pruning (Zhu & Gupta) from dense.
    Prune,
}

impl Method {
    /// All methods, in documentation order.
    pub const ALL: [Method; 8] = [
        Method::Dense,
        Method::Scratch,
        Method::StaticRezero,
        Method::Set,
        Method::Snfs,
        Method::Rigl,
        Method::Snip,
        Method::Prune,
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
        }
    }

    /// Whether masks start all ones (the method chooses them later).
    pub fn starts_dense(&self) -> bool {
        matches!(self, Method::Snip | Method::Prune | Method::Dense)
    }

    /// The updater implementing the method (`None` for dense training).
    pub fn updater(&self) -> Option<Box<dyn MaskUpdater>> {
        Some(match self {
            Method::Dense => return None,
            Method::Scratch => Box::new(scratch::Scratch),
            Method::StaticRezero => Box::new(static_rezero::StaticRezero),
            Method::Set => Box::new(set::Set),
            Method::Snfs => Box::new(snfs::Snfs),
            Method::Rigl => Box::new(rigl::Rigl),
            Method::Snip => Box::new(snip::Snip),
            Method::Prune => Box::new(gradual_pruning::GradualPruning),
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

    fn from_str(s: &str) -> core::result::Result<Self, String> {
        let s = s.to_ascii_lowercase().replace('-', "_");
        Method::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Method::ALL.iter().map(|m| m.name()).collect();
                format!("unknown method `{s}`: expected one of {}", names.join(", "))
            })
    }
}

/// What an updater sees of one masked layer at an update (host copies, flat, row-major).
pub struct LayerView<'a> {
    /// Parameter path (keys the random stream).
    pub path: &'a str,
    /// Stored weights.
    pub weights: &'a [f32],
    /// Current mask.
    pub mask: &'a [bool],
    /// Dense gradient `dL/d(w*m)` of this batch, when the method asked for it.
    pub dense_grad: Option<&'a [f32]>,
    /// SNFS's exponential moving average of the dense gradient.
    pub average: Option<&'a [f32]>,
    /// The planned number of active weights at the end of training.
    pub target_active: usize,
}

/// What an update decides for one layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerDecision {
    /// The new mask.
    pub mask: Vec<bool>,
    /// Positions whose weight is set to the grow initialisation and whose optimizer slots are
    /// zeroed: the new connections (and, for `static_rezero`, the re-zeroed weights).
    pub reset: Vec<bool>,
}

/// Schedule-dependent inputs of an update.
#[derive(Clone, Copy, Debug)]
pub struct UpdateContext {
    /// The step of the update.
    pub step: i64,
    /// The drop fraction at this step.
    pub drop_fraction: f64,
    /// Seed of the counter-based generator.
    pub seed: u64,
    /// Whether a connection dropped in an update may be regrown in the same update.
    pub allow_regrow: bool,
    /// The schedule's begin and end steps (for gradual pruning).
    pub begin_step: i64,
    /// See `begin_step`.
    pub end_step: i64,
}

/// A mask-update algorithm.
pub trait MaskUpdater: Send + Sync {
    /// The method this updater implements.
    fn method(&self) -> Method;

    /// Whether the method ever changes masks or weights (false: `scratch`).
    fn updates(&self) -> bool {
        true
    }

    /// Whether the method needs the dense gradient `dL/d(w*m)` at step `t`.
    fn needs_dense_gradient(&self, is_update_step: bool) -> bool {
        let _ = is_update_step;
        false
    }

    /// Whether an update step also trains by default (the optimizer step before the mask
    /// update). RigL and SNIP do not: that batch only updates the mask and the step counter
    /// does not advance.
    fn trains_on_update_step(&self) -> bool {
        true
    }

    /// Whether the method updates at most once (SNIP).
    fn one_shot(&self) -> bool {
        false
    }

    /// Decide the new mask of one layer.
    ///
    /// # Errors
    /// Selection errors (NaN scores leaving too few candidates).
    fn update_layer(&self, ctx: &UpdateContext, layer: &LayerView<'_>) -> Result<LayerDecision>;
}
