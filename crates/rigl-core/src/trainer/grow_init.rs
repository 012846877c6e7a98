//! [`GrowInit`]: the weight of new connections, and the random values it draws.

use rigl_kernels::{Philox, stream_id};
use serde::{Deserialize, Serialize};

/// Weight given to new connections: the reference's `grow_init` options. The `_X` suffix of a
/// name is a divisor (default 1), read as the reference's `extract_number` does
/// (`random_normal_2`, `random_normal_.5`).
///
/// Random values come from the counter-based generator keyed by `(seed, layer, step)` (the
/// reference's stateless generators are keyed by Python's per-process string hash, so no run
/// reproduces another's values bit for bit). They are drawn at every new connection of the
/// update (and, for `static_rezero`, at every re-zeroed weight).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum GrowInit {
    /// Zero (`zeros`, the reference's default).
    #[default]
    Zeros,
    /// `initial_dist_X`: a random permutation of the layer's initial weights (the values it had
    /// when training started, kept by the trainer and its checkpoints), divided by X. A trainer
    /// restored from a checkpoint written without them draws from the layer's current weights.
    InitialDist(f64),
    /// `random_normal_X`: `N(0, std(W)) / X`, with `std(W)` the population standard deviation of
    /// all stored weights of the layer (active and inactive, as the reference's
    /// `reduce_std(weights)` of the raw variable).
    RandomNormal(f64),
    /// `random_uniform_X`: `U(-mean|W|, mean|W|) / X`, the mean over all stored weights.
    RandomUniform(f64),
    /// `grad_scale_X` (RigL only): the dense gradient `dL/d(w*m)` divided by X.
    GradScale(f64),
    /// `grad_sign_X` (RigL only): `sign(dL/d(w*m)) / X`.
    GradSign(f64),
}

impl GrowInit {
    /// The divisor X (1 for `zeros`).
    pub fn divisor(&self) -> f64 {
        match *self {
            Self::Zeros => 1.0,
            Self::InitialDist(x)
            | Self::RandomNormal(x)
            | Self::RandomUniform(x)
            | Self::GradScale(x)
            | Self::GradSign(x) => x,
        }
    }

    /// Whether the values are the dense gradient's (RigL's options).
    pub fn uses_gradient(&self) -> bool {
        matches!(self, Self::GradScale(_) | Self::GradSign(_))
    }
}

impl core::str::FromStr for GrowInit {
    type Err = String;

    fn from_str(s: &str) -> core::result::Result<Self, String> {
        let s = s.to_ascii_lowercase();
        if s == "zeros" {
            return Ok(Self::Zeros);
        }
        type Make = fn(f64) -> GrowInit;
        let options: [(&str, Make); 5] = [
            ("initial_dist", Self::InitialDist),
            ("random_normal", Self::RandomNormal),
            ("random_uniform", Self::RandomUniform),
            ("grad_scale", Self::GradScale),
            ("grad_sign", Self::GradSign),
        ];
        let unknown = || {
            format!(
                "unknown grow init `{s}`: expected zeros, initial_dist[_X], random_normal[_X], \
                 random_uniform[_X], grad_scale[_X] or grad_sign[_X] (X a divisor, e.g. random_normal_2)"
            )
        };
        let (name, make) = options
            .iter()
            .find(|(name, _)| s.starts_with(name))
            .ok_or_else(unknown)?;
        // The reference's extract_number: the number after the last `_`, 1 without one.
        let rest = &s[name.len()..];
        let divisor = match rest.strip_prefix('_') {
            None if rest.is_empty() => 1.0,
            Some(x) if !x.is_empty() && x.chars().all(|c| c.is_ascii_digit() || c == '.') => {
                x.parse::<f64>().map_err(|_| unknown())?
            }
            _ => return Err(unknown()),
        };
        Ok(make(divisor))
    }
}

impl core::fmt::Display for GrowInit {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let name = match self {
            Self::Zeros => return f.write_str("zeros"),
            Self::InitialDist(_) => "initial_dist",
            Self::RandomNormal(_) => "random_normal",
            Self::RandomUniform(_) => "random_uniform",
            Self::GradScale(_) => "grad_scale",
            Self::GradSign(_) => "grad_sign",
        };
        write!(f, "{name}_{}", self.divisor())
    }
}

/// The stream of the grow initialisation of the layer at `path` (apart from its selection
/// streams).
pub(super) fn grow_stream(path: &str) -> u32 {
    stream_id(path) ^ 0x9E37_79B9
}

/// Standard normal samples (times `std`) by Box-Muller over the counter-based generator.
pub(super) fn normal_samples(seed: u64, path: &str, step: i64, n: usize, std: f64) -> Vec<f32> {
    let g = Philox::new(seed);
    let stream = grow_stream(path);
    (0..n as u64)
        .map(|i| {
            let u1 = ((g.u32(stream, (step + 1) as u32, 2 * i) >> 8) as f64 + 1.0) / 16_777_217.0;
            let u2 = (g.u32(stream, (step + 1) as u32, 2 * i + 1) >> 8) as f64 / 16_777_216.0;
            ((-2.0 * u1.ln()).sqrt() * (2.0 * core::f64::consts::PI * u2).cos() * std) as f32
        })
        .collect()
}

/// Uniform samples in `[-1, 1)` over the counter-based generator (`-m + u * 2m` for `m = 1`, as
/// TF's `random_uniform(minval=-m, maxval=m)`).
pub(super) fn uniform_samples(seed: u64, path: &str, step: i64, n: usize) -> Vec<f32> {
    let g = Philox::new(seed);
    let stream = grow_stream(path) ^ 0x5555;
    (0..n as u64)
        .map(|i| -1.0 + 2.0 * g.uniform(stream, (step + 1) as u32, i))
        .collect()
}

/// A random permutation of `values` (Fisher-Yates over the counter-based generator), the
/// reference's `random_shuffle` of the initial weights.
pub(super) fn shuffled(seed: u64, path: &str, step: i64, mut values: Vec<f32>) -> Vec<f32> {
    let g = Philox::new(seed);
    let stream = grow_stream(path) ^ 0xAAAA;
    for i in (1..values.len()).rev() {
        let r = ((g.u32(stream, (step + 1) as u32, 2 * i as u64) as u64) << 32)
            | g.u32(stream, (step + 1) as u32, 2 * i as u64 + 1) as u64;
        values.swap(i, (r % (i as u64 + 1)) as usize);
    }
    values
}
