//! CPU reference implementations: the specification of every kernel in this crate.
//!
//! They are written for clarity, not speed; [`crate::cpu`] holds the fast CPU path that the
//! CPU backend runs, tested against these.

pub(crate) mod condensed_linear;
pub(crate) mod drop_grow;
pub(crate) mod keys;
pub(crate) mod philox;
pub(crate) mod random_mask;
pub(crate) mod sddmm;
pub(crate) mod sparse_conv2d;
pub(crate) mod sparse_pattern;
pub(crate) mod spmm;
pub(crate) mod top_k_mask;

pub use condensed_linear::{Condensed, condensed_linear};
pub use drop_grow::{check_disjoint, drop_grow};
pub use random_mask::{philox_keys, segmented_random_top_k_mask};
pub use sddmm::{SDDMM_LANES, lane_dot, sddmm};
pub use sparse_conv2d::{
    CONV_LANES, Conv2dGeometry, lane_sum, sparse_conv2d, sparse_conv2d_input_grad,
    sparse_conv2d_weight_grad,
};
pub use spmm::{spmm, spmm_transposed};
pub use top_k_mask::{segmented_top_k_mask, top_k_mask_f32, top_k_mask_u32};
