//! Sparsity distributions: how a global sparsity is spread over layers.
//!
//! Exactly the reference algorithm (google-research/rigl `sparse_utils.get_sparsities`, copied
//! by jaxpruner):
//!
//! - [`Distribution::Uniform`]: every layer gets the global sparsity (the reference's `random`).
//! - [`Distribution::Er`] and [`Distribution::Erk`]: layer density is
//!   proportional to a raw score, `(n_in + n_out) / (n_in * n_out)` for ER and
//!   `(sum(shape) / prod(shape))^power` for ERK, scaled by one `eps` so that the total number
//!   of active weights equals the uniform budget `sum(N - floor(s * N))` (rounded per layer).
//!   While `eps * max(raw) > 1`, every layer tied at the maximum raw score is made dense
//!   (it then overspends the budget by its `floor(s * N)` zeros) and `eps` is recomputed.
//!
//! Layers in the custom map keep their custom sparsity and take no part in the budget.

use crate::error::{Result, SparsityError, check_sparsity};
use serde::{Deserialize, Serialize};

/// How a global sparsity is distributed over layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Distribution {
    /// The same sparsity for every layer (the reference calls it `random`).
    #[default]
    Uniform,
    /// Erdos-Renyi: density proportional to `(n_in + n_out) / (n_in * n_out)`.
    #[serde(alias = "erdos_renyi")]
    Er,
    /// Erdos-Renyi-Kernel: density proportional to `(sum(shape) / prod(shape))^power`.
    #[serde(alias = "erdos_renyi_kernel")]
    Erk,
}

impl Distribution {
    /// The short name used in configs and on the command line (`uniform`, `er`, `erk`).
    pub fn name(&self) -> &'static str {
        match self {
            Distribution::Uniform => "uniform",
            Distribution::Er => "er",
            Distribution::Erk => "erk",
        }
    }
}

impl core::fmt::Display for Distribution {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

impl core::str::FromStr for Distribution {
    type Err = String;

    fn from_str(s: &str) -> core::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "uniform" | "random" => Ok(Distribution::Uniform),
            "er" | "erdos_renyi" => Ok(Distribution::Er),
            "erk" | "erdos_renyi_kernel" => Ok(Distribution::Erk),
            other => Err(format!(
                "unknown distribution `{other}`: expected uniform, er or erk"
            )),
        }
    }
}

/// The shape of a maskable kernel, with its fan-in and fan-out.
///
/// ERK uses every dimension (order does not matter); ER uses only `fan_in` and `fan_out`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerShape {
    /// The kernel's dimensions as stored.
    pub dims: Vec<usize>,
    /// Input features (input channels per group for a conv).
    pub fan_in: usize,
    /// Output features (output channels for a conv).
    pub fan_out: usize,
}

impl LayerShape {
    /// A shape in the reference's (TensorFlow) layout: `[..., n_in, n_out]`, e.g. a conv kernel
    /// `[kh, kw, c_in, c_out]` or a dense kernel `[n_in, n_out]`. A rank-1 shape has
    /// `fan_in = 1`.
    pub fn tf(dims: &[usize]) -> Self {
        let r = dims.len();
        let fan_out = dims.last().copied().unwrap_or(1);
        let fan_in = if r >= 2 { dims[r - 2] } else { 1 };
        Self {
            dims: dims.to_vec(),
            fan_in,
            fan_out,
        }
    }

    /// A shape in Burn's layout, told by the kind of module holding it: `Linear` stores
    /// `[d_in, d_out]`, `ConvNd` stores `[c_out, c_in / groups, k...]` and `ConvTransposeNd`
    /// stores `[c_in, c_out / groups, k...]`. Other rank-2 kernels are taken as `[in, out]`,
    /// other higher-rank kernels as `[out, in, k...]`.
    pub fn burn(dims: &[usize], module_type: &str) -> Self {
        let r = dims.len();
        let (fan_in, fan_out) = if module_type.contains("ConvTranspose") && r >= 3 {
            (dims[0], dims[1])
        } else if r >= 3 || (module_type.contains("Conv") && r >= 2) {
            (dims[1], dims[0])
        } else if r == 2 {
            (dims[0], dims[1])
        } else {
            (1, dims.first().copied().unwrap_or(1))
        };
        Self {
            dims: dims.to_vec(),
            fan_in,
            fan_out,
        }
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.dims.iter().product()
    }
}

/// Number of zeros of a layer of `n` weights at sparsity `s`: `floor(s * n)`, in `f64` like the
/// reference.
pub fn n_zeros(sparsity: f64, n: usize) -> usize {
    (sparsity * n as f64).floor() as usize
}

/// Number of active weights of a layer of `n` weights at sparsity `s`: `n - floor(s * n)`.
pub fn n_ones(sparsity: f64, n: usize) -> usize {
    n - n_zeros(sparsity, n)
}

/// One layer as the distribution sees it.
#[derive(Clone, Debug)]
pub struct DistributionLayer {
    /// The layer's name (parameter path), for messages.
    pub name: String,
    /// Its kernel shape.
    pub shape: LayerShape,
    /// A custom sparsity, which takes the layer out of the budget.
    pub custom: Option<f64>,
}

/// The per-layer sparsities a distribution assigns.
#[derive(Clone, Debug, PartialEq)]
pub struct DistributionOutcome {
    /// One sparsity per input layer, in order.
    pub sparsities: Vec<f64>,
    /// ER/ERK's final scale factor (`None` for uniform, or when no layer was left to scale).
    pub eps: Option<f64>,
    /// Indices of the layers ER/ERK made dense.
    pub dense: Vec<usize>,
}

/// Assign per-layer sparsities for a global `sparsity` (see the module docs).
///
/// # Errors
/// [`SparsityError::InvalidSparsity`] for `sparsity` outside `[0, 1)`,
/// [`SparsityError::InvalidCustomSparsity`] for a custom value outside `[0, 1]`,
/// [`SparsityError::InvalidPowerScale`] for a non-finite power, [`SparsityError::EmptySelection`]
/// for no layers, and [`SparsityError::InfeasibleDistribution`] when the layers made dense
/// exceed the budget.
pub fn distribute(
    layers: &[DistributionLayer],
    sparsity: f64,
    distribution: Distribution,
    erk_power_scale: f64,
) -> Result<DistributionOutcome> {
    check_sparsity("global", sparsity)?;
    if layers.is_empty() {
        return Err(SparsityError::EmptySelection {
            reason: "the sparsity distribution got no layers".into(),
        });
    }
    for l in layers {
        if let Some(c) = l.custom
            && !(0.0..=1.0).contains(&c)
        {
            return Err(SparsityError::InvalidCustomSparsity {
                pattern: l.name.clone(),
                value: c,
            });
        }
    }
    if !erk_power_scale.is_finite() {
        return Err(SparsityError::InvalidPowerScale(erk_power_scale));
    }
    let custom_or = |l: &DistributionLayer, s: f64| l.custom.unwrap_or(s);
    if distribution == Distribution::Uniform {
        return Ok(DistributionOutcome {
            sparsities: layers.iter().map(|l| custom_or(l, sparsity)).collect(),
            eps: None,
            dense: Vec::new(),
        });
    }

    let raw_score = |shape: &LayerShape| -> f64 {
        match distribution {
            Distribution::Erk => {
                let sum: usize = shape.dims.iter().sum();
                (sum as f64 / shape.numel() as f64).powf(erk_power_scale)
            }
            _ => {
                let (i, o) = (shape.fan_in as f64, shape.fan_out as f64);
                (i + o) / (i * o)
            }
        }
    };

    let mut dense = vec![false; layers.len()];
    let (eps, raw) = loop {
        let mut divisor = 0.0f64;
        let mut rhs = 0.0f64;
        let mut raw = vec![None; layers.len()];
        for (i, l) in layers.iter().enumerate() {
            let n = l.shape.numel();
            let zeros = n_zeros(sparsity, n) as f64;
            if dense[i] {
                rhs -= zeros;
            } else if l.custom.is_some() {
                continue;
            } else {
                rhs += n as f64 - zeros;
                let r = raw_score(&l.shape);
                raw[i] = Some(r);
                divisor += r * n as f64;
            }
        }
        let max_raw = raw.iter().flatten().copied().fold(f64::NAN, f64::max);
        if max_raw.is_nan() {
            // No layer left to scale: all are custom or dense.
            break (None, raw);
        }
        let eps = rhs / divisor;
        if !eps.is_finite() || eps < 0.0 {
            return Err(SparsityError::InfeasibleDistribution {
                distribution: distribution.name().into(),
                sparsity,
                eps,
            });
        }
        if max_raw * eps > 1.0 {
            for (i, r) in raw.iter().enumerate() {
                if *r == Some(max_raw) {
                    dense[i] = true;
                }
            }
        } else {
            break (Some(eps), raw);
        }
    };

    let sparsities = layers
        .iter()
        .enumerate()
        .map(|(i, l)| match (l.custom, dense[i], raw[i], eps) {
            (Some(c), _, _, _) => c,
            (None, true, _, _) => 0.0,
            (None, false, Some(r), Some(e)) => 1.0 - e * r,
            _ => 0.0,
        })
        .collect();
    Ok(DistributionOutcome {
        sparsities,
        eps,
        dense: (0..layers.len()).filter(|&i| dense[i]).collect(),
    })
}

#[cfg(test)]
mod tests {
    //! Every row of the shared golden table (reference test suites, recomputed exactly).
    use super::*;

    fn layers(shapes: &[&[usize]]) -> Vec<DistributionLayer> {
        shapes
            .iter()
            .enumerate()
            .map(|(i, s)| DistributionLayer {
                name: format!("l{i}"),
                shape: LayerShape::tf(s),
                custom: None,
            })
            .collect()
    }

    fn check(
        layers: &[DistributionLayer],
        s: f64,
        d: Distribution,
        power: f64,
        expected: &[f64],
        eps: Option<f64>,
        dense: &[usize],
    ) {
        let out = distribute(layers, s, d, power).unwrap();
        assert_eq!(out.sparsities.len(), expected.len());
        for (got, want) in out.sparsities.iter().zip(expected) {
            assert!(
                (got - want).abs() < 1e-6,
                "{:?} vs {expected:?}",
                out.sparsities
            );
        }
        if let Some(e) = eps {
            assert!((out.eps.unwrap() - e).abs() < 1e-6, "eps {:?}", out.eps);
        }
        assert_eq!(out.dense, dense);
    }

    const ABC: &[&[usize]] = &[&[2, 4], &[3, 6], &[2, 4, 6]];

    #[test]
    fn erk_single_layer() {
        check(
            &layers(&[&[2, 4]]),
            0.5,
            Distribution::Erk,
            1.0,
            &[0.5],
            Some(0.666667),
            &[],
        );
    }

    #[test]
    fn erk_three_layers_first_dense() {
        check(
            &layers(ABC),
            0.5,
            Distribution::Erk,
            1.0,
            &[0.0, 0.309524, 0.654762],
            Some(1.380952),
            &[0],
        );
    }

    #[test]
    fn er_three_layers() {
        check(
            &layers(ABC),
            0.5,
            Distribution::Er,
            1.0,
            &[0.207143, 0.471429, 0.559524],
            Some(1.057143),
            &[],
        );
    }

    #[test]
    fn erk_three_layers_at_0_8() {
        check(
            &layers(ABC),
            0.8,
            Distribution::Erk,
            1.0,
            &[0.555556, 0.703704, 0.851852],
            Some(0.592593),
            &[],
        );
    }

    #[test]
    fn erk_power_two() {
        check(
            &layers(ABC),
            0.5,
            Distribution::Erk,
            2.0,
            &[0.0, 0.033333, 0.758333],
            Some(3.866667),
            &[0],
        );
    }

    #[test]
    fn er_ignores_power() {
        let a = distribute(&layers(ABC), 0.5, Distribution::Er, 1.0).unwrap();
        let b = distribute(&layers(ABC), 0.5, Distribution::Er, 3.0).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn erk_tied_maximum_layers_become_dense_together() {
        // Raw scores: a 6/8, c 16/126, d 11/28. Round one makes a dense; with a's overspend
        // charged, d then exceeds density 1 and turns dense in round two.
        check(
            &layers(&[&[2, 4], &[3, 6, 7], &[7, 4]]),
            0.5,
            Distribution::Erk,
            1.0,
            &[0.0, 0.642857, 0.0],
            Some(2.8125),
            &[0, 2],
        );
    }

    #[test]
    fn erk_ties_are_made_dense_in_one_round() {
        // Two identical layers tie at the maximum: both must turn dense at once.
        let mut ls = layers(&[&[2, 2], &[2, 2], &[10, 10, 10]]);
        let out = distribute(&ls, 0.9, Distribution::Erk, 1.0).unwrap();
        assert_eq!(out.dense, vec![0, 1]);
        assert_eq!(out.sparsities[0], 0.0);
        assert_eq!(out.sparsities[1], 0.0);
        // The budget holds: active weights equal the uniform budget, less the dense overspend.
        let budget: usize = ls.iter().map(|l| n_ones(0.9, l.shape.numel())).sum();
        let active: f64 = ls
            .iter()
            .zip(&out.sparsities)
            .map(|(l, s)| (1.0 - s) * l.shape.numel() as f64)
            .sum();
        assert!((active - budget as f64).abs() < 1e-9);
        ls[2].custom = Some(0.5);
        let out = distribute(&ls, 0.9, Distribution::Erk, 1.0).unwrap();
        assert_eq!(out.sparsities[2], 0.5);
    }

    #[test]
    fn erk_with_vector_left_out() {
        // The (4,) bias vector is never masked, so only a and c take part.
        check(
            &layers(&[&[2, 4], &[3, 6, 7]]),
            0.5,
            Distribution::Erk,
            1.0,
            &[0.0, 0.531746],
            Some(3.6875),
            &[0],
        );
    }

    #[test]
    fn erk_custom_layer_out_of_budget() {
        let mut ls = layers(&[&[2, 4], &[3, 6, 7], &[7, 4]]);
        ls[2].custom = Some(0.1);
        check(
            &ls,
            0.5,
            Distribution::Erk,
            1.0,
            &[0.0, 0.531746, 0.1],
            None,
            &[0],
        );
    }

    #[test]
    fn er_equal_layers() {
        check(
            &layers(&[&[2, 3], &[2, 3]]),
            0.5,
            Distribution::Er,
            1.0,
            &[0.5, 0.5],
            None,
            &[],
        );
        check(
            &layers(&[&[1, 1, 2, 3], &[1, 1, 2, 3]]),
            0.3,
            Distribution::Er,
            1.0,
            &[0.166667, 0.166667],
            None,
            &[],
        );
    }

    #[test]
    fn uniform_and_custom() {
        let mut ls = layers(ABC);
        ls[1].custom = Some(0.25);
        check(
            &ls,
            0.9,
            Distribution::Uniform,
            1.0,
            &[0.9, 0.25, 0.9],
            None,
            &[],
        );
    }

    #[test]
    fn exact_counts() {
        assert_eq!(n_ones(0.5, 120), 60);
        assert_eq!(n_ones(0.8, 8), 2);
        assert_eq!(n_ones(0.1, 30), 27);
        // MNIST reference set-up: 4704, 3540 and 1000 active weights.
        assert_eq!(n_ones(0.98, 784 * 300), 4704);
        assert_eq!(n_ones(0.882, 300 * 100), 3540);
        assert_eq!(n_ones(0.0, 100 * 10), 1000);
    }

    #[test]
    fn bad_input_is_a_typed_error() {
        let ls = layers(ABC);
        for s in [1.0, 1.5, -0.1, f64::NAN] {
            assert!(matches!(
                distribute(&ls, s, Distribution::Erk, 1.0),
                Err(SparsityError::InvalidSparsity { .. })
            ));
        }
        let mut bad = ls.clone();
        bad[0].custom = Some(1.2);
        assert!(matches!(
            distribute(&bad, 0.5, Distribution::Erk, 1.0),
            Err(SparsityError::InvalidCustomSparsity { .. })
        ));
        assert!(matches!(
            distribute(&[], 0.5, Distribution::Erk, 1.0),
            Err(SparsityError::EmptySelection { .. })
        ));
        assert!(matches!(
            distribute(&ls, 0.5, Distribution::Erk, f64::INFINITY),
            Err(SparsityError::InvalidPowerScale(_))
        ));
    }

    #[test]
    fn layer_shapes_from_burn_layouts() {
        let lin = LayerShape::burn(&[784, 300], "Struct:Linear");
        assert_eq!((lin.fan_in, lin.fan_out), (784, 300));
        let conv = LayerShape::burn(&[64, 3, 7, 7], "Struct:Conv2d");
        assert_eq!((conv.fan_in, conv.fan_out), (3, 64));
        let convt = LayerShape::burn(&[16, 8, 3, 3], "Struct:ConvTranspose2d");
        assert_eq!((convt.fan_in, convt.fan_out), (16, 8));
        let conv1 = LayerShape::burn(&[8, 4, 3], "Struct:Conv1d");
        assert_eq!((conv1.fan_in, conv1.fan_out), (4, 8));
    }
}
