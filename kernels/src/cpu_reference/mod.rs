//! CPU reference implementations: the specification of every kernel in this crate.
//!
//! They are written for clarity, not speed; [`crate::cpu`] holds the fast CPU path that the
//! CPU backend runs, tested against these.

pub mod drop_grow;
pub mod keys;
pub mod philox;
pub mod random_mask;
pub mod top_k_mask;
