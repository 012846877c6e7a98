//! The storage of a sparse weight: which positions of a `[rows, cols]` matrix are active, row
//! by row (compressed sparse rows of the mask).
//!
//! A layer's weight `W` is `[d_input, d_output]` (Burn's row layout), so rows are inputs and
//! columns are outputs. All three products of a sparse linear layer walk the rows: the forward
//! adds row `i`'s contributions to its active outputs, the input gradient and the weight
//! gradient reduce over row `i`'s active outputs. A row's active positions are contiguous
//! stretches of the dense row-major weight, so values are read from the stored weight itself,
//! in memory order: the pattern depends on the mask only and is rebuilt at mask updates, never
//! between them.

use std::fmt;

/// Why a sparse operation refused its inputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SparseError {
    /// The mask does not have one entry per weight position.
    MaskLength {
        /// `rows * cols`.
        expected: usize,
        /// Entries in the mask.
        actual: usize,
    },
    /// The matrix has more positions than a `u32` index addresses.
    TooLarge {
        /// Rows of the matrix.
        rows: usize,
        /// Columns of the matrix.
        cols: usize,
    },
    /// An operand does not have the shape the pattern and the batch call for.
    Shape {
        /// Which operand.
        operand: &'static str,
        /// Its expected number of elements.
        expected: usize,
        /// Its number of elements.
        actual: usize,
    },
    /// The device's backend or the tensor's element type has no sparse kernels.
    Unsupported {
        /// What is missing, e.g. `backend Cube` or `dtype F16`.
        what: String,
    },
    /// A mask that is not constant fan-in: an output has another number of active inputs than
    /// the first one (the condensed format needs the same count for every output).
    NotConstantFanIn {
        /// The output.
        output: usize,
        /// Its active inputs.
        active: usize,
        /// The first output's.
        expected: usize,
    },
}

impl fmt::Display for SparseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MaskLength { expected, actual } => write!(
                f,
                "the mask has {actual} entries but the weight has {expected} positions"
            ),
            Self::TooLarge { rows, cols } => write!(
                f,
                "a {rows}x{cols} sparse weight has more positions than a u32 index addresses"
            ),
            Self::Shape {
                operand,
                expected,
                actual,
            } => write!(
                f,
                "`{operand}` has {actual} elements where the sparse pattern needs {expected}"
            ),
            Self::Unsupported { what } => write!(f, "no sparse kernels for {what}"),
            Self::NotConstantFanIn {
                output,
                active,
                expected,
            } => write!(
                f,
                "output {output} has {active} active inputs, output 0 has {expected}: the condensed format needs a constant fan-in"
            ),
        }
    }
}

impl std::error::Error for SparseError {}

/// The active positions of a `[rows, cols]` row-major matrix, row by row, columns increasing.
#[derive(Clone, Debug)]
pub struct SparsePattern {
    rows: usize,
    cols: usize,
    /// `row_ptr[i]..row_ptr[i + 1]` are the entries of row `i`.
    row_ptr: Vec<usize>,
    /// The column of each row entry.
    row_col: Vec<u32>,
    /// The column view, built on first use (by the GPU kernels).
    columns: std::sync::OnceLock<ColumnView>,
}

impl PartialEq for SparsePattern {
    fn eq(&self, other: &Self) -> bool {
        (self.rows, self.cols, &self.row_ptr, &self.row_col)
            == (other.rows, other.cols, &other.row_ptr, &other.row_col)
    }
}

impl Eq for SparsePattern {}

/// The pattern by column, and the row of every entry of the row-ordered list: what kernels
/// with one thread per output (or per entry) index by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnView {
    /// `col_ptr[j]..col_ptr[j + 1]` are the entries of column `j`.
    pub col_ptr: Vec<u32>,
    /// The row of each column entry, increasing within a column.
    pub col_row: Vec<u32>,
    /// The flat position (`row * cols + col`) of each column entry.
    pub col_pos: Vec<u32>,
    /// The row of each entry of the row-ordered list.
    pub entry_row: Vec<u32>,
}

impl SparsePattern {
    /// The pattern of a flat row-major mask (`true` = active).
    ///
    /// # Errors
    /// [`SparseError::MaskLength`] when `mask.len() != rows * cols`, [`SparseError::TooLarge`]
    /// when `rows * cols` exceeds `u32::MAX`.
    pub fn from_mask(rows: usize, cols: usize, mask: &[bool]) -> Result<Self, SparseError> {
        let n = rows
            .checked_mul(cols)
            .filter(|&n| n <= u32::MAX as usize)
            .ok_or(SparseError::TooLarge { rows, cols })?;
        if mask.len() != n {
            return Err(SparseError::MaskLength {
                expected: n,
                actual: mask.len(),
            });
        }
        let mut row_ptr = Vec::with_capacity(rows + 1);
        let mut row_col = Vec::new();
        row_ptr.push(0);
        for i in 0..rows {
            for (j, &active) in mask[i * cols..(i + 1) * cols].iter().enumerate() {
                if active {
                    row_col.push(j as u32);
                }
            }
            row_ptr.push(row_col.len());
        }
        Ok(Self {
            rows,
            cols,
            row_ptr,
            row_col,
            columns: std::sync::OnceLock::new(),
        })
    }

    /// The column view (built once, on first call).
    pub fn columns(&self) -> &ColumnView {
        self.columns.get_or_init(|| {
            let (rows, cols) = (self.rows, self.cols);
            let mut count = vec![0u32; cols];
            let mut entry_row = Vec::with_capacity(self.nnz());
            for i in 0..rows {
                for &j in self.row(i) {
                    count[j as usize] += 1;
                    entry_row.push(i as u32);
                }
            }
            let mut col_ptr = Vec::with_capacity(cols + 1);
            col_ptr.push(0u32);
            for &c in &count {
                col_ptr.push(col_ptr.last().copied().unwrap_or(0) + c);
            }
            let mut next: Vec<u32> = col_ptr[..cols].to_vec();
            let (mut col_row, mut col_pos) = (vec![0u32; self.nnz()], vec![0u32; self.nnz()]);
            // Rows in increasing order: each column fills in increasing row order.
            for i in 0..rows {
                for &j in self.row(i) {
                    let k = next[j as usize] as usize;
                    col_row[k] = i as u32;
                    col_pos[k] = (i * cols + j as usize) as u32;
                    next[j as usize] += 1;
                }
            }
            ColumnView {
                col_ptr,
                col_row,
                col_pos,
                entry_row,
            }
        })
    }

    /// Rows of the matrix (a layer's inputs).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns of the matrix (a layer's outputs).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Active positions.
    pub fn nnz(&self) -> usize {
        self.row_col.len()
    }

    /// Active positions over all positions (0 for an empty matrix).
    pub fn density(&self) -> f64 {
        let n = self.rows * self.cols;
        if n == 0 {
            0.0
        } else {
            self.nnz() as f64 / n as f64
        }
    }

    /// Row `i`: the columns of its active entries, increasing (flat positions
    /// `i * cols + column`); they are the entries [`row_range`](Self::row_range) of the list of
    /// all active positions.
    ///
    /// # Panics
    /// When `i >= rows`.
    pub fn row(&self, i: usize) -> &[u32] {
        &self.row_col[self.row_ptr[i]..self.row_ptr[i + 1]]
    }

    /// The columns of all active positions, row by row (the row-ordered list).
    pub fn row_entries(&self) -> &[u32] {
        &self.row_col
    }

    /// The entries of row `i` in the row-ordered list of all active positions.
    ///
    /// # Panics
    /// When `i >= rows`.
    pub fn row_range(&self, i: usize) -> std::ops::Range<usize> {
        self.row_ptr[i]..self.row_ptr[i + 1]
    }

    /// The row offsets: `row_ptr()[i]..row_ptr()[i + 1]` index row `i`'s entries.
    pub fn row_ptr(&self) -> &[usize] {
        &self.row_ptr
    }

    /// The mask the pattern was built from, row-major.
    pub fn to_mask(&self) -> Vec<bool> {
        let mut mask = vec![false; self.rows * self.cols];
        for i in 0..self.rows {
            for &j in self.row(i) {
                mask[i * self.cols + j as usize] = true;
            }
        }
        mask
    }

    /// Heap bytes the pattern holds (its index arrays).
    pub fn heap_bytes(&self) -> usize {
        self.row_ptr.len() * std::mem::size_of::<usize>() + self.row_col.len() * 4
    }

    /// Check that an operand has `expected` elements.
    pub(crate) fn check(
        operand: &'static str,
        expected: usize,
        actual: usize,
    ) -> Result<(), SparseError> {
        if expected == actual {
            Ok(())
        } else {
            Err(SparseError::Shape {
                operand,
                expected,
                actual,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_list_the_mask() {
        // 3 x 4:
        // 1 0 1 0
        // 0 0 0 0
        // 1 1 0 1
        let mask = [
            true, false, true, false, false, false, false, false, true, true, false, true,
        ];
        let p = SparsePattern::from_mask(3, 4, &mask).unwrap();
        assert_eq!(p.nnz(), 5);
        assert_eq!(p.row(0), [0, 2]);
        assert!(p.row(1).is_empty());
        assert_eq!(p.row(2), [0, 1, 3]);
        assert_eq!(p.row_ptr(), [0, 2, 2, 5]);
        assert_eq!(p.row_range(2), 2..5);
        let c = p.columns();
        assert_eq!(c.col_ptr, [0, 2, 3, 4, 5]);
        assert_eq!(c.col_row, [0, 2, 2, 0, 2]);
        assert_eq!(c.col_pos, [0, 8, 9, 2, 11]);
        assert_eq!(c.entry_row, [0, 0, 2, 2, 2]);
        assert_eq!(p.to_mask(), mask);
        assert_eq!(p.density(), 5.0 / 12.0);
    }

    #[test]
    fn bad_masks_are_typed_errors() {
        assert_eq!(
            SparsePattern::from_mask(2, 3, &[true; 5]),
            Err(SparseError::MaskLength {
                expected: 6,
                actual: 5
            })
        );
        assert_eq!(
            SparsePattern::from_mask(1 << 20, 1 << 20, &[]),
            Err(SparseError::TooLarge {
                rows: 1 << 20,
                cols: 1 << 20
            })
        );
        let empty = SparsePattern::from_mask(0, 5, &[]).unwrap();
        assert_eq!((empty.nnz(), empty.density()), (0, 0.0));
    }
}
