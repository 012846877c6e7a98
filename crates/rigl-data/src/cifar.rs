//! The CIFAR-10 binary format: `data_batch_1.bin` .. `data_batch_5.bin` (train) and
//! `test_batch.bin` (test), each record a label byte and 3072 pixel bytes (32x32 red plane,
//! then green, then blue). Train with [`Augmentation`](crate::Augmentation) `{ pad: 4, flip: true }`
//! (reflect-pad 4, random 32x32 crop, horizontal flip), as the reference does.

use crate::dataset::ImageSet;
use crate::error::{DataError, Result, io};
use crate::mnist::Split;
use std::path::Path;

const RECORD: usize = 1 + 3 * 32 * 32;

/// Per-channel mean and standard deviation of the CIFAR-10 training images.
pub const NORMALIZATION: [(f32, f32); 3] = [(0.4914, 0.2470), (0.4822, 0.2435), (0.4465, 0.2616)];

/// Parse the records of one batch file (bytes of `path`).
///
/// # Errors
/// [`DataError::Truncated`] when the size is not a whole number of records,
/// [`DataError::Format`] for a label above 9. On error nothing is added to `set`.
pub fn parse_batch(bytes: &[u8], path: &Path, set: &mut ImageSet) -> Result<()> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(RECORD) {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            expected: bytes.len().div_ceil(RECORD).max(1) * RECORD,
            found: bytes.len(),
        });
    }
    if let Some((i, rec)) = bytes
        .chunks_exact(RECORD)
        .enumerate()
        .find(|(_, rec)| rec[0] > 9)
    {
        return Err(DataError::Format {
            path: path.to_path_buf(),
            format: "CIFAR-10 binary",
            reason: format!("record {i} has label {} outside 0..=9", rec[0]),
        });
    }
    for rec in bytes.chunks_exact(RECORD) {
        set.labels.push(u32::from(rec[0]));
        set.pixels.extend_from_slice(&rec[1..]);
    }
    Ok(())
}

/// Load a CIFAR-10 split from `dir` (the `cifar-10-batches-bin` directory).
///
/// # Errors
/// [`DataError::Missing`] naming the missing batch files, and the errors of [`parse_batch`].
pub fn load(dir: &Path, split: Split) -> Result<ImageSet> {
    let files: Vec<String> = match split {
        Split::Train => (1..=5).map(|i| format!("data_batch_{i}.bin")).collect(),
        Split::Test => vec!["test_batch.bin".into()],
    };
    let missing: Vec<&str> = files
        .iter()
        .map(String::as_str)
        .filter(|f| !dir.join(f).is_file())
        .collect();
    if !missing.is_empty() {
        return Err(DataError::Missing {
            what: format!("CIFAR-10 files {}", missing.join(", ")),
            dir: dir.to_path_buf(),
            hint: "download the CIFAR-10 binary version (cifar-10-binary.tar.gz) and extract it there; no package ships it".into(),
        });
    }
    let mut set = ImageSet {
        pixels: Vec::new(),
        labels: Vec::new(),
        channels: 3,
        height: 32,
        width: 32,
        classes: 10,
        normalization: NORMALIZATION.to_vec(),
    };
    for f in files {
        let p = dir.join(f);
        let bytes = std::fs::read(&p).map_err(io(&p))?;
        parse_batch(&bytes, &p, &mut set)?;
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::TestCaseError;

    fn record(label: u8, fill: u8) -> Vec<u8> {
        let mut r = vec![label];
        r.extend(std::iter::repeat_n(fill, 3072));
        r
    }

    #[test]
    fn reads_batches_written_by_the_test() {
        let dir = tempfile::tempdir().unwrap();
        for i in 1..=5 {
            let mut bytes = record(i as u8, 10 * i as u8);
            bytes.extend(record(0, 1));
            std::fs::write(dir.path().join(format!("data_batch_{i}.bin")), bytes).unwrap();
        }
        std::fs::write(dir.path().join("test_batch.bin"), record(7, 3)).unwrap();
        let train = load(dir.path(), Split::Train).unwrap();
        assert_eq!(train.len(), 10);
        assert_eq!(train.labels[..4], [1, 0, 2, 0]);
        assert_eq!(train.pixels[0], 10);
        assert_eq!(train.pixels[3072 * 2], 20);
        let test = load(dir.path(), Split::Test).unwrap();
        assert_eq!((test.len(), test.channels, test.labels[0]), (1, 3, 7));
    }

    #[test]
    fn truncated_corrupt_and_missing_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = record(1, 0);
        bytes.pop();
        std::fs::write(dir.path().join("test_batch.bin"), &bytes).unwrap();
        assert!(matches!(
            load(dir.path(), Split::Test),
            Err(DataError::Truncated { .. })
        ));
        std::fs::write(dir.path().join("test_batch.bin"), record(12, 0)).unwrap();
        assert!(matches!(
            load(dir.path(), Split::Test),
            Err(DataError::Format { .. })
        ));
        let err = load(dir.path(), Split::Train).unwrap_err().to_string();
        assert!(err.contains("data_batch_1.bin"), "{err}");
        // A bad label in a later record leaves the set as it was.
        let mut bytes = record(3, 0);
        bytes.extend(record(10, 0));
        let mut set = empty_set();
        let err = parse_batch(&bytes, Path::new("b.bin"), &mut set).unwrap_err();
        assert!(err.to_string().contains("record 1 has label 10"), "{err}");
        assert!(set.is_empty() && set.pixels.is_empty());
    }

    fn empty_set() -> ImageSet {
        ImageSet {
            pixels: Vec::new(),
            labels: Vec::new(),
            channels: 3,
            height: 32,
            width: 32,
            classes: 10,
            normalization: NORMALIZATION.to_vec(),
        }
    }

    /// Ok only for whole records with labels in 0..=9, otherwise a typed error; nothing is
    /// added to the set on error.
    fn check_parse(bytes: &[u8]) -> core::result::Result<(), TestCaseError> {
        let mut set = empty_set();
        match parse_batch(bytes, Path::new("fuzz"), &mut set) {
            Ok(()) => {
                prop_assert!(!bytes.is_empty() && bytes.len().is_multiple_of(RECORD));
                prop_assert_eq!(set.len(), bytes.len() / RECORD);
                prop_assert_eq!(set.pixels.len(), set.len() * (RECORD - 1));
                prop_assert!(set.labels.iter().all(|&l| l <= 9));
            }
            Err(DataError::Truncated {
                expected, found, ..
            }) => {
                prop_assert!(bytes.is_empty() || !bytes.len().is_multiple_of(RECORD));
                prop_assert!(expected > found && expected.is_multiple_of(RECORD));
                prop_assert!(set.is_empty());
            }
            Err(DataError::Format { .. }) => prop_assert!(set.is_empty()),
            Err(e) => prop_assert!(false, "unexpected error {e:?}"),
        }
        Ok(())
    }

    fn valid() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec((0u8..10, any::<u8>()), 1..4)
            .prop_map(|recs| recs.into_iter().flat_map(|(l, f)| record(l, f)).collect())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..2 * RECORD + 2),
        ) {
            check_parse(&bytes)?;
        }

        #[test]
        fn truncated_and_flipped_batches_give_typed_errors(
            file in valid(),
            cut in any::<prop::sample::Index>(),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), 1..=255u8), 1..4),
        ) {
            let cut = cut.index(file.len());
            check_parse(&file[..cut])?;
            let mut flipped = file.clone();
            for (i, x) in flips {
                let i = i.index(flipped.len());
                flipped[i] ^= x;
            }
            check_parse(&flipped)?;
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("test_batch.bin"), &file[..cut]).unwrap();
            let is_truncated = matches!(load(dir.path(), Split::Test), Err(DataError::Truncated { .. }));
            prop_assert!(is_truncated);
        }
    }
}
