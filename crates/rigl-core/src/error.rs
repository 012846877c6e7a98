//! The one error type of rigl-core.

use rigl_kernels::SelectError;

/// Everything that can go wrong when sparsifying, loading or updating a model.
///
/// Every variant names the problem and the parameter or value at fault; none of them is
/// reached by a panic.
#[derive(Debug, thiserror::Error)]
pub enum SparsityError {
    /// A sparsity (global, first/last layer) outside `[0, 1)`.
    #[error(
        "{what} sparsity {value} is outside [0, 1): a sparsity is the fraction of zeros, and 1 would remove every weight"
    )]
    InvalidSparsity {
        /// Which setting holds the value.
        what: String,
        /// The offending value.
        value: f64,
    },
    /// A custom per-layer sparsity outside `[0, 1]`.
    #[error("custom sparsity {value} for `{pattern}` is outside [0, 1]")]
    InvalidCustomSparsity {
        /// The custom-map pattern.
        pattern: String,
        /// The offending value.
        value: f64,
    },
    /// A density threshold of sparse execution outside `[0, 1]`.
    #[error("sparse-execution density threshold {value} for {kind} layers is outside [0, 1]")]
    InvalidDensityThreshold {
        /// The layer kind (`linear`, `conv`).
        kind: &'static str,
        /// The offending value.
        value: f64,
    },
    /// A power scale for ERK that is not a finite number.
    #[error("ERK power scale {0} is not a finite number")]
    InvalidPowerScale(f64),
    /// A custom-map (or include) pattern that matches no maskable parameter.
    #[error(
        "{kind} pattern `{pattern}` matches no maskable parameter; maskable parameters are: {available}"
    )]
    UnmatchedPattern {
        /// `custom` or `include`.
        kind: &'static str,
        /// The pattern.
        pattern: String,
        /// The maskable parameter paths, comma separated.
        available: String,
    },
    /// Nothing would be masked.
    #[error("no parameter is selected for sparsity: {reason}")]
    EmptySelection {
        /// Why the selection is empty.
        reason: String,
    },
    /// A mask whose number of entries does not match its weight.
    #[error(
        "mask for `{path}` has {mask_len} entries but its weight has shape {weight_shape:?} ({weight_len} entries)"
    )]
    MaskShapeMismatch {
        /// Parameter path of the weight.
        path: String,
        /// Entries in the mask.
        mask_len: usize,
        /// Shape of the weight.
        weight_shape: Vec<usize>,
        /// Entries in the weight.
        weight_len: usize,
    },
    /// The ER/ERK budget cannot be met: layers forced dense already use more than it.
    #[error(
        "the {distribution} distribution cannot reach sparsity {sparsity}: the layers it must keep dense hold more weights than the whole budget (epsilon {eps})"
    )]
    InfeasibleDistribution {
        /// The distribution's name.
        distribution: String,
        /// The requested sparsity.
        sparsity: f64,
        /// The scale factor that came out (negative or non-finite).
        eps: f64,
    },
    /// Weights that already carry a mask were selected again.
    #[error(
        "already sparse: {paths} carry a mask; sparsify a dense model, or load masks with `load_sparse`"
    )]
    AlreadySparse {
        /// The paths, comma separated.
        paths: String,
    },
    /// An updater was not given an input it needs.
    #[error("`{path}`: the update needs {what}, which was not provided")]
    MissingInput {
        /// The parameter path.
        path: String,
        /// What is missing.
        what: &'static str,
    },
    /// A sparse-training schedule or setting that cannot work.
    #[error("invalid sparse-training setting: {0}")]
    InvalidSetting(String),
    /// The gradients handed to a step do not fit the model.
    #[error(
        "no gradient for `{path}`: pass the gradients of the model returned by the previous step"
    )]
    MissingGradient {
        /// The parameter path.
        path: String,
    },
    /// A layer with so many NaN or infinite weights at a mask update that its active
    /// connections cannot all be finite (the run has diverged).
    #[error(
        "`{path}` has {non_finite} NaN or infinite weights at step {step}: {finite} finite weights \
         remain for its {needed} active connections (the run has diverged; lower the learning \
         rate or resume from an earlier checkpoint)"
    )]
    NonFiniteWeights {
        /// The parameter path.
        path: String,
        /// The step of the update.
        step: i64,
        /// Its NaN or infinite weights.
        non_finite: usize,
        /// Its finite weights.
        finite: usize,
        /// The connections the update must keep active.
        needed: usize,
    },
    /// A device this build includes but this machine does not have (no adapter or driver).
    #[error("device {device} is not available: {reason}")]
    DeviceUnavailable {
        /// The device asked for.
        device: String,
        /// What the backend reported.
        reason: String,
    },
    /// An optimizer hyperparameter outside its range.
    #[error("optimizer setting `{name}` = {value} must be {expected}")]
    InvalidOptimizerSetting {
        /// The setting, e.g. `epsilon`.
        name: &'static str,
        /// The value given.
        value: f64,
        /// Its valid range, in words.
        expected: &'static str,
    },
    /// An optimizer state that cannot be read or rewritten.
    #[error("optimizer state: {0}")]
    OptimizerState(String),
    /// A structure whose values make no sense (N:M with `n >= m`), or that conflicts with
    /// another setting.
    #[error("invalid structure: {0}")]
    InvalidStructure(String),
    /// A layer that cannot carry the configured structure.
    #[error("`{path}` cannot be structured: {reason}")]
    Structure {
        /// The parameter path.
        path: String,
        /// Why.
        reason: String,
    },
    /// A mask that breaks its layer's structure (a corrupt or foreign checkpoint).
    #[error(
        "the mask of `{path}` breaks its structure: group {group} has {active} active connections, not {expected}"
    )]
    StructureViolation {
        /// The parameter path.
        path: String,
        /// The group (in the layer's output-major view).
        group: usize,
        /// Its active connections.
        active: usize,
        /// What the structure asks for.
        expected: usize,
    },
    /// A path that names no sparse weight of the model.
    #[error("`{path}` is not a sparse weight of this model")]
    UnknownLayer {
        /// The path asked for.
        path: String,
    },
    /// A mask selection that could not be made (see [`SelectError`]).
    #[error("mask selection for `{path}` failed: {source}")]
    Select {
        /// The parameter path.
        path: String,
        /// The underlying selection error.
        source: SelectError,
    },
    /// A record or checkpoint that cannot be read or applied.
    #[error("record `{path}` cannot be loaded: {reason}")]
    Record {
        /// The file (or `<memory>`).
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An I/O failure while saving or loading.
    #[error("I/O error on `{path}`: {source}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Result alias of rigl-core.
pub type Result<T, E = SparsityError> = core::result::Result<T, E>;

/// Check that a sparsity lies in `[0, 1)` (and is not NaN).
pub(crate) fn check_sparsity(what: &str, value: f64) -> Result<()> {
    if (0.0..1.0).contains(&value) {
        Ok(())
    } else {
        Err(SparsityError::InvalidSparsity {
            what: what.to_string(),
            value,
        })
    }
}
