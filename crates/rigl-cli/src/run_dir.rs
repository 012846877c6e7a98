//! A run directory of `rigl train`: held by one run at a time (an exclusive lock on its `lock`
//! file, released when the run ends or its process dies), never silently reused.

use crate::CliError;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The files a run writes into its directory.
pub(crate) const RUN_FILES: [&str; 11] = [
    "config.toml",
    "checkpoint.ckpt",
    "metrics.json",
    "metrics.csv",
    "updates.json",
    "updates.csv",
    "summary.json",
    "loss.svg",
    "accuracy.svg",
    "density.svg",
    "changes.svg",
];

/// An open run directory; the lock is held until this is dropped.
#[derive(Debug)]
pub(crate) struct RunDir {
    dir: PathBuf,
    _lock: File,
}

impl RunDir {
    /// Create (if needed) and lock `dir`, holding the lock for the caller's lifetime of the
    /// value. The lock file records the holder's process id.
    ///
    /// # Errors
    /// [`CliError::RunLocked`] when another run holds the directory; I/O errors naming the
    /// path.
    pub(crate) fn lock(dir: &Path) -> Result<Self, CliError> {
        std::fs::create_dir_all(dir).map_err(|e| CliError::io(dir, e))?;
        let path = dir.join("lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| CliError::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(CliError::RunLocked {
                    dir: dir.to_path_buf(),
                    holder: if holder.is_empty() {
                        "unknown".into()
                    } else {
                        holder.to_string()
                    },
                });
            }
            Err(TryLockError::Error(e)) => return Err(CliError::io(&path, e)),
        }
        let record = |f: &mut File| -> std::io::Result<()> {
            f.set_len(0)?;
            f.rewind()?;
            write!(f, "{}", std::process::id())?;
            f.sync_all()
        };
        record(&mut file).map_err(|e| CliError::io(&path, e))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            _lock: file,
        })
    }

    /// Whether the directory holds files of a run.
    pub(crate) fn holds_a_run(&self) -> bool {
        RUN_FILES.iter().any(|f| self.dir.join(f).exists())
    }

    /// Remove the files of an earlier run (for `--overwrite`); other files are left alone.
    ///
    /// # Errors
    /// I/O errors naming the file.
    pub(crate) fn clear(&self) -> Result<(), CliError> {
        for name in RUN_FILES {
            let path = self.dir.join(name);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(CliError::io(&path, e)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        let held = RunDir::lock(&run).unwrap();
        let err = RunDir::lock(&run).unwrap_err();
        assert!(
            matches!(&err, CliError::RunLocked { holder, .. } if *holder == std::process::id().to_string()),
            "{err:?}"
        );
        assert!(err.to_string().contains("in use"), "{err}");
        drop(held);
        // Released with its holder: the directory can be taken again.
        RunDir::lock(&run).unwrap();
    }

    #[test]
    fn clear_removes_run_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::lock(dir.path()).unwrap();
        assert!(!run.holds_a_run(), "the lock file alone is not a run");
        std::fs::write(dir.path().join("metrics.json"), "[]").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
        assert!(run.holds_a_run());
        run.clear().unwrap();
        assert!(!run.holds_a_run());
        assert!(
            dir.path().join("notes.txt").is_file(),
            "the user's file stays"
        );
    }
}
