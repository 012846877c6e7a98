//! The IDX format of MNIST and Fashion-MNIST, raw or gzipped.
//!
//! Header: two zero bytes, a type byte (0x08 = unsigned byte), the number of dimensions, then
//! each dimension as a big-endian `u32`; the data follows in row-major order.

use crate::error::{DataError, Result, io};
use flate2::read::GzDecoder;
use std::io::Read;
use std::path::Path;

/// An IDX array of unsigned bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxArray {
    /// The dimensions, e.g. `[60000, 28, 28]`.
    pub dims: Vec<usize>,
    /// The data, row-major.
    pub data: Vec<u8>,
}

/// Read a file, decompressing it if it is gzipped (told by its magic bytes, not its name).
///
/// # Errors
/// [`DataError::Io`] if it cannot be read, [`DataError::Format`] if the gzip stream is corrupt.
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(io(path))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| DataError::Format {
                path: path.to_path_buf(),
                format: "gzip",
                reason: e.to_string(),
            })?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Parse IDX bytes; `path` names the source in errors.
///
/// # Errors
/// [`DataError::Format`] for a bad header or element type, [`DataError::Truncated`] when the
/// data is shorter than the header says (longer is also a format error).
pub fn parse_idx(bytes: &[u8], path: &Path) -> Result<IdxArray> {
    let bad = |reason: String| DataError::Format {
        path: path.to_path_buf(),
        format: "IDX",
        reason,
    };
    if bytes.len() < 4 {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            expected: 4,
            found: bytes.len(),
        });
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(bad(format!(
            "magic starts with {:#04x} {:#04x}, expected 0x00 0x00",
            bytes[0], bytes[1]
        )));
    }
    if bytes[2] != 0x08 {
        return Err(bad(format!(
            "element type {:#04x} is not unsigned byte (0x08)",
            bytes[2]
        )));
    }
    let ndim = bytes[3] as usize;
    if ndim == 0 {
        return Err(bad("zero dimensions".into()));
    }
    let header = 4 + 4 * ndim;
    if bytes.len() < header {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            expected: header,
            found: bytes.len(),
        });
    }
    let dims: Vec<usize> = (0..ndim)
        .map(|d| {
            let o = 4 + 4 * d;
            u32::from_be_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]) as usize
        })
        .collect();
    let n = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| bad(format!("dimensions {dims:?} overflow")))?;
    let expected = header + n;
    match bytes.len().cmp(&expected) {
        std::cmp::Ordering::Less => Err(DataError::Truncated {
            path: path.to_path_buf(),
            expected,
            found: bytes.len(),
        }),
        std::cmp::Ordering::Greater => Err(bad(format!(
            "{} bytes after the data the header describes",
            bytes.len() - expected
        ))),
        std::cmp::Ordering::Equal => Ok(IdxArray {
            dims,
            data: bytes[header..].to_vec(),
        }),
    }
}

/// Read an IDX file, raw or gzipped.
///
/// # Errors
/// As [`read_maybe_gz`] and [`parse_idx`].
pub fn read_idx(path: &Path) -> Result<IdxArray> {
    parse_idx(&read_maybe_gz(path)?, path)
}

/// Encode an array as IDX bytes (unsigned bytes).
pub fn encode_idx(array: &IdxArray) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, array.dims.len() as u8];
    for d in &array.dims {
        out.extend_from_slice(&(*d as u32).to_be_bytes());
    }
    out.extend_from_slice(&array.data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use std::io::Write;

    fn sample() -> IdxArray {
        IdxArray {
            dims: vec![3, 2, 2],
            data: (0..12).collect(),
        }
    }

    #[test]
    fn raw_and_gzipped_files_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("a-idx3-ubyte");
        std::fs::write(&raw, encode_idx(&sample())).unwrap();
        assert_eq!(read_idx(&raw).unwrap(), sample());
        let gz = dir.path().join("a-idx3-ubyte.gz");
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(&encode_idx(&sample())).unwrap();
        std::fs::write(&gz, e.finish().unwrap()).unwrap();
        assert_eq!(read_idx(&gz).unwrap(), sample());
    }

    #[test]
    fn truncated_and_corrupt_files_are_errors() {
        let p = Path::new("x");
        let bytes = encode_idx(&sample());
        assert!(matches!(
            parse_idx(&bytes[..bytes.len() - 1], p),
            Err(DataError::Truncated {
                expected: 28,
                found: 27,
                ..
            })
        ));
        assert!(matches!(
            parse_idx(&bytes[..6], p),
            Err(DataError::Truncated { .. })
        ));
        let mut long = bytes.clone();
        long.push(0);
        assert!(matches!(parse_idx(&long, p), Err(DataError::Format { .. })));
        let mut bad_magic = bytes.clone();
        bad_magic[0] = 1;
        assert!(matches!(
            parse_idx(&bad_magic, p),
            Err(DataError::Format { .. })
        ));
        let mut bad_type = bytes.clone();
        bad_type[2] = 0x0d;
        let err = parse_idx(&bad_type, p).unwrap_err().to_string();
        assert!(err.contains("element type"), "{err}");
        // A corrupt gzip stream.
        let dir = tempfile::tempdir().unwrap();
        let gz = dir.path().join("b.gz");
        std::fs::write(&gz, [0x1f, 0x8b, 8, 0, 1, 2, 3]).unwrap();
        assert!(matches!(
            read_idx(&gz),
            Err(DataError::Format { format: "gzip", .. })
        ));
        assert!(matches!(
            read_idx(&dir.path().join("none")),
            Err(DataError::Io { .. })
        ));
    }
}
