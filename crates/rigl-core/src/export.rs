//! [`SparseInference`]: a model's weights for inference, stored compressed.

use crate::error::{Result, SparsityError};
use crate::mask::SparseMask;
use crate::sparsify::load_sparse_bytes;
use burn::module::Module;
use burn::tensor::Bytes;
use burn_pack::{DType, Reader, Tensor as PackTensor, Writer};
use std::collections::HashMap;
use std::path::Path;

/// Metadata key prefix naming a compressed weight: `rigl.sparse.<weight path>` = its dims.
const SPARSE_KEY: &str = "rigl.sparse.";

/// A model's parameters for inference in a burnpack file, every masked `f32` weight stored as
/// its active values and a one-bit-per-weight mask: `32 nnz + numel` bits where the training
/// checkpoint stores `32 numel + 8 numel` (the mask takes a byte per weight there). Every other
/// tensor (biases, batch-norm parameters and statistics, unmasked weights) is stored as it is.
/// This is the size `rigl count` reports, plus the file's header and the unmasked tensors.
///
/// The file layout: for a masked weight `W`, the tensors `W.values` (`f32`, `[nnz]`, the active
/// values in row-major order) and `W.sparse_mask.bits` (`u8`, `[ceil(numel / 8)]`, position `p`
/// at bit `p mod 8` of byte `p / 8`), and the metadata `rigl.sparse.W` = `W`'s dims
/// (`784,300`); everything else as [`Sparsify::save_sparse`](crate::Sparsify::save_sparse)
/// writes it. Loading rebuilds that record and loads it as
/// [`Sparsify::load_sparse`](crate::Sparsify::load_sparse) does (masks attached, inactive
/// weights zero).
///
/// ```
/// use burn::nn::{Linear, LinearConfig};
/// use burn::tensor::Device;
/// use rigl_core::{SparseInference, Sparsify, SparsityConfig};
///
/// let device = Device::default();
/// let layer = LinearConfig::new(256, 128).init(&device).sparsify(SparsityConfig::uniform(0.9))?;
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("layer.bpk");
/// let file = SparseInference::save(&layer, &path)?;
/// assert!(file.bytes < 256 * 128 * 4 / 5); // under a fifth of the dense weight
/// let back = SparseInference::load(&LinearConfig::new(256, 128).init(&device), &path)?;
/// assert_eq!(back.sparsity_report().nnz, layer.sparsity_report().nnz);
/// # Ok::<(), rigl_core::SparsityError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SparseInference {
    /// Bytes of the file written.
    pub bytes: u64,
    /// Weights stored compressed.
    pub compressed: usize,
    /// Active values stored for them.
    pub nnz: usize,
    /// Their positions (one mask bit each).
    pub positions: usize,
}

fn record_error(path: &Path, reason: impl ToString) -> SparsityError {
    SparsityError::Record {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

fn dims_text(dims: &[usize]) -> String {
    dims.iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

impl SparseInference {
    /// Write `module`'s parameters to `path` (atomically: a temporary file, then a rename).
    ///
    /// # Errors
    /// [`SparsityError::Record`] if the record cannot be encoded, [`SparsityError::Io`] if the
    /// file cannot be written.
    pub fn save<M: Module>(module: &M, path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let record = module
            .clone()
            .into_record()
            .into_bytes()
            .map_err(|e| record_error(path, e))?;
        let reader = Reader::from_bytes(record).map_err(|e| record_error(path, e))?;
        let metadata = reader.metadata().clone();
        let tensors = reader.into_tensors().map_err(|e| record_error(path, e))?;
        let suffix = format!(".{}.mask", SparseMask::NAME);
        let masks: HashMap<String, usize> = tensors
            .iter()
            .enumerate()
            .filter_map(|(i, t)| Some((t.name.strip_suffix(&suffix)?.to_string(), i)))
            .collect();
        let mut out = Vec::with_capacity(tensors.len());
        let mut extra = Vec::new();
        let mut report = Self {
            bytes: 0,
            compressed: 0,
            nnz: 0,
            positions: 0,
        };
        let mut taken = vec![false; tensors.len()];
        for (i, t) in tensors.iter().enumerate() {
            let Some(&m) = masks.get(&t.name) else {
                continue;
            };
            if t.dtype != DType::F32 {
                continue;
            }
            let values = t.to_bytes().map_err(|e| record_error(path, e))?;
            let mask = tensors[m].to_bytes().map_err(|e| record_error(path, e))?;
            let n = mask.len();
            if values.len() != 4 * n {
                return Err(record_error(
                    path,
                    format!(
                        "`{}`: {} mask positions for {} values",
                        t.name,
                        n,
                        values.len() / 4
                    ),
                ));
            }
            let mut kept = Vec::new();
            let mut bits = vec![0u8; n.div_ceil(8)];
            for (p, &flag) in mask.iter().enumerate() {
                if flag != 0 {
                    bits[p / 8] |= 1 << (p % 8);
                    kept.extend_from_slice(&values[4 * p..4 * p + 4]);
                }
            }
            report.compressed += 1;
            report.nnz += kept.len() / 4;
            report.positions += n;
            extra.push((t.name.clone(), dims_text(t.shape.as_slice())));
            out.push(PackTensor::new(
                format!("{}.values", t.name),
                DType::F32,
                [kept.len() / 4],
                t.param_id,
                Bytes::from_bytes_vec(kept),
            ));
            out.push(PackTensor::new(
                format!("{}.{}.bits", t.name, SparseMask::NAME),
                DType::U8,
                [bits.len()],
                tensors[m].param_id,
                Bytes::from_bytes_vec(bits),
            ));
            taken[i] = true;
            taken[m] = true;
        }
        out.extend(
            tensors
                .into_iter()
                .zip(taken)
                .filter(|(_, t)| !t)
                .map(|(t, _)| t),
        );
        let mut writer = Writer::new(out);
        for (k, v) in &metadata {
            writer = writer.with_metadata(k, v);
        }
        for (name, dims) in &extra {
            writer = writer.with_metadata(&format!("{SPARSE_KEY}{name}"), dims);
        }
        let bytes = writer.into_bytes().map_err(|e| record_error(path, e))?;
        crate::io::write_atomic(path, &bytes)?;
        report.bytes = bytes.len() as u64;
        Ok(report)
    }

    /// `module` with the parameters of the file at `path` (masks attached where the file has
    /// them).
    ///
    /// # Errors
    /// [`SparsityError::Io`] if the file cannot be read; [`SparsityError::Record`] if it is not
    /// such a file (corrupt, truncated, values that do not match the mask) or not a record of
    /// this module; the errors of [`Sparsify::load_sparse`](crate::Sparsify::load_sparse).
    pub fn load<M: Module>(module: &M, path: impl AsRef<Path>) -> Result<M> {
        let path = path.as_ref();
        let file = std::fs::read(path).map_err(|source| SparsityError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let reader =
            Reader::from_bytes(Bytes::from_bytes_vec(file)).map_err(|e| record_error(path, e))?;
        let metadata = reader.metadata().clone();
        let mut tensors: HashMap<String, PackTensor> = reader
            .into_tensors()
            .map_err(|e| record_error(path, e))?
            .into_iter()
            .map(|t| (t.name.clone(), t))
            .collect();
        let mut rebuilt = Vec::new();
        for (key, dims) in metadata.iter().filter(|(k, _)| k.starts_with(SPARSE_KEY)) {
            let name = &key[SPARSE_KEY.len()..];
            let bad = |what: String| record_error(path, format!("`{name}`: {what}"));
            let dims: Vec<usize> = dims
                .split(',')
                .map(|d| d.parse().map_err(|_| bad(format!("bad dims `{dims}`"))))
                .collect::<Result<_>>()?;
            let n: usize = dims.iter().product();
            let mut take = |suffix: String| {
                tensors
                    .remove(&format!("{name}{suffix}"))
                    .ok_or_else(|| bad(format!("no `{name}{suffix}` tensor")))
            };
            let values = take(".values".into())?;
            let bits = take(format!(".{}.bits", SparseMask::NAME))?;
            let (value_bytes, bit_bytes) = (
                values.to_bytes().map_err(|e| bad(e.to_string()))?,
                bits.to_bytes().map_err(|e| bad(e.to_string()))?,
            );
            if bit_bytes.len() != n.div_ceil(8) || value_bytes.len() % 4 != 0 {
                return Err(bad(format!(
                    "{} mask bytes and {} value bytes for {n} positions",
                    bit_bytes.len(),
                    value_bytes.len()
                )));
            }
            let active = (0..n).filter(|&p| bit_bytes[p / 8] >> (p % 8) & 1 == 1);
            if active.clone().count() != value_bytes.len() / 4 {
                return Err(bad(format!(
                    "{} values for {} active positions",
                    value_bytes.len() / 4,
                    active.count()
                )));
            }
            let mut dense = vec![0u8; 4 * n];
            let mut flags = vec![0u8; n];
            for (q, p) in active.enumerate() {
                dense[4 * p..4 * p + 4].copy_from_slice(&value_bytes[4 * q..4 * q + 4]);
                flags[p] = 1;
            }
            rebuilt.push(PackTensor::new(
                name.to_string(),
                DType::F32,
                dims.clone(),
                values.param_id,
                Bytes::from_bytes_vec(dense),
            ));
            rebuilt.push(PackTensor::new(
                format!("{name}.{}.mask", SparseMask::NAME),
                DType::Bool(burn::tensor::BoolStore::Native),
                [n],
                bits.param_id,
                Bytes::from_bytes_vec(flags),
            ));
        }
        rebuilt.extend(tensors.into_values());
        let mut writer = Writer::new(rebuilt);
        for (k, v) in metadata.iter().filter(|(k, _)| !k.starts_with(SPARSE_KEY)) {
            writer = writer.with_metadata(k, v);
        }
        let record = writer.into_bytes().map_err(|e| record_error(path, e))?;
        load_sparse_bytes(module, record.to_vec(), &path.display().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Sparsify, SparsityConfig, bools_to_host, floats_to_host};
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::Device;

    #[derive(Module, Debug)]
    struct Net {
        fc1: Linear,
        fc2: Linear,
    }

    fn net(device: &Device) -> Net {
        Net {
            fc1: LinearConfig::new(300, 200).init(device),
            fc2: LinearConfig::new(200, 10).init(device),
        }
    }

    #[test]
    fn round_trips_weights_and_masks_at_the_counted_size() {
        let device = Device::flex();
        let model = net(&device)
            .sparsify(SparsityConfig::uniform(0.95).last_layer_dense())
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (export, full) = (dir.path().join("m.bpk"), dir.path().join("full.bpk"));
        let r = SparseInference::save(&model, &export).unwrap();
        model.save_sparse(&full).unwrap();
        assert_eq!((r.compressed, r.positions), (1, 60_000));
        assert_eq!(r.nnz, 3_000);
        assert_eq!(r.bytes, std::fs::metadata(&export).unwrap().len());
        // 32 bits per active value and one per position, the dense fc2 and the biases, and
        // the file's header: the training record is ~4x larger.
        let counted = 3_000 * 4 + 60_000 / 8 + (2_000 + 200 + 10) * 4;
        assert!(
            r.bytes as usize <= counted + 16_384,
            "{} vs {counted}",
            r.bytes
        );
        assert!(std::fs::metadata(&full).unwrap().len() > 3 * r.bytes);
        let back = SparseInference::load(&net(&device), &export).unwrap();
        for (a, b) in [(&model.fc1, &back.fc1), (&model.fc2, &back.fc2)] {
            assert_eq!(
                floats_to_host(a.weight.val().reshape([-1])),
                floats_to_host(b.weight.val().reshape([-1]))
            );
            assert_eq!(
                floats_to_host(a.bias.as_ref().unwrap().val()),
                floats_to_host(b.bias.as_ref().unwrap().val())
            );
        }
        assert_eq!(
            bools_to_host(back.mask("fc1.weight").unwrap()),
            bools_to_host(model.mask("fc1.weight").unwrap())
        );
        assert!(back.mask("fc2.weight").is_err());
    }

    #[test]
    fn corrupt_and_foreign_files_are_typed_errors() {
        let device = Device::flex();
        let model = net(&device).sparsify(SparsityConfig::uniform(0.9)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.bpk");
        SparseInference::save(&model, &path).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.truncate(bytes.len() / 2);
        let cut = dir.path().join("cut.bpk");
        std::fs::write(&cut, &bytes).unwrap();
        let e = SparseInference::load(&net(&device), &cut).unwrap_err();
        assert!(matches!(e, SparsityError::Record { .. }), "{e}");
        let e = SparseInference::load(&net(&device), dir.path().join("none.bpk")).unwrap_err();
        assert!(matches!(e, SparsityError::Io { .. }), "{e}");
        // A file of another model.
        let other = LinearConfig::new(7, 3).init(&device);
        let e = SparseInference::load(&other, &path).unwrap_err();
        assert!(
            matches!(
                e,
                SparsityError::Record { .. } | SparsityError::UnknownLayer { .. }
            ),
            "{e}"
        );
    }
}
