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
/// [`DataError::Io`] if it cannot be read, [`DataError::Format`] if the gzip stream is corrupt
/// or decompresses to more than [`MAX_DECOMPRESSED`] bytes (the largest standard file is
/// 47 MB).
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(io(path))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        read_gz_limited(&raw, path, MAX_DECOMPRESSED)
    } else {
        Ok(raw)
    }
}

/// The most bytes a gzipped file may decompress to.
pub const MAX_DECOMPRESSED: u64 = 1 << 30;

/// Decompress `raw` (the bytes of `path`), refusing more than `limit` bytes of output.
fn read_gz_limited(raw: &[u8], path: &Path, limit: u64) -> Result<Vec<u8>> {
    let bad = |reason: String| DataError::Format {
        path: path.to_path_buf(),
        format: "gzip",
        reason,
    };
    let mut out = Vec::new();
    GzDecoder::new(raw)
        .take(limit.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| bad(e.to_string()))?;
    if out.len() as u64 > limit {
        return Err(bad(format!("it decompresses to more than {limit} bytes")));
    }
    Ok(out)
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
    // Compared with the byte length before anything is allocated.
    let expected = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .and_then(|n| n.checked_add(header))
        .ok_or_else(|| bad(format!("dimensions {dims:?} overflow")))?;
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
    use proptest::prelude::*;
    use proptest::test_runner::TestCaseError;
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

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn headers_declaring_more_than_the_file_holds_are_rejected() {
        let p = Path::new("x");
        // 2^32-1 x 2^32-1 items with 16 bytes of data.
        let mut bytes = vec![0, 0, 8, 2];
        bytes.extend(u32::MAX.to_be_bytes());
        bytes.extend(u32::MAX.to_be_bytes());
        bytes.extend([0; 16]);
        let err = parse_idx(&bytes, p).unwrap_err();
        assert!(
            matches!(err, DataError::Truncated { found: 28, .. }),
            "{err:?}"
        );
        // Dimensions whose product is exactly usize::MAX (2^64 - 1 = 641 * 6700417 * (2^32 - 1)):
        // the header size cannot be added to it.
        let mut bytes = vec![0, 0, 8, 3];
        for d in [641u32, 6_700_417, u32::MAX] {
            bytes.extend(d.to_be_bytes());
        }
        let err = parse_idx(&bytes, p).unwrap_err();
        assert!(matches!(err, DataError::Format { .. }), "{err:?}");
        assert!(err.to_string().contains("overflow"), "{err}");
        // Three dimensions overflowing.
        let mut bytes = vec![0, 0, 8, 3];
        for _ in 0..3 {
            bytes.extend(u32::MAX.to_be_bytes());
        }
        assert!(matches!(
            parse_idx(&bytes, p),
            Err(DataError::Format { .. })
        ));
    }

    #[test]
    fn gzip_streams_larger_than_the_limit_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let gz = dir.path().join("big.gz");
        std::fs::write(&gz, gzip(&vec![0; 64 * 1024])).unwrap();
        let err = read_gz_limited(&std::fs::read(&gz).unwrap(), &gz, 1024).unwrap_err();
        assert!(
            matches!(&err, DataError::Format { format: "gzip", reason, .. } if reason.contains("1024")),
            "{err:?}"
        );
        assert_eq!(
            read_gz_limited(&std::fs::read(&gz).unwrap(), &gz, 64 * 1024)
                .unwrap()
                .len(),
            64 * 1024
        );
    }

    /// Ok only for a consistent array, otherwise a typed format or truncation error.
    fn check_parse(bytes: &[u8]) -> core::result::Result<(), TestCaseError> {
        match parse_idx(bytes, Path::new("fuzz")) {
            Ok(a) => {
                prop_assert_eq!(a.dims.iter().product::<usize>(), a.data.len());
                prop_assert_eq!(encode_idx(&a), bytes);
            }
            Err(DataError::Format { format: "IDX", .. } | DataError::Truncated { .. }) => {}
            Err(e) => prop_assert!(false, "unexpected error {e:?}"),
        }
        Ok(())
    }

    fn valid() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(0usize..5, 1..4).prop_flat_map(|dims| {
            let n = dims.iter().product::<usize>();
            proptest::collection::vec(any::<u8>(), n).prop_map(move |data| {
                encode_idx(&IdxArray {
                    dims: dims.clone(),
                    data,
                })
            })
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            check_parse(&bytes)?;
            let mut idx = vec![0, 0, 8];
            idx.extend(&bytes);
            check_parse(&idx)?;
        }

        #[test]
        fn truncated_files_are_truncation_errors(file in valid(), cut in any::<prop::sample::Index>()) {
            let cut = cut.index(file.len());
            let is_truncated = matches!(
                parse_idx(&file[..cut], Path::new("fuzz")),
                Err(DataError::Truncated { .. })
            );
            prop_assert!(is_truncated);
        }

        #[test]
        fn flipped_bytes_never_panic(
            file in valid(),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), 1..=255u8), 1..4),
        ) {
            let mut file = file;
            for (i, x) in flips {
                let i = i.index(file.len());
                file[i] ^= x;
            }
            check_parse(&file)?;
        }

        #[test]
        fn huge_declared_dimensions_are_rejected_before_allocating(
            dims in proptest::collection::vec(any::<u32>(), 1..6),
            data in proptest::collection::vec(any::<u8>(), 0..32),
        ) {
            let mut bytes = vec![0, 0, 8, dims.len() as u8];
            for d in &dims {
                bytes.extend(d.to_be_bytes());
            }
            bytes.extend(&data);
            let n = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d as usize));
            let result = parse_idx(&bytes, Path::new("fuzz"));
            if n == Some(data.len()) {
                prop_assert!(result.is_ok());
            } else {
                prop_assert!(result.is_err());
            }
            check_parse(&bytes)?;
        }

        #[test]
        fn damaged_gzip_files_give_typed_errors(
            file in valid(),
            cut in any::<prop::sample::Index>(),
            flip in (any::<prop::sample::Index>(), 1..=255u8),
            garbage in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let gz = gzip(&file);
            let mut flipped = gz.clone();
            let i = flip.0.index(flipped.len());
            flipped[i] ^= flip.1;
            let mut magic = vec![0x1f, 0x8b];
            magic.extend(&garbage);
            for (k, bytes) in [gz[..cut.index(gz.len())].to_vec(), flipped, magic].into_iter().enumerate() {
                let path = dir.path().join(format!("{k}.gz"));
                std::fs::write(&path, &bytes).unwrap();
                match read_idx(&path) {
                    Ok(a) => prop_assert_eq!(encode_idx(&a), read_maybe_gz(&path).unwrap()),
                    Err(DataError::Format { .. } | DataError::Truncated { .. }) => {}
                    Err(e) => prop_assert!(false, "unexpected error {e:?}"),
                }
            }
        }
    }
}
