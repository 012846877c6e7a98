//! File helpers.

use crate::error::{Result, SparsityError};
use std::io::Write;
use std::path::Path;

/// Write `bytes` to `path` atomically: into a temporary file in the same directory, flushed
/// to disk, then renamed over `path`. A crash leaves either the old file or the new one.
///
/// # Errors
/// [`SparsityError::Io`] naming the file that could not be written.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let io_err = |p: &Path| {
        let p = p.display().to_string();
        move |source| SparsityError::Io { path: p, source }
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "checkpoint".into());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(bytes).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, path).map_err(io_err(path))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
