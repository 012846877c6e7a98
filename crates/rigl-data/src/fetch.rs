//! Fetching helpers: running package tools under a time limit, and HTTP downloads through
//! `curl`.

use crate::error::{DataError, Result, io};
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long `curl` may take to connect.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one `curl` transfer (one attempt) may take.
pub const TRANSFER_TIMEOUT: Duration = Duration::from_secs(600);
/// How often `curl` retries a failed transfer.
pub const RETRIES: u32 = 2;
/// How long a package tool (`npm`, `apt-get`, `tar`, `dpkg-deb`) may run before it is stopped.
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(600);

/// How often a running tool is checked for having finished.
const POLL: Duration = Duration::from_millis(20);

/// A suffix unique within this machine for as long as this process runs: the process id and a
/// per-process counter.
pub(crate) fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Run `tool args...` in `cwd`, stopping it after `limit`.
///
/// # Errors
/// [`DataError::ToolMissing`] naming the tool when it is not installed,
/// [`DataError::Timeout`] when it runs past `limit` (it is killed),
/// [`DataError::Fetch`] with the last line of its error output when it fails, and
/// [`DataError::Io`] when `cwd` is not a directory.
pub fn run_tool(tool: &str, args: &[&str], cwd: &Path, limit: Duration) -> Result<()> {
    let command = format!("{tool} {}", args.join(" "));
    if !cwd.is_dir() {
        return Err(DataError::Io {
            path: cwd.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory"),
        });
    }
    let mut child = Command::new(tool)
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                DataError::ToolMissing {
                    tool: tool.to_string(),
                    command: command.clone(),
                }
            } else {
                DataError::Fetch {
                    what: command.clone(),
                    reason: format!("cannot run {tool}: {e}"),
                }
            }
        })?;
    // Read the error output on a thread so that a chatty tool cannot fill the pipe and stall.
    let stderr = child.stderr.take();
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        if let Some(mut s) = stderr {
            let _ = s.read_to_end(&mut out);
        }
        out
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {
                let now = Instant::now();
                if now >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(DataError::Timeout { command, limit });
                }
                std::thread::sleep(POLL.min(deadline - now));
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(DataError::Fetch {
                    what: command,
                    reason: format!("waiting for {tool}: {e}"),
                });
            }
        }
    };
    let stderr = reader.join().unwrap_or_default();
    if status.success() {
        Ok(())
    } else {
        let stderr = String::from_utf8_lossy(&stderr);
        let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
        Err(DataError::Fetch {
            what: command,
            reason: last.map_or_else(|| format!("exited with {status}"), str::to_string),
        })
    }
}

/// The longest `curl` can take for one file: every attempt connecting and transferring for as
/// long as allowed, plus a minute for the pauses between retries.
fn curl_limit() -> Duration {
    (CONNECT_TIMEOUT + TRANSFER_TIMEOUT) * (RETRIES + 1) + Duration::from_secs(60)
}

/// Download `base/name` for every name into `dest` with `curl` (any URL scheme curl supports),
/// each to a temporary name unique to this process and call first, then renamed.
///
/// `curl` gives up connecting after [`CONNECT_TIMEOUT`] and a transfer after
/// [`TRANSFER_TIMEOUT`], and retries [`RETRIES`] times.
///
/// # Errors
/// [`DataError::Fetch`] naming the file that could not be downloaded,
/// [`DataError::ToolMissing`] when `curl` is not installed, [`DataError::Timeout`] when it
/// does not finish, and [`DataError::Io`] when the file cannot be renamed into place.
pub fn fetch_http(base: &str, names: &[String], dest: &Path) -> Result<()> {
    let connect = CONNECT_TIMEOUT.as_secs().to_string();
    let transfer = TRANSFER_TIMEOUT.as_secs().to_string();
    let retries = RETRIES.to_string();
    for name in names {
        let url = format!("{}/{name}", base.trim_end_matches('/'));
        let tmp = dest.join(format!(".{name}.{}.part", unique_suffix()));
        let result = run_tool(
            "curl",
            &[
                "-fsSL",
                "--connect-timeout",
                &connect,
                "--max-time",
                &transfer,
                "--retry",
                &retries,
                "-o",
                &tmp.to_string_lossy(),
                &url,
            ],
            dest,
            curl_limit(),
        );
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(match e {
                DataError::Fetch { reason, .. } => DataError::Fetch {
                    what: name.clone(),
                    reason,
                },
                other => other,
            });
        }
        let target = dest.join(name);
        std::fs::rename(&tmp, &target).map_err(io(&target))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_tool_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let err = run_tool(
            "rigl-no-such-tool",
            &["--version"],
            dir.path(),
            Duration::from_secs(5),
        )
        .unwrap_err();
        assert!(
            matches!(&err, DataError::ToolMissing { tool, .. } if tool == "rigl-no-such-tool"),
            "{err:?}"
        );
        assert!(err.to_string().contains("`rigl-no-such-tool`"), "{err}");
    }

    #[test]
    fn a_tool_past_its_limit_is_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let start = Instant::now();
        let err = run_tool("sleep", &["30"], dir.path(), Duration::from_millis(200)).unwrap_err();
        assert!(
            matches!(&err, DataError::Timeout { command, .. } if command == "sleep 30"),
            "{err:?}"
        );
        assert!(start.elapsed() < Duration::from_secs(10));
        assert!(err.to_string().contains("200ms"), "{err}");
    }

    #[test]
    fn a_failing_tool_reports_its_last_error_line() {
        let dir = tempfile::tempdir().unwrap();
        let err = run_tool(
            "sh",
            &["-c", "echo first >&2; echo 'the reason' >&2; exit 3"],
            dir.path(),
            Duration::from_secs(30),
        )
        .unwrap_err();
        assert!(
            matches!(&err, DataError::Fetch { reason, .. } if reason == "the reason"),
            "{err:?}"
        );
        run_tool("sh", &["-c", "exit 0"], dir.path(), Duration::from_secs(30)).unwrap();
        assert!(matches!(
            run_tool("sh", &[], &dir.path().join("none"), Duration::from_secs(30)),
            Err(DataError::Io { .. })
        ));
    }
}
