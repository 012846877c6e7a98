//! `rigl bench`: how fast the mask-update hot path runs on this machine and device.
//!
//! Times, on the chosen device, the segmented top-k selection of `rigl-kernels` over problems of
//! its benchmark catalogue (one segment of 10^5 to 10^7 scores with `k` = 30%; the 54 layers of
//! ResNet-50, 25.5M scores) and a whole RigL mask decision (drop by |w|, grow by |g|) on the
//! ResNet-50 layers at 90% sparsity, the way `SparseTrainer` runs it at every update. For the
//! statistical benchmarks behind `benches/RESULTS.md`, use `cargo bench`.

use crate::CliError;
use crate::count::Format;
use crate::train::device;
use burn::tensor::{Bool, Device, Tensor, TensorData};
use clap::Args;
use rigl_core::Method;
use rigl_core::updater::catalogue::resnet50_rigl;
use rigl_kernels::catalogue::{self, KRule, Layout, Pattern, Problem};
use rigl_kernels::segmented_top_k_mask;
use serde::Serialize;
use std::io::Write;
use std::time::{Duration, Instant};

/// Which cases `rigl bench` times.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Suite {
    /// The mask-update hot path: segmented top-k selections and RigL's decision.
    #[default]
    Selection,
    /// Dense against sparse execution (training step of the MNIST MLP, inference of a
    /// 4096x4096 linear layer); JSON output is one object per case.
    Sparse,
}

/// Arguments of `rigl bench`.
#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// The cases to time.
    #[arg(long, value_enum, default_value_t = Suite::Selection)]
    pub suite: Suite,
    /// Device: flex (CPU), wgpu, cuda.
    #[arg(long, default_value = "flex")]
    pub device: String,
    /// Largest single-segment case (10^5, 10^6 and 10^7 up to this size).
    #[arg(long, default_value_t = 10_000_000)]
    pub max_size: usize,
    /// Timed runs per case, after one untimed warm-up run; the median is reported.
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
    /// Skip the ResNet-50 cases (25.5M positions; about 0.5 GB of memory).
    #[arg(long)]
    pub no_resnet50: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// One timed case.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct BenchRow {
    /// What ran.
    pub case: String,
    /// Scores processed per run.
    pub positions: usize,
    /// Positions selected per run.
    pub selected: usize,
    /// Median wall time of a run, in milliseconds.
    pub median_ms: f64,
    /// Fastest run, in milliseconds.
    pub fastest_ms: f64,
    /// Positions per second at the median, in millions.
    pub mitems_per_s: f64,
}

/// The report of `rigl bench`.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// The device, as Burn names it.
    pub device: String,
    /// Timed runs per case.
    pub repeats: usize,
    /// The cases.
    pub rows: Vec<BenchRow>,
}

/// Run `rigl bench`.
///
/// # Errors
/// [`CliError::Invalid`] for zero repeats, a size below the smallest case or an unavailable
/// device; [`CliError::Io`] / [`CliError::Json`] when writing fails.
pub fn run(args: &BenchArgs, out: &mut dyn Write) -> Result<(), CliError> {
    if args.suite == Suite::Sparse {
        return run_sparse(args, out);
    }
    let report = measure(args)?;
    match args.format {
        Format::Table => {
            writeln!(
                out,
                "device {} ({} timed runs per case, median)",
                report.device, report.repeats
            )?;
            writeln!(
                out,
                "{:<42} {:>11} {:>10} {:>11} {:>11} {:>10}",
                "case", "positions", "selected", "median ms", "fastest ms", "Mitem/s"
            )?;
            for r in &report.rows {
                writeln!(
                    out,
                    "{:<42} {:>11} {:>10} {:>11.3} {:>11.3} {:>10.1}",
                    r.case, r.positions, r.selected, r.median_ms, r.fastest_ms, r.mitems_per_s
                )?;
            }
        }
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, &report)?;
            writeln!(out)?;
        }
    }
    Ok(())
}

fn run_sparse(args: &BenchArgs, out: &mut dyn Write) -> Result<(), CliError> {
    if args.repeats == 0 {
        return Err(CliError::Invalid("--repeats must be at least 1".into()));
    }
    let device = device(&args.device)?;
    let rows = crate::sparse_bench::measure(&device, args.repeats)?;
    match args.format {
        Format::Table => {
            writeln!(
                out,
                "{:<20} {:>6} {:>8} {:>11} {:>11} {:>8}",
                "case", "batch", "density", "dense ms", "sparse ms", "speedup"
            )?;
            for r in &rows {
                writeln!(
                    out,
                    "{:<20} {:>6} {:>8.4} {:>11.3} {:>11.3} {:>7.2}x",
                    r.case, r.batch, r.density, r.dense_ms, r.sparse_ms, r.speedup
                )?;
            }
        }
        Format::Json => {
            for r in &rows {
                serde_json::to_writer(&mut *out, r)?;
                writeln!(out)?;
            }
        }
    }
    Ok(())
}

/// Time every case of `args`.
///
/// # Errors
/// As [`run`].
pub fn measure(args: &BenchArgs) -> Result<BenchReport, CliError> {
    if args.repeats == 0 {
        return Err(CliError::Invalid("--repeats must be at least 1".into()));
    }
    const SIZES: [usize; 3] = [100_000, 1_000_000, 10_000_000];
    if args.max_size < SIZES[0] {
        return Err(CliError::Invalid(format!(
            "--max-size {} is below the smallest case ({})",
            args.max_size, SIZES[0]
        )));
    }
    let device = device(&args.device)?;
    let name = format!("{:?}", Tensor::<1>::zeros([1], &device).device());
    let mut rows = Vec::new();
    for n in SIZES.into_iter().filter(|&n| n <= args.max_size) {
        let p = catalogue::problem(
            Pattern::Uniform,
            Layout::Single,
            n,
            KRule::Fraction(0.3),
            None,
            7,
        );
        rows.push(time_selection(
            &format!("top-k, 1 segment, n = {n}"),
            &p,
            &device,
            args.repeats,
        )?);
    }
    if !args.no_resnet50 {
        let p = catalogue::resnet50(None);
        rows.push(time_selection(
            "top-k, ResNet-50 (54 segments)",
            &p,
            &device,
            args.repeats,
        )?);
        rows.push(time_rigl_decision(&device, args.repeats)?);
    }
    Ok(BenchReport {
        device: name,
        repeats: args.repeats,
        rows,
    })
}

fn floats(values: &[f32], device: &Device) -> Tensor<1> {
    Tensor::from_data(TensorData::new(values.to_vec(), [values.len()]), device)
}

fn bools(values: &[bool], device: &Device) -> Tensor<1, Bool> {
    Tensor::from_data(TensorData::new(values.to_vec(), [values.len()]), device)
}

/// Median and fastest of `repeats` timed runs after one warm-up (kernel compilation).
fn time_runs(
    repeats: usize,
    mut once: impl FnMut() -> Result<(), CliError>,
) -> Result<(f64, f64), CliError> {
    once()?;
    let mut times: Vec<Duration> = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let start = Instant::now();
        once()?;
        times.push(start.elapsed());
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    Ok((ms(times[times.len() / 2]), ms(times[0])))
}

fn row(
    case: &str,
    positions: usize,
    selected: usize,
    (median_ms, fastest_ms): (f64, f64),
) -> BenchRow {
    BenchRow {
        case: case.to_string(),
        positions,
        selected,
        median_ms,
        fastest_ms,
        mitems_per_s: positions as f64 / (median_ms * 1e3),
    }
}

fn time_selection(
    case: &str,
    p: &Problem,
    device: &Device,
    repeats: usize,
) -> Result<BenchRow, CliError> {
    let scores = floats(&p.scores, device);
    let eligible = p.eligible.as_deref().map(|e| bools(e, device));
    let times = time_runs(repeats, || {
        // The call reads the per-segment counts back, so it returns when the device is done.
        segmented_top_k_mask(scores.clone(), eligible.clone(), &p.segments)
            .map(|_| ())
            .map_err(|e| CliError::Invalid(format!("{case}: {e}")))
    })?;
    Ok(row(case, p.len(), p.selected(), times))
}

/// RigL's decision on the ResNet-50 layers ([`rigl_core::updater::catalogue::resnet50_rigl`]).
fn time_rigl_decision(device: &Device, repeats: usize) -> Result<BenchRow, CliError> {
    let (input, ctx) = resnet50_rigl(device);
    let mut rigl = Method::Rigl
        .updater(&rigl_core::DstConfig::new(Method::Rigl))
        .expect("RigL has an updater");
    let selected = input.layers.iter().map(|l| l.n_active).sum();
    let times = time_runs(repeats, || {
        let decision = rigl.update(&ctx, &input)?;
        // Wait for the device: read one number back.
        let _ = decision.reset.int().sum().into_scalar::<i64>();
        Ok(())
    })?;
    Ok(row(
        "RigL mask decision, ResNet-50, 90% sparse",
        input.len(),
        selected,
        times,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> BenchArgs {
        use clap::Parser;
        #[derive(Parser)]
        struct P {
            #[command(flatten)]
            a: BenchArgs,
        }
        let mut v = vec!["bench"];
        v.extend_from_slice(extra);
        P::try_parse_from(v).unwrap().a
    }

    #[test]
    fn times_the_cases_it_names() {
        let r = measure(&args(&[
            "--max-size",
            "100000",
            "--repeats",
            "1",
            "--no-resnet50",
        ]))
        .unwrap();
        assert_eq!(r.rows.len(), 1);
        let row = &r.rows[0];
        assert_eq!(row.case, "top-k, 1 segment, n = 100000");
        assert_eq!((row.positions, row.selected), (100_000, 30_000));
        assert!(row.median_ms > 0.0 && row.fastest_ms <= row.median_ms);
        assert!(row.mitems_per_s.is_finite() && row.mitems_per_s > 0.0);
        let mut out = Vec::new();
        run(
            &args(&[
                "--max-size",
                "100000",
                "--repeats",
                "1",
                "--no-resnet50",
                "--format",
                "json",
            ]),
            &mut out,
        )
        .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(json["rows"][0]["selected"], 30_000);
    }

    #[test]
    fn bad_arguments_are_named() {
        let e = measure(&args(&["--repeats", "0"])).unwrap_err().to_string();
        assert!(e.contains("--repeats"), "{e}");
        let e = measure(&args(&["--max-size", "10"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("--max-size 10"), "{e}");
        let e = measure(&args(&["--device", "tpu"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown device `tpu`"), "{e}");
    }
}
