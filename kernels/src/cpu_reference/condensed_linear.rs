//! The condensed format of a constant fan-in layer (SRigL's condensed linear) and its
//! reference product.
//!
//! Every output of a constant fan-in (or N:M) layer has the same number `k` of active inputs,
//! so its weight fits a dense `[d_out, k]` block of values with a `[d_out, k]` block of input
//! indices (the ELL layout): no row pointers, no scan of the dense weight, and the values of an
//! output contiguous. The product reads `d_out * k` values and indices and gathers from the
//! input row, where a dense product reads all `d_in * d_out` weights.

use super::sparse_pattern::SparseError;

/// A constant fan-in weight in the condensed layout.
#[derive(Clone, Debug, PartialEq)]
pub struct Condensed {
    d_in: usize,
    d_out: usize,
    k: usize,
    /// `values[j * k + t]`: the `t`-th active weight of output `j`, inputs increasing.
    values: Vec<f32>,
    /// `indices[j * k + t]`: its input.
    indices: Vec<u32>,
}

impl Condensed {
    /// The condensed form of a `[d_in, d_out]` weight (Burn's `Linear` layout, row-major) and
    /// its mask.
    ///
    /// # Errors
    /// [`SparseError::MaskLength`] / [`SparseError::Shape`] when the buffers do not have
    /// `d_in * d_out` entries, [`SparseError::TooLarge`] when `d_in` exceeds a `u32`, and
    /// [`SparseError::NotConstantFanIn`] when the outputs' active counts differ.
    pub fn from_linear(
        weight: &[f32],
        mask: &[bool],
        d_in: usize,
        d_out: usize,
    ) -> Result<Self, SparseError> {
        let n = d_in * d_out;
        if mask.len() != n {
            return Err(SparseError::MaskLength {
                expected: n,
                actual: mask.len(),
            });
        }
        if weight.len() != n {
            return Err(SparseError::Shape {
                operand: "weight",
                expected: n,
                actual: weight.len(),
            });
        }
        if u32::try_from(d_in).is_err() {
            return Err(SparseError::TooLarge {
                rows: d_in,
                cols: d_out,
            });
        }
        let active = |j: usize| (0..d_in).filter(|&i| mask[i * d_out + j]).count();
        let k = if d_out == 0 { 0 } else { active(0) };
        let mut values = Vec::with_capacity(d_out * k);
        let mut indices = Vec::with_capacity(d_out * k);
        for j in 0..d_out {
            let before = indices.len();
            for i in 0..d_in {
                if mask[i * d_out + j] {
                    values.push(weight[i * d_out + j]);
                    indices.push(i as u32);
                }
            }
            let count = indices.len() - before;
            if count != k {
                return Err(SparseError::NotConstantFanIn {
                    output: j,
                    active: count,
                    expected: k,
                });
            }
        }
        Ok(Self {
            d_in,
            d_out,
            k,
            values,
            indices,
        })
    }

    /// Inputs of the layer.
    pub fn d_in(&self) -> usize {
        self.d_in
    }

    /// Outputs of the layer.
    pub fn d_out(&self) -> usize {
        self.d_out
    }

    /// Active inputs of every output.
    pub fn k(&self) -> usize {
        self.k
    }

    /// The values, `[d_out, k]` row-major.
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// The input of each value, `[d_out, k]` row-major.
    pub fn indices(&self) -> &[u32] {
        &self.indices
    }
}

/// `y = x W` for a condensed `W`: `y[b, j] = sum_t values[j, t] * x[b, indices[j, t]]`, the sum
/// from 0.0 in increasing `t` (inputs increasing).
///
/// # Shapes
/// - `x`: `[batch, d_in]` row-major
/// - output: `[batch, d_out]` row-major
///
/// # Errors
/// [`SparseError::Shape`] when `x` does not have `batch * d_in` elements.
pub fn condensed_linear(x: &[f32], batch: usize, w: &Condensed) -> Result<Vec<f32>, SparseError> {
    check_input(x, batch, w)?;
    let mut y = vec![0.0f32; batch * w.d_out];
    for b in 0..batch {
        let row = &x[b * w.d_in..(b + 1) * w.d_in];
        for j in 0..w.d_out {
            let mut acc = 0.0f32;
            for t in 0..w.k {
                acc += w.values[j * w.k + t] * row[w.indices[j * w.k + t] as usize];
            }
            y[b * w.d_out + j] = acc;
        }
    }
    Ok(y)
}

/// `x` must hold `batch` rows of `d_in`.
pub(crate) fn check_input(x: &[f32], batch: usize, w: &Condensed) -> Result<(), SparseError> {
    if x.len() != batch * w.d_in {
        return Err(SparseError::Shape {
            operand: "x",
            expected: batch * w.d_in,
            actual: x.len(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_hand() {
        // W is [3 inputs, 2 outputs]; each output keeps 2 inputs.
        let weight = [1.0, 10.0, 2.0, 20.0, 3.0, 30.0];
        let mask = [true, false, false, true, true, true];
        let w = Condensed::from_linear(&weight, &mask, 3, 2).unwrap();
        assert_eq!(
            (w.k(), w.values(), w.indices()),
            (2, &[1.0, 3.0, 20.0, 30.0][..], &[0, 2, 1, 2][..])
        );
        let y = condensed_linear(&[1.0, 2.0, 3.0, -1.0, 0.5, 0.0], 2, &w).unwrap();
        assert_eq!(y, [1.0 + 9.0, 40.0 + 90.0, -1.0, 10.0]);
    }

    #[test]
    fn uneven_fan_in_and_bad_shapes_are_errors() {
        let err = Condensed::from_linear(&[0.0; 6], &[true, true, false, false, false, true], 3, 2)
            .unwrap_err();
        assert_eq!(
            err,
            SparseError::NotConstantFanIn {
                output: 1,
                active: 2,
                expected: 1
            }
        );
        assert!(err.to_string().contains("constant fan-in"), "{err}");
        assert!(matches!(
            Condensed::from_linear(&[0.0; 6], &[true; 5], 3, 2),
            Err(SparseError::MaskLength { .. })
        ));
        let w = Condensed::from_linear(&[0.0; 6], &[true; 6], 3, 2).unwrap();
        assert!(matches!(
            condensed_linear(&[0.0; 5], 2, &w),
            Err(SparseError::Shape { operand: "x", .. })
        ));
    }
}
