//! The problem catalogue shared by the tests and the benchmarks.
//!
//! Every problem is generated deterministically from its name's parameters: sizes from 1 to
//! 10^7, `k` in {0, 1, n/2, n-1, n, ...}, score patterns with ties, negative zero, denormals,
//! infinities and NaN, empty segments, gaps, eligibility masks, 1 and 54 segments (the weight
//! tensors of ResNet-50).

use crate::cpu_reference::drop_grow::{DropGrowSegment, GrowBy};
use crate::cpu_reference::sparse_conv2d::Conv2dGeometry;
use crate::cpu_reference::top_k_mask::Segment;

/// How the scores of a problem are drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pattern {
    /// Uniform random bits reinterpreted as finite floats of both signs and all magnitudes.
    Uniform,
    /// Magnitudes of a bell-shaped weight distribution: what magnitude pruning scores.
    Magnitude,
    /// Every score equal: selection is decided by index alone.
    AllEqual,
    /// Eight distinct values: long runs of ties at every threshold.
    FewDistinct,
    /// Mostly special values: `-0.0`, `+0.0`, denormals of both signs, `±inf`, NaN, `f32::MAX`.
    Specials,
    /// Strictly increasing scores.
    Ascending,
}

/// How the positions of a problem are split into segments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// One segment over the whole buffer.
    Single,
    /// The 54 weight tensors of ResNet-50, scaled to the buffer length.
    ResNet50,
    /// Segments with empty ones and gaps between them.
    Gapped,
}

/// How many positions each segment selects.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum KRule {
    /// None.
    Zero,
    /// One.
    One,
    /// All available but one.
    AllButOne,
    /// All available.
    All,
    /// A fraction of the available positions, rounded down.
    Fraction(f64),
}

/// A generated selection problem.
#[derive(Clone, Debug)]
pub struct Problem {
    /// A unique, descriptive name.
    pub name: String,
    /// The flat scores.
    pub scores: Vec<f32>,
    /// The eligibility mask, when the problem has one.
    pub eligible: Option<Vec<bool>>,
    /// The segments, with their `k`.
    pub segments: Vec<Segment>,
}

impl Problem {
    /// Number of positions.
    pub fn len(&self) -> usize {
        self.scores.len()
    }

    /// Whether the problem has no positions.
    pub fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }

    /// Total number of positions selected.
    pub fn selected(&self) -> usize {
        self.segments.iter().map(|s| s.k).sum()
    }
}

/// SplitMix64: a tiny deterministic generator for problem data.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// The weight-tensor sizes of ResNet-50 in layer order: the stem convolution, 16 bottleneck
/// blocks of three convolutions (plus a projection in the first block of each stage), and the
/// classifier: 54 tensors, 25,502,912 weights.
pub fn resnet50_layer_sizes() -> Vec<usize> {
    let mut sizes = vec![7 * 7 * 3 * 64];
    let mut inputs = 64;
    for (mid, blocks) in [(64usize, 3), (128, 4), (256, 6), (512, 3)] {
        let out = mid * 4;
        for b in 0..blocks {
            let c_in = if b == 0 { inputs } else { out };
            sizes.push(c_in * mid);
            sizes.push(9 * mid * mid);
            sizes.push(mid * out);
            if b == 0 {
                sizes.push(inputs * out);
            }
        }
        inputs = out;
    }
    sizes.push(2048 * 1000);
    sizes
}

/// Segment lengths of `layout` for a buffer of `n` positions (gaps are not part of any).
fn spans(layout: Layout, n: usize) -> Vec<(usize, usize)> {
    match layout {
        Layout::Single => vec![(0, n)],
        Layout::ResNet50 => {
            let sizes = resnet50_layer_sizes();
            let total: usize = sizes.iter().sum();
            let mut spans = Vec::with_capacity(sizes.len());
            let mut offset = 0;
            for (i, s) in sizes.iter().enumerate() {
                let len = if i + 1 == sizes.len() {
                    n - offset
                } else {
                    ((*s as u128 * n as u128) / total as u128) as usize
                };
                let len = len.min(n - offset);
                spans.push((offset, len));
                offset += len;
            }
            spans
        }
        Layout::Gapped => {
            // An empty segment first, a gap of a tenth, two halves of the rest, an empty one
            // inside, and a trailing gap.
            let gap = n / 10;
            let body = n - 2 * gap;
            let half = body / 2;
            vec![
                (0, 0),
                (gap, half),
                (gap + half, 0),
                (gap + half, body - half),
                (n, 0),
            ]
        }
    }
}

fn scores(pattern: Pattern, n: usize, seed: u64) -> Vec<f32> {
    let mut rng = SplitMix64::new(seed);
    (0..n)
        .map(|i| {
            let r = rng.next_u64();
            match pattern {
                Pattern::Uniform => {
                    // Finite floats only: exponent 0xFF maps to 0xFE.
                    let bits = (r >> 32) as u32;
                    let bits = if bits & 0x7F80_0000 == 0x7F80_0000 {
                        bits & 0xFF7F_FFFF
                    } else {
                        bits
                    };
                    f32::from_bits(bits)
                }
                Pattern::Magnitude => {
                    // Sum of uniforms: a bell shape; its magnitude is what pruning ranks.
                    let a = (r & 0xFFFF) as f32 + ((r >> 16) & 0xFFFF) as f32;
                    let b = ((r >> 32) & 0xFFFF) as f32 + ((r >> 48) & 0xFFFF) as f32;
                    ((a - b) / 65536.0 * 0.05).abs()
                }
                Pattern::AllEqual => 0.25,
                Pattern::FewDistinct => ((r >> 61) as f32 - 3.5) * 0.5,
                Pattern::Specials => match r % 12 {
                    0 => -0.0,
                    1 => 0.0,
                    2 => f32::from_bits(1),
                    3 => -f32::from_bits(1),
                    4 => f32::from_bits(0x007F_FFFF),
                    5 => f32::INFINITY,
                    6 => f32::NEG_INFINITY,
                    7 => f32::NAN,
                    8 => f32::MAX,
                    9 => -f32::MIN_POSITIVE,
                    _ => ((r >> 40) % 5) as f32 - 2.0,
                },
                Pattern::Ascending => i as f32,
            }
        })
        .collect()
}

fn eligibility(n: usize, seed: u64, density: f64) -> Vec<bool> {
    let mut rng = SplitMix64::new(seed ^ 0xE11_61B1E);
    let threshold = (density * u32::MAX as f64) as u64;
    (0..n)
        .map(|_| (rng.next_u64() >> 32) <= threshold)
        .collect()
}

/// Build one problem.
///
/// `k` is computed from each segment's available positions (eligible, non-NaN), so every
/// catalogue problem is solvable.
pub fn problem(
    pattern: Pattern,
    layout: Layout,
    n: usize,
    k: KRule,
    eligible_density: Option<f64>,
    seed: u64,
) -> Problem {
    let scores = scores(pattern, n, seed);
    let eligible = eligible_density.map(|d| eligibility(n, seed, d));
    let segments = spans(layout, n)
        .into_iter()
        .map(|(offset, len)| {
            let available = (offset..offset + len)
                .filter(|&i| eligible.as_ref().is_none_or(|e| e[i]) && !scores[i].is_nan())
                .count();
            let k = match k {
                KRule::Zero => 0,
                KRule::One => available.min(1),
                KRule::AllButOne => available.saturating_sub(1),
                KRule::All => available,
                KRule::Fraction(f) => (available as f64 * f).floor() as usize,
            };
            Segment { offset, len, k }
        })
        .collect();
    let name = format!(
        "{pattern:?}/{layout:?}/n={n}/k={k:?}/eligible={}",
        eligible_density.map_or("all".to_string(), |d| format!("{d}"))
    );
    Problem {
        name,
        scores,
        eligible,
        segments,
    }
}

/// The ResNet-50 problem of the benchmarks: 54 segments, 25.5M positions, magnitude scores,
/// `k` = 30% of the active (eligible) positions of every segment.
pub fn resnet50(eligible_density: Option<f64>) -> Problem {
    let n = resnet50_layer_sizes().iter().sum();
    problem(
        Pattern::Magnitude,
        Layout::ResNet50,
        n,
        KRule::Fraction(0.3),
        eligible_density,
        50,
    )
}

/// The sizes of the catalogue.
pub const SIZES: [usize; 12] = [
    1, 2, 7, 255, 256, 257, 4_097, 65_537, 100_000, 1_000_000, 2_500_000, 10_000_000,
];

/// Every catalogue problem with at most `max_len` positions.
///
/// Small sizes get every pattern, `k` rule and layout; the large ones a representative subset
/// (uniform and tie-heavy scores, 1 and 54 segments).
pub fn catalogue(max_len: usize) -> Vec<Problem> {
    problems(|n| n <= max_len)
}

/// The catalogue problems of one of the [`SIZES`], as [`catalogue`] builds them (same names,
/// seeds and data): a way to take the large sizes one at a time.
pub fn catalogue_of_size(len: usize) -> Vec<Problem> {
    problems(|n| n == len)
}

/// The catalogue problems of the sizes `keep` accepts. Seeds run over the whole catalogue, so a
/// problem is the same whichever sizes are kept.
fn problems(keep: impl Fn(usize) -> bool) -> Vec<Problem> {
    let patterns = [
        Pattern::Uniform,
        Pattern::Magnitude,
        Pattern::AllEqual,
        Pattern::FewDistinct,
        Pattern::Specials,
        Pattern::Ascending,
    ];
    let ks = [
        KRule::Zero,
        KRule::One,
        KRule::AllButOne,
        KRule::All,
        KRule::Fraction(0.3),
    ];
    let mut out = Vec::new();
    let mut seed = 1;
    for &n in &SIZES {
        let large = n > 100_000;
        for &pattern in &patterns {
            if large && !matches!(pattern, Pattern::Uniform | Pattern::FewDistinct) {
                continue;
            }
            for &layout in &[Layout::Single, Layout::ResNet50, Layout::Gapped] {
                if n < 54 && layout == Layout::ResNet50 {
                    continue;
                }
                if large && layout == Layout::Gapped {
                    continue;
                }
                for &k in &ks {
                    if large && !matches!(k, KRule::One | KRule::Fraction(_)) {
                        continue;
                    }
                    for eligible in [None, Some(0.5)] {
                        if large && eligible.is_some() && pattern != Pattern::FewDistinct {
                            continue;
                        }
                        seed += 1;
                        if keep(n) {
                            out.push(problem(pattern, layout, n, k, eligible, seed));
                        }
                    }
                }
            }
        }
    }
    out
}

/// A drop-and-grow problem: weights, the current mask, grow scores, and per layer how many
/// connections are kept and grown.
#[derive(Clone, Debug)]
pub struct DropGrowProblem {
    /// A unique, descriptive name.
    pub name: String,
    /// The weights (dropped by magnitude).
    pub weights: Vec<f32>,
    /// The current mask.
    pub mask: Vec<bool>,
    /// The grow scores (unused by random growth).
    pub scores: Vec<f32>,
    /// How grown positions are ranked.
    pub grow_by: GrowBy,
    /// Whether a dropped connection may be grown back in the same decision.
    pub allow_regrow: bool,
    /// The layers.
    pub segments: Vec<DropGrowSegment>,
}

/// Drop-and-grow problems with at most `max_len` positions: every size of [`SIZES`], weights of
/// five patterns (special values included), the three layouts, a 30%-dense mask, and in turn
/// drop fractions 0, 0.3 and 1, growth by scores, magnitude and Philox samples, and regrowth
/// allowed or not. `keep` and `grow` are what an update asks (`n_active - int(n_active * f)`
/// and `int(n_active * f)`), bounded by what the layer has.
pub fn drop_grow_catalogue(max_len: usize) -> Vec<DropGrowProblem> {
    let weight_patterns = [
        Pattern::Uniform,
        Pattern::Magnitude,
        Pattern::FewDistinct,
        Pattern::Specials,
        Pattern::AllEqual,
    ];
    let grow = [
        GrowBy::Scores,
        GrowBy::Magnitude,
        GrowBy::Random { seed: 5, step: 40 },
    ];
    let mut out = Vec::new();
    let mut turn = 0usize;
    for &n in SIZES.iter().filter(|&&n| n <= max_len) {
        for &pattern in &weight_patterns {
            for &layout in &[Layout::Single, Layout::ResNet50, Layout::Gapped] {
                if n < 54 && layout == Layout::ResNet50 {
                    continue;
                }
                turn += 1;
                let seed = 1000 + turn as u64;
                let fraction = [0.3, 0.0, 1.0][turn % 3];
                let grow_by = grow[(turn / 3) % 3];
                let allow_regrow = turn.is_multiple_of(2);
                let weights = scores(pattern, n, seed);
                let mask = eligibility(n, seed, 0.3);
                let grow_pattern = [Pattern::FewDistinct, Pattern::Uniform][turn % 2];
                let grow_scores = scores(grow_pattern, n, seed + 1);
                let segments = spans(layout, n)
                    .into_iter()
                    .enumerate()
                    .map(|(i, (offset, len))| {
                        let range = offset..offset + len;
                        let active = range.clone().filter(|&i| mask[i]).count();
                        let usable = range
                            .clone()
                            .filter(|&i| mask[i] && !weights[i].is_nan())
                            .count();
                        let prune = (active as f64 * fraction).floor() as usize;
                        let keep = (active - prune).min(usable);
                        let candidates = if allow_regrow {
                            len - keep
                        } else {
                            len - active
                        };
                        DropGrowSegment {
                            offset,
                            len,
                            keep,
                            grow: prune.min(candidates),
                            stream: crate::stream_id(&format!("layer{i}.weight")),
                        }
                    })
                    .collect();
                out.push(DropGrowProblem {
                    name: format!(
                        "drop-grow {pattern:?}/{layout:?}/n={n}/drop={fraction}/{grow_by:?}/regrow={allow_regrow}"
                    ),
                    weights,
                    mask,
                    scores: grow_scores,
                    grow_by,
                    allow_regrow,
                    segments,
                });
            }
        }
    }
    out
}

/// How the active positions of a sparse-product problem are laid out.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MaskShape {
    /// Each position active with this probability.
    Random(f64),
    /// Every position active.
    Full,
    /// No position active.
    Empty,
    /// Rows in turn empty, fully dense and 10% random, every third column empty.
    RowsAndColumns,
}

/// `weight` with zeros where `mask` is `false`.
fn masked(weight: &[f32], mask: &[bool]) -> Vec<f32> {
    weight
        .iter()
        .zip(mask)
        .map(|(&w, &m)| if m { w } else { 0.0 })
        .collect()
}

/// A sparse linear layer problem: `y = x W`, `dx = dy Wᵀ` and `dW` at the active positions.
#[derive(Clone, Debug)]
pub struct SparseMatmulProblem {
    /// A unique, descriptive name.
    pub name: String,
    /// Batch size.
    pub batch: usize,
    /// Inputs (rows of `W`).
    pub rows: usize,
    /// Outputs (columns of `W`).
    pub cols: usize,
    /// `[batch, rows]`, with a third of the entries exactly zero (a ReLU's output).
    pub x: Vec<f32>,
    /// `[batch, cols]`.
    pub dy: Vec<f32>,
    /// `[rows, cols]`; NaN at every inactive position, which no kernel may read.
    pub weight: Vec<f32>,
    /// `[rows, cols]`, `true` = active.
    pub mask: Vec<bool>,
}

impl SparseMatmulProblem {
    /// The weight with zeros at the inactive positions (what the masked dense path uses).
    pub fn masked_weight(&self) -> Vec<f32> {
        masked(&self.weight, &self.mask)
    }

    /// Multiply-adds of one dense product: `batch * rows * cols`.
    pub fn dense_work(&self) -> usize {
        self.batch * self.rows * self.cols
    }
}

/// One sparse-product problem (deterministic in its parameters).
pub fn sparse_matmul_problem(
    batch: usize,
    rows: usize,
    cols: usize,
    shape: MaskShape,
    seed: u64,
) -> SparseMatmulProblem {
    let mut rng = SplitMix64::new(seed);
    let mut uniform = move || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    let mask: Vec<bool> = (0..rows * cols)
        .map(|p| {
            let (i, j) = (p / cols.max(1), p % cols.max(1));
            match shape {
                MaskShape::Random(d) => uniform() < d,
                MaskShape::Full => true,
                MaskShape::Empty => false,
                MaskShape::RowsAndColumns => {
                    j % 3 != 2
                        && match i % 3 {
                            0 => false,
                            1 => true,
                            _ => uniform() < 0.1,
                        }
                }
            }
        })
        .collect();
    let weight = mask
        .iter()
        .map(|&m| {
            let v = (uniform() * 2.0 - 1.0) as f32;
            if m { v } else { f32::NAN }
        })
        .collect();
    let x = (0..batch * rows)
        .map(|_| {
            let u = uniform();
            if u < 1.0 / 3.0 {
                0.0
            } else {
                (u * 4.0 - 2.0) as f32
            }
        })
        .collect();
    let dy = (0..batch * cols)
        .map(|_| (uniform() * 2.0 - 1.0) as f32 * 0.01)
        .collect();
    SparseMatmulProblem {
        name: format!("sparse-matmul batch={batch}/{rows}x{cols}/{shape:?}"),
        batch,
        rows,
        cols,
        x,
        dy,
        weight,
        mask,
    }
}

/// The shapes of [`sparse_matmul_catalogue`]: batch 1, odd sizes across the kernels' tiles, the
/// MNIST MLP's three layers at batch 100, and a 4096x4096 layer.
pub const SPARSE_MATMUL_SHAPES: [(usize, usize, usize); 10] = [
    (1, 1, 1),
    (1, 7, 5),
    (3, 17, 13),
    (65, 33, 257),
    (129, 70, 300),
    (1, 784, 300),
    (100, 784, 300),
    (100, 300, 100),
    (100, 100, 10),
    (1, 4096, 4096),
];

/// Sparse-product problems with at most `max_work` dense multiply-adds: every shape of
/// [`SPARSE_MATMUL_SHAPES`] with an empty, a full, a row-and-column structured, a 10% and a 2%
/// random mask.
pub fn sparse_matmul_catalogue(max_work: usize) -> Vec<SparseMatmulProblem> {
    let shapes = [
        MaskShape::Empty,
        MaskShape::Full,
        MaskShape::RowsAndColumns,
        MaskShape::Random(0.1),
        MaskShape::Random(0.02),
    ];
    let mut out = Vec::new();
    for (n, &(batch, rows, cols)) in SPARSE_MATMUL_SHAPES.iter().enumerate() {
        if batch * rows * cols > max_work {
            continue;
        }
        for (k, &shape) in shapes.iter().enumerate() {
            out.push(sparse_matmul_problem(
                batch,
                rows,
                cols,
                shape,
                7_000 + (n * 10 + k) as u64,
            ));
        }
    }
    out
}

/// A constant fan-in problem for the condensed product: every output keeps `k` inputs.
#[derive(Clone, Debug)]
pub struct ConstantFanInProblem {
    /// The problem in the layout of the other sparse products (`weight` NaN where inactive).
    pub matmul: SparseMatmulProblem,
    /// Active inputs of every output.
    pub k: usize,
}

/// One constant fan-in problem: `batch x rows` inputs, `cols` outputs, `k` active inputs per
/// output at random places (deterministic in the parameters).
pub fn constant_fan_in_problem(
    batch: usize,
    rows: usize,
    cols: usize,
    k: usize,
    seed: u64,
) -> ConstantFanInProblem {
    let mut p = sparse_matmul_problem(batch, rows, cols, MaskShape::Full, seed);
    let mut rng = SplitMix64::new(seed ^ 0x5eed);
    let k = k.min(rows);
    p.mask = vec![false; rows * cols];
    for j in 0..cols {
        // A partial Fisher-Yates shuffle picks the output's k inputs.
        let mut inputs: Vec<usize> = (0..rows).collect();
        for t in 0..k {
            let pick = t + (rng.next_u64() % (rows - t) as u64) as usize;
            inputs.swap(t, pick);
            p.mask[inputs[t] * cols + j] = true;
        }
    }
    for (w, &m) in p.weight.iter_mut().zip(&p.mask) {
        if !m {
            *w = f32::NAN;
        }
    }
    p.name = format!("constant-fan-in batch={batch}/{rows}x{cols}/k={k}");
    ConstantFanInProblem { matmul: p, k }
}

/// Constant fan-in problems with at most `max_work` dense multiply-adds: every shape of
/// [`SPARSE_MATMUL_SHAPES`] with empty outputs (`k = 0`), full ones (`k = rows`), half (2:4's
/// count), 10% and one input per output.
pub fn constant_fan_in_catalogue(max_work: usize) -> Vec<ConstantFanInProblem> {
    let mut out = Vec::new();
    for (n, &(batch, rows, cols)) in SPARSE_MATMUL_SHAPES.iter().enumerate() {
        if batch * rows * cols > max_work {
            continue;
        }
        let ks = [0, rows, rows / 2, rows.div_ceil(10), 1];
        for (i, &k) in ks.iter().enumerate() {
            out.push(constant_fan_in_problem(
                batch,
                rows,
                cols,
                k,
                9_000 + (n * 10 + i) as u64,
            ));
        }
    }
    out
}

/// A sparse convolution problem: `y = conv2d(x, W)`, `dx` and `dW` at the active taps.
#[derive(Clone, Debug)]
pub struct SparseConvProblem {
    /// A unique, descriptive name.
    pub name: String,
    /// The convolution.
    pub geometry: Conv2dGeometry,
    /// `[batch, channels_in, h, w]`, with a third of the entries exactly zero.
    pub x: Vec<f32>,
    /// `[batch, channels_out, oh, ow]`.
    pub dy: Vec<f32>,
    /// `[channels_out, channels_in, kh, kw]`; NaN at every inactive tap.
    pub weight: Vec<f32>,
    /// `[channels_out, taps]`, `true` = active.
    pub mask: Vec<bool>,
}

impl SparseConvProblem {
    /// The weight with zeros at the inactive taps.
    pub fn masked_weight(&self) -> Vec<f32> {
        masked(&self.weight, &self.mask)
    }

    /// Multiply-adds of one dense convolution.
    pub fn dense_work(&self) -> usize {
        let [oh, ow] = self.geometry.output();
        self.geometry.batch * self.geometry.channels_out * self.geometry.taps() * oh * ow
    }
}

/// One sparse convolution (deterministic in its parameters): the weight, mask and values as
/// [`sparse_matmul_problem`] draws them for a `[channels_out, taps]` matrix.
pub fn sparse_conv_problem(
    geometry: Conv2dGeometry,
    shape: MaskShape,
    seed: u64,
) -> SparseConvProblem {
    let g = geometry;
    let [nx, ny, _] = g.sizes();
    let base = sparse_matmul_problem(1, g.channels_out, g.taps(), shape, seed);
    let mut rng = SplitMix64::new(seed ^ 0xC0DE);
    let mut uniform = move || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    let x = (0..nx)
        .map(|_| {
            let u = uniform();
            if u < 1.0 / 3.0 {
                0.0
            } else {
                (u * 4.0 - 2.0) as f32
            }
        })
        .collect();
    let dy = (0..ny)
        .map(|_| (uniform() * 2.0 - 1.0) as f32 * 0.01)
        .collect();
    SparseConvProblem {
        name: format!(
            "sparse-conv batch={} {}x{}x{} -> {} k={:?} s={:?} p={:?} d={:?}/{shape:?}",
            g.batch,
            g.channels_in,
            g.input[0],
            g.input[1],
            g.channels_out,
            g.kernel,
            g.stride,
            g.padding,
            g.dilation
        ),
        geometry: g,
        x,
        dy,
        weight: base.weight,
        mask: base.mask,
    }
}

/// The convolutions of [`sparse_conv_catalogue`]: `(batch, channels_in, [h, w], channels_out,
/// [kh, kw], stride, padding, dilation)`. Batch 1 and a 1x1 image, odd sizes, stride 2,
/// pointwise, dilation, asymmetric padding, a WideResNet-22-2 block and a ResNet-50 3x3 layer.
#[allow(clippy::type_complexity)]
pub const SPARSE_CONV_SHAPES: [(
    usize,
    usize,
    [usize; 2],
    usize,
    [usize; 2],
    usize,
    [(usize, usize); 2],
    usize,
); 10] = [
    (1, 1, [1, 1], 1, [1, 1], 1, [(0, 0), (0, 0)], 1),
    (2, 3, [7, 5], 4, [3, 3], 1, [(1, 1), (1, 1)], 1),
    (1, 5, [9, 9], 3, [3, 3], 2, [(1, 1), (1, 1)], 1),
    (3, 4, [6, 6], 6, [1, 1], 1, [(0, 0), (0, 0)], 1),
    (2, 3, [8, 8], 5, [1, 1], 2, [(0, 0), (0, 0)], 1),
    (1, 2, [11, 13], 3, [3, 3], 1, [(2, 2), (2, 2)], 2),
    (1, 3, [6, 6], 2, [2, 2], 1, [(0, 1), (1, 0)], 1),
    (2, 17, [19, 21], 9, [3, 3], 1, [(1, 1), (1, 1)], 1),
    (32, 32, [32, 32], 32, [3, 3], 1, [(1, 1), (1, 1)], 1),
    (1, 64, [56, 56], 64, [3, 3], 1, [(1, 1), (1, 1)], 1),
];

/// Sparse convolution problems with at most `max_work` dense multiply-adds: every shape of
/// [`SPARSE_CONV_SHAPES`] with the mask shapes of [`sparse_matmul_catalogue`] (rows are output
/// channels).
pub fn sparse_conv_catalogue(max_work: usize) -> Vec<SparseConvProblem> {
    let shapes = [
        MaskShape::Empty,
        MaskShape::Full,
        MaskShape::RowsAndColumns,
        MaskShape::Random(0.1),
        MaskShape::Random(0.02),
    ];
    let mut out = Vec::new();
    for (n, &(batch, cin, input, cout, kernel, stride, padding, dilation)) in
        SPARSE_CONV_SHAPES.iter().enumerate()
    {
        let geometry = Conv2dGeometry::new(
            [batch, cin, input[0], input[1]],
            [cout, cin, kernel[0], kernel[1]],
            [stride; 2],
            padding,
            [dilation; 2],
            1,
        )
        .expect("catalogue geometries are valid");
        let [oh, ow] = geometry.output();
        if batch * cout * geometry.taps() * oh * ow > max_work {
            continue;
        }
        for (k, &shape) in shapes.iter().enumerate() {
            out.push(sparse_conv_problem(
                geometry,
                shape,
                8_000 + (n * 10 + k) as u64,
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resnet50_has_54_tensors_and_25_5m_weights() {
        let sizes = resnet50_layer_sizes();
        assert_eq!(sizes.len(), 54);
        assert_eq!(sizes.iter().sum::<usize>(), 25_502_912);
    }

    #[test]
    fn layouts_stay_in_bounds() {
        for layout in [Layout::Single, Layout::ResNet50, Layout::Gapped] {
            for n in [0, 1, 54, 100, 12_345] {
                let s = spans(layout, n);
                assert!(s.iter().all(|&(o, l)| o + l <= n), "{layout:?} {n}");
            }
        }
        assert_eq!(spans(Layout::ResNet50, 1000).len(), 54);
    }

    #[test]
    fn one_size_at_a_time_equals_the_catalogue() {
        let all = catalogue(4_097);
        let by_size: Vec<Problem> = SIZES
            .iter()
            .filter(|&&n| n <= 4_097)
            .flat_map(|&n| catalogue_of_size(n))
            .collect();
        assert_eq!(all.len(), by_size.len());
        for (a, b) in all.iter().zip(&by_size) {
            assert_eq!(a.name, b.name);
            assert_eq!(a.segments, b.segments);
            let bits = |p: &Problem| p.scores.iter().map(|s| s.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(a), bits(b), "{}", a.name);
        }
    }

    #[test]
    fn catalogue_is_deterministic_and_named_uniquely() {
        let a = catalogue(300);
        let b = catalogue(300);
        assert_eq!(a.len(), b.len());
        let mut names: Vec<&str> = a.iter().map(|p| p.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), a.len());
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(
                x.scores.iter().map(|s| s.to_bits()).collect::<Vec<_>>(),
                y.scores.iter().map(|s| s.to_bits()).collect::<Vec<_>>()
            );
        }
    }
}
