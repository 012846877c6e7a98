//! The sparse pattern of a layer's mask, built once per mask.

use crate::mask::{SparseMask, bools_to_host};
use burn::module::ParamId;
use rigl_kernels::{SparseError, SparsePattern};
use std::sync::{Arc, Mutex};

/// The [`SparsePattern`] of the mask a layer last ran with, keyed by the mask parameter's id.
///
/// Every change of a mask gives the mask parameter a new id (attaching a mask, a mask update of
/// [`SparseTrainer`](crate::SparseTrainer), loading a record), so the pattern is rebuilt once
/// per mask, at its first forward, and reused by every step until the next update. A
/// [`ModuleMapper`](burn::module::ModuleMapper) of your own that rewrites a mask's values must
/// give the parameter a new id too.
///
/// Clones of a module share the cache.
#[derive(Clone, Debug, Default)]
pub struct PatternCache(Arc<Mutex<Option<Cached>>>);

/// A pattern and the id of the mask it was built from.
type Cached = (ParamId, Arc<SparsePattern>);

impl PatternCache {
    /// The pattern of `mask` over a `[rows, cols]` weight, from the cache or built now (which
    /// reads the mask to the host).
    ///
    /// # Errors
    /// [`SparseError::MaskLength`] when the mask does not have `rows * cols` entries,
    /// [`SparseError::TooLarge`] past `u32` positions.
    pub fn pattern(
        &self,
        mask: &SparseMask,
        rows: usize,
        cols: usize,
    ) -> Result<Arc<SparsePattern>, SparseError> {
        let id = mask.mask.id;
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((cached, pattern)) = slot.as_ref()
            && *cached == id
            && pattern.rows() == rows
            && pattern.cols() == cols
        {
            return Ok(pattern.clone());
        }
        let values = bools_to_host(mask.mask.val());
        let pattern = Arc::new(SparsePattern::from_mask(rows, cols, &values)?);
        *slot = Some((id, pattern.clone()));
        Ok(pattern)
    }

    /// Whether a pattern is cached (for `mask`, when given).
    pub fn is_cached_for(&self, mask: Option<&SparseMask>) -> bool {
        let slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match (slot.as_ref(), mask) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some((id, _)), Some(m)) => *id == m.mask.id,
        }
    }
}
