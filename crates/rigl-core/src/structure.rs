//! Structured sparsity: N:M and constant fan-in masks, as groups of a layer's output-major view.
//!
//! Both structures say the same thing of a layer: in its *output-major view* (one row per output
//! neuron, its inputs in a row: a conv kernel `[c_out, c_in / groups, k...]` as it is stored, a
//! Burn `Linear` kernel `[d_in, d_out]` transposed), every run of `len` consecutive positions,
//! a *group*, holds exactly `k` active connections:
//!
//! | structure | group | `k` |
//! |---|---|---|
//! | `NM { n, m }` | `m` consecutive inputs of an output | `n` |
//! | `ConstantFanIn` | all inputs of an output | `round((1 - s) * fan_in)`, `s` the layer's planned sparsity (at least 1) |
//!
//! Masks stay in the stored layout; selections run on the view ([`Groups::to_view`],
//! [`Groups::from_view`]) with one segment per group, so the segmented selection keeps the
//! structure exactly on every backend. Drop and grow follow SRigL (Lasby et al. 2023): the drop
//! is decided over the whole layer by magnitude, as unstructured RigL does, and each group
//! then grows back to `k` connections by its own growth scores (see
//! [`crate::updater::drop_grow`]). SRigL's neuron ablation (removing outputs with too few
//! salient weights) is not implemented: every output keeps its `k` connections.
//!
//! Layers kept dense (sparsity 0, or left unmasked) carry no structure.

use crate::distribution::LayerShape;
use crate::error::{Result, SparsityError};
use burn::tensor::kind::Basic;
use burn::tensor::{Bool, Int, Tensor};
use rigl_kernels::Segment;
use serde::{Deserialize, Serialize};

/// The structure a mask keeps at initialisation and through every update.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Structure {
    /// Any placement: only the layer's count is kept.
    #[default]
    Unstructured,
    /// In every group of `m` consecutive inputs of an output, exactly `n` are active (2:4 is
    /// the pattern sparse tensor cores run); the layer's sparsity is `1 - n / m`.
    NM {
        /// Active connections per group.
        n: usize,
        /// Group length.
        m: usize,
    },
    /// Every output of a layer has the same number of active inputs (SRigL), the layer's count
    /// following the sparsity distribution.
    ConstantFanIn,
}

impl Structure {
    /// The sparsity every structured layer has, where the structure fixes it (`1 - n / m`).
    pub fn implied_sparsity(&self) -> Option<f64> {
        match *self {
            Structure::NM { n, m } => Some(1.0 - n as f64 / m as f64),
            _ => None,
        }
    }

    /// Whether masks are structured.
    pub fn is_structured(&self) -> bool {
        *self != Structure::Unstructured
    }

    /// Check the values of the structure.
    ///
    /// # Errors
    /// [`SparsityError::InvalidStructure`] for N:M with `n = 0`, `m = 0` or `n >= m` (N:M
    /// with `n = m` is dense).
    pub fn validate(&self) -> Result<()> {
        if let Structure::NM { n, m } = *self
            && (n == 0 || m == 0 || n >= m)
        {
            return Err(SparsityError::InvalidStructure(format!(
                "{n}:{m}: N:M needs 0 < n < m (n active of every m consecutive inputs)"
            )));
        }
        Ok(())
    }
}

impl core::fmt::Display for Structure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Structure::Unstructured => f.write_str("unstructured"),
            Structure::NM { n, m } => write!(f, "{n}:{m}"),
            Structure::ConstantFanIn => f.write_str("fan-in"),
        }
    }
}

impl core::str::FromStr for Structure {
    type Err = String;

    fn from_str(s: &str) -> core::result::Result<Self, String> {
        let s = s.trim().to_ascii_lowercase();
        match s.as_str() {
            "unstructured" | "none" => return Ok(Structure::Unstructured),
            "fan-in" | "fan_in" | "constant-fan-in" | "constant_fan_in" => {
                return Ok(Structure::ConstantFanIn);
            }
            _ => {}
        }
        let parsed = s
            .split_once(':')
            .and_then(|(n, m)| Some((n.trim().parse().ok()?, m.trim().parse().ok()?)));
        match parsed {
            Some((n, m)) => {
                let structure = Structure::NM { n, m };
                structure.validate().map_err(|e| e.to_string())?;
                Ok(structure)
            }
            None => Err(format!(
                "unknown structure `{s}`: expected unstructured, N:M (e.g. 2:4) or fan-in"
            )),
        }
    }
}

impl From<Structure> for String {
    fn from(s: Structure) -> String {
        s.to_string()
    }
}

impl TryFrom<String> for Structure {
    type Error = String;

    fn try_from(s: String) -> core::result::Result<Self, String> {
        s.parse()
    }
}

/// The groups of a structured layer (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Groups {
    /// Outputs: the rows of the output-major view.
    pub rows: usize,
    /// Inputs per output: the length of a row.
    pub fan_in: usize,
    /// Positions per group (`m`, or the fan-in).
    pub len: usize,
    /// Active positions per group.
    pub k: usize,
    /// Whether the stored kernel is `[fan_in, rows]` (a Burn `Linear`), whose view is its
    /// transpose; otherwise the stored kernel is the view.
    pub transposed: bool,
}

impl Groups {
    /// The groups of the layer at `path` with kernel `shape` and planned sparsity `sparsity`
    /// under `structure`; `None` when the layer carries no structure (unstructured, or dense).
    ///
    /// A rank-2 kernel is taken as Burn's `Linear` layout `[d_in, d_out]`, a higher-rank one as
    /// a conv kernel `[c_out, c_in / groups, k...]` (a transposed conv's `[c_in, ...]` is
    /// grouped by its first axis).
    ///
    /// # Errors
    /// [`SparsityError::Structure`] when the fan-in is not a multiple of `m`.
    pub fn of_layer(
        structure: Structure,
        path: &str,
        shape: &LayerShape,
        sparsity: f64,
    ) -> Result<Option<Self>> {
        if !structure.is_structured() || sparsity == 0.0 {
            return Ok(None);
        }
        let numel = shape.numel();
        let (rows, transposed) = match shape.dims.as_slice() {
            [_, out] => (*out, true),
            dims => (dims.first().copied().unwrap_or(1), false),
        };
        let fan_in = numel / rows.max(1);
        let (len, k) = match structure {
            Structure::NM { n, m } => {
                if !fan_in.is_multiple_of(m) {
                    return Err(SparsityError::Structure {
                        path: path.to_string(),
                        reason: format!(
                            "its fan-in {fan_in} is not a multiple of {m}, so it cannot be {n}:{m}; keep it dense or unmasked (e.g. first-layer-sparsity = 0)"
                        ),
                    });
                }
                (m, n)
            }
            _ => {
                let k = ((1.0 - sparsity) * fan_in as f64).round() as usize;
                (fan_in, k.clamp(1, fan_in))
            }
        };
        Ok(Some(Self {
            rows,
            fan_in,
            len,
            k,
            transposed,
        }))
    }

    /// Number of groups.
    pub fn count(&self) -> usize {
        self.rows * self.fan_in / self.len.max(1)
    }

    /// Active connections of the layer: `k` per group.
    pub fn n_active(&self) -> usize {
        self.count() * self.k
    }

    /// The output-major view of a flat tensor in the stored layout.
    pub fn to_view<K: Basic>(&self, t: Tensor<1, K>) -> Tensor<1, K> {
        if self.transposed {
            t.reshape([self.fan_in, self.rows])
                .swap_dims(0, 1)
                .reshape([-1])
        } else {
            t
        }
    }

    /// The stored layout of a flat tensor in the output-major view (inverse of
    /// [`to_view`](Self::to_view)).
    pub fn from_view<K: Basic>(&self, t: Tensor<1, K>) -> Tensor<1, K> {
        if self.transposed {
            t.reshape([self.rows, self.fan_in])
                .swap_dims(0, 1)
                .reshape([-1])
        } else {
            t
        }
    }

    /// One selection segment per group of a view starting at `offset`, each selecting
    /// `k(group)`.
    pub fn segments(&self, offset: usize, k: impl Fn(usize) -> usize) -> Vec<Segment> {
        (0..self.count())
            .map(|g| Segment {
                offset: offset + g * self.len,
                len: self.len,
                k: k(g),
            })
            .collect()
    }

    /// The active positions of each group of a view `mask`, on its device (read several
    /// layers' at once with one transfer by concatenating them).
    pub fn group_counts(&self, mask: Tensor<1, Bool>) -> Tensor<1, Int> {
        mask.int()
            .reshape([self.count(), self.len])
            .sum_dim(1)
            .reshape([-1])
    }

    /// The first group of a view `mask` (host values) that does not hold exactly `k` active
    /// positions, with its count; `None` when the structure holds.
    pub fn first_violation(&self, mask: &[bool]) -> Option<(usize, usize)> {
        mask.chunks(self.len.max(1))
            .map(|g| g.iter().filter(|&&b| b).count())
            .enumerate()
            .find(|&(_, c)| c != self.k)
    }

    /// The random stream of group `g` of a layer whose stream is `layer`: distinct per group,
    /// so that groups draw independent samples (MurmurHash3's finaliser of a mix of both).
    pub fn stream(layer: u32, g: usize) -> u32 {
        let mut h = layer ^ (g as u32).wrapping_mul(0x9E37_79B9) ^ ((g >> 32) as u32);
        h ^= h >> 16;
        h = h.wrapping_mul(0x85EB_CA6B);
        h ^= h >> 13;
        h = h.wrapping_mul(0xC2B2_AE35);
        h ^ (h >> 16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mask::bools_to_host;
    use burn::tensor::{Device, TensorData};

    #[test]
    fn parses_and_prints() {
        assert_eq!("2:4".parse(), Ok(Structure::NM { n: 2, m: 4 }));
        assert_eq!(" 1 : 4".parse(), Ok(Structure::NM { n: 1, m: 4 }));
        assert_eq!("fan-in".parse(), Ok(Structure::ConstantFanIn));
        assert_eq!("unstructured".parse(), Ok(Structure::Unstructured));
        for s in [
            Structure::Unstructured,
            Structure::NM { n: 2, m: 4 },
            Structure::ConstantFanIn,
        ] {
            assert_eq!(s.to_string().parse(), Ok(s));
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(serde_json::from_str::<Structure>(&json).unwrap(), s);
        }
        let err = "4:4".parse::<Structure>().unwrap_err();
        assert!(err.contains("0 < n < m"), "{err}");
        assert!("0:4".parse::<Structure>().is_err());
        let err = "blocks".parse::<Structure>().unwrap_err();
        assert!(err.contains("unknown structure `blocks`"), "{err}");
        assert_eq!(Structure::NM { n: 1, m: 4 }.implied_sparsity(), Some(0.75));
    }

    #[test]
    fn groups_of_linear_and_conv_kernels() {
        let nm = Structure::NM { n: 2, m: 4 };
        let linear = LayerShape::burn(&[8, 3], "Linear");
        let g = Groups::of_layer(nm, "fc", &linear, 0.5).unwrap().unwrap();
        assert_eq!(
            (g.rows, g.fan_in, g.len, g.k, g.transposed),
            (3, 8, 4, 2, true)
        );
        assert_eq!((g.count(), g.n_active()), (6, 12));
        let conv = LayerShape::burn(&[5, 2, 3, 3], "Conv2d");
        let err = Groups::of_layer(nm, "conv", &conv, 0.5).unwrap_err();
        assert!(
            err.to_string().contains("fan-in 18 is not a multiple of 4"),
            "{err}"
        );
        let g = Groups::of_layer(Structure::ConstantFanIn, "conv", &conv, 0.9)
            .unwrap()
            .unwrap();
        // round(0.1 * 18) = 2 of 18 per output channel, the kernel already output-major.
        assert_eq!((g.rows, g.len, g.k, g.transposed), (5, 18, 2, false));
        // At least one per output, however sparse.
        let g = Groups::of_layer(Structure::ConstantFanIn, "conv", &conv, 0.999)
            .unwrap()
            .unwrap();
        assert_eq!(g.k, 1);
        // Dense layers and unstructured configurations carry no groups.
        assert_eq!(Groups::of_layer(nm, "fc", &linear, 0.0).unwrap(), None);
        assert_eq!(
            Groups::of_layer(Structure::Unstructured, "fc", &linear, 0.5).unwrap(),
            None
        );
    }

    #[test]
    fn view_round_trips_and_is_output_major() {
        let g = Groups::of_layer(
            Structure::NM { n: 1, m: 2 },
            "fc",
            &LayerShape::burn(&[4, 3], "Linear"),
            0.5,
        )
        .unwrap()
        .unwrap();
        let device = Device::default();
        // Stored [d_in = 4, d_out = 3]: value 10 * input + output.
        let stored: Vec<f32> = (0..4)
            .flat_map(|i| (0..3).map(move |o| (10 * i + o) as f32))
            .collect();
        let t = Tensor::<1>::from_data(TensorData::new(stored.clone(), [12]), &device);
        let view = crate::mask::floats_to_host(g.to_view(t.clone()));
        // Row o of the view holds output o's inputs 0..4 in order.
        assert_eq!(&view[..4], &[0.0, 10.0, 20.0, 30.0]);
        assert_eq!(&view[4..8], &[1.0, 11.0, 21.0, 31.0]);
        assert_eq!(
            crate::mask::floats_to_host(g.from_view(g.to_view(t))),
            stored
        );
        let mask = Tensor::<1, Bool>::from_data(
            TensorData::new(
                vec![
                    true, false, false, true, true, false, true, true, false, false, true, false,
                ],
                [12],
            ),
            &device,
        );
        assert_eq!(
            crate::mask::counts_to_host(g.group_counts(mask.clone())),
            [1, 1, 1, 2, 0, 1]
        );
        assert_eq!(g.first_violation(&bools_to_host(mask)), Some((3, 2)));
    }

    #[test]
    fn group_streams_differ() {
        let s: std::collections::HashSet<u32> =
            (0..10_000).map(|g| Groups::stream(12345, g)).collect();
        assert_eq!(s.len(), 10_000);
    }
}
