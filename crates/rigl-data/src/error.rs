//! The error type of rigl-data.

use std::path::PathBuf;
use std::time::Duration;

/// What can go wrong reading or fetching a data set. Every message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A data file is missing and could not be fetched.
    #[error("{what} not found in {dir}: {hint}")]
    Missing {
        /// What is missing.
        what: String,
        /// Where it was looked for.
        dir: PathBuf,
        /// How to get it.
        hint: String,
    },
    /// A file ends before its header says it should.
    #[error(
        "{path} is truncated: expected {expected} bytes, found {found}; delete it and fetch the data again"
    )]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Bytes expected.
        expected: usize,
        /// Bytes found.
        found: usize,
    },
    /// A file that is not in the expected format.
    #[error("{path} is not a valid {format} file: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// The expected format.
        format: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A file whose checksum does not match the published one.
    #[error(
        "{path} has md5 {found}, expected {expected}: the file is corrupt or not the published one; delete it and fetch the data again"
    )]
    Checksum {
        /// The file.
        path: PathBuf,
        /// The published md5.
        expected: String,
        /// The md5 found.
        found: String,
    },
    /// Fetching failed.
    #[error("fetching {what} failed: {reason}")]
    Fetch {
        /// What was fetched.
        what: String,
        /// Why it failed.
        reason: String,
    },
    /// A program needed to fetch the data is not installed.
    #[error(
        "`{tool}` is not installed (needed to run `{command}`); install it, or put the files in place by hand"
    )]
    ToolMissing {
        /// The program.
        tool: String,
        /// The command line it was needed for.
        command: String,
    },
    /// A fetching step ran past its time limit and was stopped.
    #[error(
        "`{command}` did not finish within {limit:?} and was stopped; check the network, or put the files in place by hand"
    )]
    Timeout {
        /// The command line.
        command: String,
        /// The time limit.
        limit: Duration,
    },
    /// Another process holds the fetch lock of a data directory for too long.
    #[error(
        "another process has been fetching into {dir} for over {:.1} s (it holds the lock on {lock}); try again when it has finished", .waited.as_secs_f64()
    )]
    Locked {
        /// The directory being fetched into.
        dir: PathBuf,
        /// The lock file.
        lock: PathBuf,
        /// How long this process waited.
        waited: Duration,
    },
    /// An image side length outside the supported range.
    #[error(
        "image size {size} is not in 1..={max}: choose the side of the square images, e.g. 224"
    )]
    ImageSize {
        /// The size asked for.
        size: usize,
        /// The largest supported size.
        max: usize,
    },
    /// An I/O error.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// Result alias of rigl-data.
pub type Result<T, E = DataError> = core::result::Result<T, E>;

pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> DataError {
    let path = path.into();
    move |source| DataError::Io { path, source }
}
