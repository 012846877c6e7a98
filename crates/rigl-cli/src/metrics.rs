//! The files of a run directory besides the checkpoint: per-epoch metrics (JSON, CSV), the
//! mask-update log and the SVG plots, each written atomically.

use crate::CliError;
use crate::plot::{Series, line_chart};
use rigl_core::UpdateStats;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One epoch's metrics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// Epoch (1-based).
    pub epoch: usize,
    /// Optimizer steps taken so far.
    pub step: i64,
    /// Learning rate of the epoch.
    pub lr: f64,
    /// Mean training loss.
    pub train_loss: f64,
    /// Training accuracy (on the batches as trained).
    pub train_accuracy: f64,
    /// Test loss.
    pub test_loss: f64,
    /// Test accuracy.
    pub test_accuracy: f64,
    /// Global sparsity of the kernels.
    pub sparsity: f64,
    /// Per-layer density (active / total), by parameter path.
    pub density: Vec<(String, f64)>,
    /// Training throughput.
    pub samples_per_second: f64,
    /// Wall time of the epoch.
    pub seconds: f64,
}

pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| CliError::io(path, e))?;
    serde_json::from_str(&text)
        .map_err(|e| CliError::Invalid(format!("{} is corrupt: {e}", path.display())))
}

/// Write a file atomically (temporary file, then rename).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    rigl_core::write_atomic(path, bytes).map_err(CliError::from)
}

pub(crate) fn write_outputs(
    dir: &Path,
    history: &[EpochRecord],
    updates: &[UpdateStats],
) -> Result<(), CliError> {
    write_atomic(
        &dir.join("metrics.json"),
        serde_json::to_string_pretty(history)?.as_bytes(),
    )?;
    write_atomic(
        &dir.join("updates.json"),
        serde_json::to_string(updates)?.as_bytes(),
    )?;
    let mut csv = String::from(
        "epoch,step,lr,train_loss,train_accuracy,test_loss,test_accuracy,sparsity,samples_per_second,seconds\n",
    );
    for r in history {
        csv.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{}\n",
            r.epoch,
            r.step,
            r.lr,
            r.train_loss,
            r.train_accuracy,
            r.test_loss,
            r.test_accuracy,
            r.sparsity,
            r.samples_per_second,
            r.seconds
        ));
    }
    write_atomic(&dir.join("metrics.csv"), csv.as_bytes())?;
    let mut ucsv = String::from("step,drop_fraction,changed_fraction\n");
    for u in updates {
        ucsv.push_str(&format!(
            "{},{},{}\n",
            u.step,
            u.drop_fraction,
            u.changed_fraction()
        ));
    }
    write_atomic(&dir.join("updates.csv"), ucsv.as_bytes())?;

    let epochs = |f: fn(&EpochRecord) -> f64| -> Vec<(f64, f64)> {
        history.iter().map(|r| (r.epoch as f64, f(r))).collect()
    };
    let plots = [
        (
            "loss.svg",
            line_chart(
                "Loss",
                "epoch",
                "loss",
                &[
                    Series::new("train", epochs(|r| r.train_loss)),
                    Series::new("test", epochs(|r| r.test_loss)),
                ],
            ),
        ),
        (
            "accuracy.svg",
            line_chart(
                "Accuracy",
                "epoch",
                "accuracy",
                &[
                    Series::new("train", epochs(|r| r.train_accuracy)),
                    Series::new("test", epochs(|r| r.test_accuracy)),
                ],
            ),
        ),
        (
            "density.svg",
            line_chart(
                "Per-layer density",
                "epoch",
                "active / total",
                &history
                    .first()
                    .map(|f| {
                        f.density
                            .iter()
                            .enumerate()
                            .map(|(i, (path, _))| {
                                Series::new(
                                    path,
                                    history
                                        .iter()
                                        .map(|r| (r.epoch as f64, r.density[i].1))
                                        .collect(),
                                )
                            })
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default(),
            ),
        ),
        (
            "changes.svg",
            line_chart(
                "Connections changed at each mask update",
                "step",
                "fraction of active connections new",
                &[Series::new(
                    "changed",
                    updates
                        .iter()
                        .map(|u| (u.step as f64, u.changed_fraction()))
                        .collect(),
                )],
            ),
        ),
    ];
    for (name, svg) in plots {
        write_atomic(&dir.join(name), svg.as_bytes())?;
    }
    Ok(())
}
