//! Host-side launch code of the CubeCL kernels: block tables, search state, pass sequence.
//!
//! Everything here runs on the host but only builds small metadata (one block-table entry per
//! [`BLOCK_ELEMS`] positions, a few words per segment) and enqueues launches; nothing is read
//! back. All segments share every launch.

use crate::components::{
    self, BLOCK_ELEMS, BLOCK_WORDS, CUBE_SIZE, HIST_STRIDE, STATE_WORDS, digit_histogram,
    digit_scan, fill, philox, select_mask,
};
use burn::backend::DType;
use burn::tensor::Shape;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;

/// The largest number of cubes along one dimension of a launch grid.
const MAX_GRID: usize = 65_535;

/// A segment as the kernels see it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Span {
    pub offset: usize,
    pub len: usize,
    pub k: usize,
}

/// Where the keys come from.
pub(crate) enum Keys {
    /// `f32` scores, read through their bits.
    F32(CubeTensor),
    /// `u32` keys.
    U32(CubeTensor),
    /// `f32` scores compared by magnitude (`|x|`), read through their bits.
    F32Abs(CubeTensor),
}

/// A grid of at least `cubes` cubes (the kernels skip cubes past their work).
fn grid(cubes: usize) -> CubeCount {
    let cubes = cubes.max(1);
    if cubes <= MAX_GRID {
        CubeCount::Static(cubes as u32, 1, 1)
    } else {
        let y = cubes.div_ceil(MAX_GRID);
        CubeCount::Static(MAX_GRID as u32, y as u32, 1)
    }
}

/// A `u32` tensor on the device of `like`, uploaded from the host.
fn upload_u32(like: &CubeTensor, values: &[u32]) -> CubeTensor {
    let values = if values.is_empty() {
        &[0u32][..]
    } else {
        values
    };
    let handle = like.client.create_from_slice(u32::as_bytes(values));
    CubeTensor::new_contiguous(
        like.client.clone(),
        like.device.clone(),
        Shape::new([values.len()]),
        handle,
        DType::U32,
    )
}

/// An uninitialised tensor of `len` elements of `dtype` on the device of `like`.
fn empty(like: &CubeTensor, len: usize, dtype: DType) -> CubeTensor {
    let handle = like.client.empty(len.max(1) * dtype.size());
    CubeTensor::new_contiguous(
        like.client.clone(),
        like.device.clone(),
        Shape::new([len]),
        handle,
        dtype,
    )
}

/// The block table: `[segment, start, end, segment offset]` per block of [`BLOCK_ELEMS`].
fn block_table(spans: &[(usize, usize)]) -> Vec<u32> {
    let mut table = Vec::new();
    for (si, &(offset, len)) in spans.iter().enumerate() {
        let end = offset + len;
        let mut start = offset;
        while start < end {
            let stop = (start + BLOCK_ELEMS).min(end);
            table.extend_from_slice(&[si as u32, start as u32, stop as u32, offset as u32]);
            start = stop;
        }
    }
    table
}

/// Whether the segments, in order, tile `0..total` exactly.
fn tiles_exactly(spans: &[(usize, usize)], total: usize) -> bool {
    let mut next = 0;
    for &(offset, len) in spans {
        if offset != next {
            return false;
        }
        next = offset + len;
    }
    next == total
}

/// Bytes of the index word: enough for the longest segment's local indices.
fn index_bytes(spans: &[(usize, usize)]) -> u32 {
    let longest = spans.iter().map(|s| s.1).max().unwrap_or(0) as u64;
    let bits = 64 - longest.saturating_sub(1).leading_zeros();
    bits.div_ceil(8).clamp(1, 4)
}

/// The segmented radix select. Returns the mask (`bool_dtype`, one entry per key) and the
/// counts (`u32`, `[nan, available]` per segment).
///
/// Segments must lie within the keys and be at most 2^32 long, and the key buffer shorter than
/// 2^32 (checked by the caller).
pub(crate) fn segmented_select(
    keys: Keys,
    eligible: Option<CubeTensor>,
    segments: &[Span],
    bool_dtype: DType,
) -> (CubeTensor, CubeTensor) {
    let (keys, key_kind) = match keys {
        Keys::F32(t) => (into_contiguous(t), components::keys::KEYS_F32),
        Keys::U32(t) => (into_contiguous(t), components::keys::KEYS_U32),
        Keys::F32Abs(t) => (into_contiguous(t), components::keys::KEYS_F32_ABS),
    };
    let total = keys.meta.shape().num_elements();
    let eligible = eligible.map(into_contiguous);
    let spans: Vec<(usize, usize)> = segments.iter().map(|s| (s.offset, s.len)).collect();
    let n_segments = segments.len();

    let blocks = block_table(&spans);
    let n_blocks = blocks.len() / BLOCK_WORDS;
    let blocks = upload_u32(&keys, &blocks);
    let mut state = vec![0u32; n_segments * STATE_WORDS];
    for (si, s) in segments.iter().enumerate() {
        state[si * STATE_WORDS + components::state::ACTIVE] = 1;
        state[si * STATE_WORDS + components::state::K] = s.k as u32;
    }
    let state = upload_u32(&keys, &state);
    let hist = upload_u32(&keys, &vec![0u32; n_segments * HIST_STRIDE]);
    let counts = empty(&keys, n_segments * 2, DType::U32);
    let ib = index_bytes(&spans);
    let idx_max = if ib == 4 {
        u32::MAX
    } else {
        (1u32 << (8 * ib)) - 1
    };

    let (eligible, eligible_dtype, has_eligible) = match eligible {
        Some(e) => {
            let dtype = burn::backend::cubecl::dtype_to_storage_type(e.dtype);
            (e, dtype, true)
        }
        None => (
            upload_u32(&keys, &[0]),
            burn::backend::cubecl::dtype_to_storage_type(DType::U32),
            false,
        ),
    };

    let client = keys.client.clone();
    let cube_dim = CubeDim::new_1d(CUBE_SIZE);
    let mut levels: Vec<(u32, u32)> = (0..4).map(|d| (0u32, 24 - 8 * d)).collect();
    levels.extend((0..ib).map(|d| (1u32, 8 * (ib - 1 - d))));
    if n_segments > 0 {
        for (pass, &(word, shift)) in levels.iter().enumerate() {
            let first = u32::from(pass == 0);
            if n_blocks > 0 {
                digit_histogram::digit_histogram::launch(
                    &client,
                    grid(n_blocks),
                    cube_dim,
                    keys.clone().into_buffer_arg(),
                    eligible.clone().into_buffer_arg(),
                    blocks.clone().into_buffer_arg(),
                    state.clone().into_buffer_arg(),
                    hist.clone().into_buffer_arg(),
                    word,
                    shift,
                    idx_max,
                    first,
                    key_kind,
                    has_eligible,
                    eligible_dtype,
                );
            }
            digit_scan::digit_scan::launch(
                &client,
                grid(n_segments),
                cube_dim,
                hist.clone().into_buffer_arg(),
                state.clone().into_buffer_arg(),
                counts.clone().into_buffer_arg(),
                word,
                shift,
                first,
            );
        }
    }

    let mask = empty(&keys, total, bool_dtype);
    let mask_dtype = burn::backend::cubecl::dtype_to_storage_type(bool_dtype);
    let write_zeros = tiles_exactly(&spans, total);
    if !write_zeros && total > 0 {
        fill::fill_zero::launch(
            &client,
            grid(total.div_ceil(CUBE_SIZE as usize)),
            cube_dim,
            mask.clone().into_buffer_arg(),
            mask_dtype,
        );
    }
    if n_blocks > 0 {
        select_mask::select_mask::launch(
            &client,
            grid(n_blocks),
            cube_dim,
            keys.clone().into_buffer_arg(),
            eligible.into_buffer_arg(),
            blocks.into_buffer_arg(),
            state.into_buffer_arg(),
            mask.clone().into_buffer_arg(),
            idx_max,
            u32::from(write_zeros),
            key_kind,
            has_eligible,
            [eligible_dtype, mask_dtype],
        );
    }
    (mask, counts)
}

/// Philox samples for `total` positions on the device of `like`: position `offset + j` of a
/// segment gets the sample at `(seed, stream, step, j)`; positions outside every segment get 0.
pub(crate) fn philox_u32(
    like: &CubeTensor,
    total: usize,
    seed: u64,
    step: u32,
    segments: &[(usize, usize, u32)],
) -> CubeTensor {
    let spans: Vec<(usize, usize)> = segments.iter().map(|s| (s.0, s.1)).collect();
    let out = empty(like, total, DType::U32);
    let client = like.client.clone();
    let cube_dim = CubeDim::new_1d(CUBE_SIZE);
    if !tiles_exactly(&spans, total) && total > 0 {
        fill::fill_zero::launch(
            &client,
            grid(total.div_ceil(CUBE_SIZE as usize)),
            cube_dim,
            out.clone().into_buffer_arg(),
            burn::backend::cubecl::dtype_to_storage_type(DType::U32),
        );
    }
    // Later segments win where segments overlap, as on the CPU: one launch per run of
    // segments that do not overlap each other.
    let mut runs: Vec<Vec<usize>> = Vec::new();
    let mut run_end = 0usize;
    for (si, &(offset, len)) in spans.iter().enumerate() {
        if runs.is_empty() || offset < run_end {
            runs.push(Vec::new());
            run_end = 0;
        }
        runs.last_mut().expect("a run").push(si);
        run_end = run_end.max(offset + len);
    }
    let streams: Vec<u32> = segments.iter().map(|s| s.2).collect();
    let streams = upload_u32(like, &streams);
    for run in runs {
        let run_spans: Vec<(usize, usize)> = run.iter().map(|&si| spans[si]).collect();
        let mut blocks = block_table(&run_spans);
        for b in blocks.chunks_mut(BLOCK_WORDS) {
            b[0] = run[b[0] as usize] as u32;
        }
        let n_blocks = blocks.len() / BLOCK_WORDS;
        if n_blocks == 0 {
            continue;
        }
        let blocks = upload_u32(like, &blocks);
        philox::philox_keys::launch(
            &client,
            grid(n_blocks),
            cube_dim,
            blocks.into_buffer_arg(),
            streams.clone().into_buffer_arg(),
            out.clone().into_buffer_arg(),
            seed as u32,
            (seed >> 32) as u32,
            step,
        );
    }
    out
}

/// A contiguous float tensor of `shape` on the device of `like`, uninitialised.
fn empty_float<const D: usize>(like: &CubeTensor, shape: [usize; D]) -> CubeTensor {
    let n: usize = shape.iter().product();
    let handle = like.client.empty(n.max(1) * DType::F32.size());
    CubeTensor::new_contiguous(
        like.client.clone(),
        like.device.clone(),
        Shape::new(shape),
        handle,
        DType::F32,
    )
}

fn u32s(v: &[usize]) -> Vec<u32> {
    v.iter().map(|&x| x as u32).collect()
}

/// `y = x W` over the active positions of `pattern` (`x` `[batch, rows]`, `f32`).
pub(crate) fn sparse_forward(
    x: CubeTensor,
    weight: CubeTensor,
    pattern: &crate::SparsePattern,
) -> CubeTensor {
    let (x, weight) = (into_contiguous(x), into_contiguous(weight));
    let batch = x.meta.shape()[0];
    let (rows, cols) = (pattern.rows(), pattern.cols());
    let y = empty_float(&x, [batch, cols]);
    let n = batch * cols;
    if n == 0 {
        return y;
    }
    let c = pattern.columns();
    let (col_ptr, col_row, col_pos) = (
        upload_u32(&x, &c.col_ptr),
        upload_u32(&x, &c.col_row),
        upload_u32(&x, &c.col_pos),
    );
    components::sparse_linear::sparse_forward::launch(
        &x.client,
        grid(n.div_ceil(CUBE_SIZE as usize)),
        CubeDim::new_1d(CUBE_SIZE),
        x.clone().into_buffer_arg(),
        weight.into_buffer_arg(),
        col_ptr.into_buffer_arg(),
        col_row.into_buffer_arg(),
        col_pos.into_buffer_arg(),
        y.clone().into_buffer_arg(),
        rows as u32,
        cols as u32,
        burn::backend::cubecl::dtype_to_storage_type(DType::F32),
    );
    y
}

/// `dx = dy Wᵀ` (when `input_grad`, else a `[0, rows]` tensor) and the zero-filled `dW` with
/// its active entries.
pub(crate) fn sparse_backward(
    x: CubeTensor,
    dy: CubeTensor,
    weight: CubeTensor,
    pattern: &crate::SparsePattern,
    input_grad: bool,
) -> (CubeTensor, CubeTensor) {
    let (x, dy, weight) = (
        into_contiguous(x),
        into_contiguous(dy),
        into_contiguous(weight),
    );
    let batch = x.meta.shape()[0];
    let (rows, cols) = (pattern.rows(), pattern.cols());
    let client = x.client.clone();
    let cube_dim = CubeDim::new_1d(CUBE_SIZE);
    let f32_type = burn::backend::cubecl::dtype_to_storage_type(DType::F32);
    let row_ptr = upload_u32(&x, &u32s(pattern.row_ptr()));
    let row_col = upload_u32(&x, pattern.row_entries());
    let dx = if input_grad {
        let dx = empty_float(&x, [batch, rows]);
        if batch * rows > 0 {
            components::sparse_linear::sparse_input_grad::launch(
                &client,
                grid((batch * rows).div_ceil(CUBE_SIZE as usize)),
                cube_dim,
                dy.clone().into_buffer_arg(),
                weight.into_buffer_arg(),
                row_ptr.into_buffer_arg(),
                row_col.clone().into_buffer_arg(),
                dx.clone().into_buffer_arg(),
                rows as u32,
                cols as u32,
                f32_type,
            );
        }
        dx
    } else {
        empty_float(&x, [0, rows])
    };
    let dw = empty_float(&x, [rows, cols]);
    if rows * cols > 0 {
        fill::fill_zero::launch(
            &client,
            grid((rows * cols).div_ceil(CUBE_SIZE as usize)),
            cube_dim,
            dw.clone().into_buffer_arg(),
            f32_type,
        );
    }
    if pattern.nnz() > 0 && batch > 0 {
        let entry_row = upload_u32(&x, &pattern.columns().entry_row);
        components::sparse_linear::sparse_weight_grad::launch(
            &client,
            grid(pattern.nnz().div_ceil(CUBE_SIZE as usize)),
            cube_dim,
            x.clone().into_buffer_arg(),
            dy.into_buffer_arg(),
            entry_row.into_buffer_arg(),
            row_col.into_buffer_arg(),
            dw.clone().into_buffer_arg(),
            batch as u32,
            rows as u32,
            cols as u32,
            f32_type,
        );
    }
    (dx, dw)
}

/// The geometry table of [`components::sparse_conv2d`].
fn conv_geometry(like: &CubeTensor, g: &crate::Conv2dGeometry) -> CubeTensor {
    let [oh, ow] = g.output();
    let table = [
        g.batch,
        g.channels_in,
        g.channels_out,
        g.input[0],
        g.input[1],
        oh,
        ow,
        g.kernel[0],
        g.kernel[1],
        g.stride[0],
        g.stride[1],
        g.padding[0].0,
        g.padding[1].0,
        g.dilation[0],
        g.dilation[1],
        g.pitch(),
    ];
    upload_u32(like, &u32s(&table))
}

/// `y = conv2d(x, W)` over the active taps of `pattern` (`f32`).
pub(crate) fn sparse_conv_forward(
    x: CubeTensor,
    weight: CubeTensor,
    pattern: &crate::SparsePattern,
    g: &crate::Conv2dGeometry,
) -> CubeTensor {
    let (x, weight) = (into_contiguous(x), into_contiguous(weight));
    let [oh, ow] = g.output();
    let y = empty_float(&x, [g.batch, g.channels_out, oh, ow]);
    let n = g.batch * g.channels_out * oh * ow;
    if n == 0 {
        return y;
    }
    let (row_ptr, row_col, geo) = (
        upload_u32(&x, &u32s(pattern.row_ptr())),
        upload_u32(&x, pattern.row_entries()),
        conv_geometry(&x, g),
    );
    components::sparse_conv2d::sparse_conv_forward::launch(
        &x.client,
        grid(n.div_ceil(CUBE_SIZE as usize)),
        CubeDim::new_1d(CUBE_SIZE),
        x.clone().into_buffer_arg(),
        weight.into_buffer_arg(),
        row_ptr.into_buffer_arg(),
        row_col.into_buffer_arg(),
        geo.into_buffer_arg(),
        y.clone().into_buffer_arg(),
        burn::backend::cubecl::dtype_to_storage_type(DType::F32),
    );
    y
}

/// `dx` (when `input_grad`, else an empty tensor) and the zero-filled `dW` with its active
/// taps.
pub(crate) fn sparse_conv_backward(
    x: CubeTensor,
    dy: CubeTensor,
    weight: CubeTensor,
    pattern: &crate::SparsePattern,
    g: &crate::Conv2dGeometry,
    input_grad: bool,
) -> (CubeTensor, CubeTensor) {
    let (x, dy, weight) = (
        into_contiguous(x),
        into_contiguous(dy),
        into_contiguous(weight),
    );
    let client = x.client.clone();
    let cube_dim = CubeDim::new_1d(CUBE_SIZE);
    let f32_type = burn::backend::cubecl::dtype_to_storage_type(DType::F32);
    let geo = conv_geometry(&x, g);
    let [nx, _, nw] = g.sizes();
    let dx = if input_grad {
        let dx = empty_float(&x, [g.batch, g.channels_in, g.input[0], g.input[1]]);
        if nx > 0 {
            let c = pattern.columns();
            components::sparse_conv2d::sparse_conv_input_grad::launch(
                &client,
                grid(nx.div_ceil(CUBE_SIZE as usize)),
                cube_dim,
                dy.clone().into_buffer_arg(),
                weight.into_buffer_arg(),
                upload_u32(&x, &c.col_ptr).into_buffer_arg(),
                upload_u32(&x, &c.col_row).into_buffer_arg(),
                geo.clone().into_buffer_arg(),
                dx.clone().into_buffer_arg(),
                f32_type,
            );
        }
        dx
    } else {
        empty_float(&x, [0, 0, 0, 0])
    };
    let dw = empty_float(
        &x,
        [g.channels_out, g.channels_in, g.kernel[0], g.kernel[1]],
    );
    if nw > 0 {
        fill::fill_zero::launch(
            &client,
            grid(nw.div_ceil(CUBE_SIZE as usize)),
            cube_dim,
            dw.clone().into_buffer_arg(),
            f32_type,
        );
    }
    if pattern.nnz() > 0 && g.batch > 0 {
        components::sparse_conv2d::sparse_conv_weight_grad::launch(
            &client,
            grid(pattern.nnz().div_ceil(CUBE_SIZE as usize)),
            cube_dim,
            x.into_buffer_arg(),
            dy.into_buffer_arg(),
            upload_u32(&dw, &pattern.columns().entry_row).into_buffer_arg(),
            upload_u32(&dw, pattern.row_entries()).into_buffer_arg(),
            geo.into_buffer_arg(),
            dw.clone().into_buffer_arg(),
            f32_type,
        );
    }
    (dx, dw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_table_covers_segments_in_blocks() {
        let t = block_table(&[(0, 5000), (5000, 0), (7000, 10)]);
        assert_eq!(
            t,
            [
                0,
                0,
                BLOCK_ELEMS as u32,
                0,
                0,
                BLOCK_ELEMS as u32,
                5000,
                0,
                2,
                7000,
                7010,
                7000
            ]
        );
    }

    #[test]
    fn index_bytes_fit_longest_segment() {
        assert_eq!(index_bytes(&[]), 1);
        assert_eq!(index_bytes(&[(0, 256)]), 1);
        assert_eq!(index_bytes(&[(0, 257)]), 2);
        assert_eq!(index_bytes(&[(0, 1 << 24)]), 3);
        assert_eq!(index_bytes(&[(0, (1 << 24) + 1)]), 4);
        assert!(tiles_exactly(&[(0, 3), (3, 0), (3, 4)], 7));
        assert!(!tiles_exactly(&[(0, 3), (4, 3)], 7));
    }
}
