//! What a step and a mask update report.

use serde::{Deserialize, Serialize};

/// One layer of an [`UpdateStats`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerUpdateStats {
    /// Parameter path.
    pub path: String,
    /// Active connections after the update.
    pub active: usize,
    /// Connections switched on (or, for `static_rezero`, re-zeroed).
    pub reset: usize,
    /// Connections switched off.
    pub dropped: usize,
    /// NaN or infinite weights of the layer (active or not) seen by the update.
    #[serde(default)]
    pub non_finite_weights: usize,
    /// NaN or infinite entries of the dense gradient the update saw (0 without one).
    #[serde(default)]
    pub non_finite_gradients: usize,
}

/// What a mask update did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UpdateStats {
    /// Step of the update.
    pub step: i64,
    /// Drop fraction used.
    pub drop_fraction: f64,
    /// Per layer.
    pub layers: Vec<LayerUpdateStats>,
}

impl UpdateStats {
    /// NaN or infinite weights and gradient entries over every layer.
    pub fn non_finite(&self) -> (usize, usize) {
        self.layers.iter().fold((0, 0), |(w, g), l| {
            (w + l.non_finite_weights, g + l.non_finite_gradients)
        })
    }

    /// Fraction of active connections that are new (reset) after this update.
    pub fn changed_fraction(&self) -> f64 {
        let active: usize = self.layers.iter().map(|l| l.active).sum();
        let reset: usize = self.layers.iter().map(|l| l.reset).sum();
        if active == 0 {
            0.0
        } else {
            reset as f64 / active as f64
        }
    }
}

/// The result of [`SparseTrainer::step`].
pub struct StepOutcome<M> {
    /// The model, in the gradient mode the next step needs.
    pub model: M,
    /// Whether the optimizer step was taken.
    pub trained: bool,
    /// The mask update made at this step, if any.
    pub update: Option<UpdateStats>,
}
