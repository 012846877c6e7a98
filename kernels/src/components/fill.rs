//! Zero-fill.

use cubecl::prelude::*;

/// Write zero to every element of `output`.
#[cube(launch)]
pub fn fill_zero<O: Numeric>(output: &mut [O], #[define(O)] _dtype: ElemType) {
    let i = ABSOLUTE_POS;
    if i < output.len() {
        output[i] = O::from_int(0);
    }
}
