//! The fast CPU path: what the CPU backend runs, equal to [`crate::cpu_reference`] bit for bit
//! (the batch norm, which has no reference here, is tested against Burn's).

pub mod batch_norm;
pub mod condensed_linear;
pub mod drop_grow;
pub mod dropout;
pub mod radix_select;
pub mod sddmm;
pub mod sparse_conv2d;
pub mod sparse_linear_backward;
pub mod spmm;
pub mod transpose;

pub use condensed_linear::condensed_linear;
pub use drop_grow::{DropGrowFlags, DropGrowOutcome, drop_grow, drop_grow_counts};
pub use radix_select::{
    SegmentCounts, philox_u32, segmented_random_top_k_counts, segmented_random_top_k_mask,
    segmented_top_k_counts, segmented_top_k_counts_abs, segmented_top_k_counts_u32,
    segmented_top_k_mask, segmented_top_k_mask_u32,
};
pub use sddmm::sddmm;
pub use sparse_conv2d::{
    sparse_conv2d, sparse_conv2d_backward, sparse_conv2d_input_grad, sparse_conv2d_weight_grad,
};
pub use sparse_linear_backward::sparse_linear_backward;
pub use spmm::{spmm, spmm_transposed};
pub use transpose::transpose;
