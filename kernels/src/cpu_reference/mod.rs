//! CPU reference implementations: the specification of every kernel in this crate.

pub mod keys;
pub mod philox;
pub mod top_k_mask;
