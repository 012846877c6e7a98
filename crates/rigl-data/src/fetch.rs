//! Fetching helpers: running package tools and HTTP downloads through `curl`.

use crate::error::{DataError, Result};
use std::path::Path;
use std::process::Command;

/// Run `tool args...` in `cwd`, turning failure into [`DataError::Fetch`].
///
/// # Errors
/// [`DataError::Fetch`] when the tool is missing or exits with an error.
pub fn run_tool(tool: &str, args: &[&str], cwd: &Path) -> Result<()> {
    let out = Command::new(tool)
        .args(args)
        .current_dir(cwd)
        .output()
        .map_err(|e| DataError::Fetch {
            what: format!("{tool} {}", args.join(" ")),
            reason: format!("cannot run {tool}: {e}"),
        })?;
    if out.status.success() {
        Ok(())
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        Err(DataError::Fetch {
            what: format!("{tool} {}", args.join(" ")),
            reason: stderr.lines().last().unwrap_or("failed").to_string(),
        })
    }
}

/// Download `base/name` for every name into `dest` with `curl` (any URL scheme curl supports),
/// each to a temporary name first, then renamed.
///
/// # Errors
/// [`DataError::Fetch`] naming the file that could not be downloaded.
pub fn fetch_http(base: &str, names: &[String], dest: &Path) -> Result<()> {
    for name in names {
        let url = format!("{}/{name}", base.trim_end_matches('/'));
        let tmp = dest.join(format!(".{name}.part"));
        let result = run_tool(
            "curl",
            &["-fsSL", "--retry", "2", "-o", &tmp.to_string_lossy(), &url],
            dest,
        );
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(DataError::Fetch {
                what: name.clone(),
                reason: e.to_string(),
            });
        }
        let target = dest.join(name);
        std::fs::rename(&tmp, &target).map_err(crate::error::io(&target))?;
    }
    Ok(())
}
