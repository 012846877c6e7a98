//! The one error type of rigl-models.

use rigl_core::SparsityError;

/// Everything that can go wrong when describing, counting or loading a model.
///
/// Every variant names the problem and the value or parameter at fault.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A model configuration that describes no valid network.
    #[error("invalid {model} configuration: {reason}")]
    InvalidConfig {
        /// The model, e.g. `wide_resnet`.
        model: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A sparsity plan or configuration error from rigl-core.
    #[error(transparent)]
    Sparsity(#[from] SparsityError),
    /// Counting options that make no sense (a zero delta T, a multiplier that is not positive,
    /// a pruning schedule that ends before it begins, ...).
    #[error("invalid counting option: {0}")]
    InvalidCountOption(String),
    /// A model's kernels do not match the layer list the counter was given.
    #[error("layer mismatch: {0}")]
    LayerMismatch(String),
    /// A weight file that cannot be opened or parsed.
    #[error("cannot read weights from `{path}`: {reason}")]
    WeightFile {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// Parameters of the model that the weight file does not provide.
    #[error(
        "the weight file `{path}` has no tensor for {} parameter(s): {}",
        missing.len(),
        missing.join(", ")
    )]
    MissingWeights {
        /// The file.
        path: String,
        /// The model's parameter paths that got no value.
        missing: Vec<String>,
    },
    /// A tensor in the weight file whose shape does not fit its parameter.
    #[error(
        "tensor for `{param}` in `{path}` has shape {found:?}, but the model expects {expected:?}"
    )]
    WeightShape {
        /// The file.
        path: String,
        /// The parameter path.
        param: String,
        /// The shape the model expects (in the file's layout).
        expected: Vec<usize>,
        /// The shape in the file.
        found: Vec<usize>,
    },
    /// Tensors in the weight file that belong to no parameter of the model.
    #[error(
        "the weight file `{path}` has {} tensor(s) that match no parameter: {}",
        unused.len(),
        unused.join(", ")
    )]
    UnusedWeights {
        /// The file.
        path: String,
        /// The file's keys that were not used.
        unused: Vec<String>,
    },
    /// Any other failure while applying a weight file.
    #[error("cannot apply `{path}` to the model: {reason}")]
    WeightApply {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
}

/// Result alias of rigl-models.
pub type Result<T, E = ModelError> = core::result::Result<T, E>;
