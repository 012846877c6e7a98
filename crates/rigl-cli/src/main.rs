//! The `rigl` command-line tool for sparse networks. Each subcommand lives in its own module.

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::io::Write;
use std::process::ExitCode;

mod bench;
mod count;
mod eval;
mod metrics;
mod plot;
mod run_dir;
mod settings;
mod sparse_bench;
mod train;

/// Dynamic sparse training for Burn: count, train and evaluate sparse networks.
#[derive(Parser, Debug)]
#[command(name = "rigl", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Inference FLOPs, training FLOPs and model size of a sparse model, per layer and in
    /// total, with the conventions of the RigL paper's tables.
    Count(count::CountArgs),
    /// Train a sparse (or dense) network on a data set: progress, metrics, plots,
    /// checkpoints every epoch, `--resume`.
    Train(Box<train::TrainArgs>),
    /// Evaluate a trained run: test accuracy, per-layer sparsity, FLOPs.
    Eval(eval::EvalArgs),
    /// Time the mask-update hot path on a device: segmented top-k selection and a whole RigL
    /// mask decision on the ResNet-50 layers.
    Bench(bench::BenchArgs),
}

/// Everything a subcommand can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Arguments that do not parse (unknown model, malformed number, ...).
    #[error("{0}")]
    Usage(#[from] clap::Error),
    /// An argument that parses but makes no sense.
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// A sparsity configuration error.
    #[error(transparent)]
    Sparsity(#[from] rigl_core::SparsityError),
    /// A model or counting error.
    #[error(transparent)]
    Model(#[from] rigl_models::ModelError),
    /// A settings file that cannot be read or parsed.
    #[error("config file {path}: {reason}")]
    Config {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A run directory another run holds.
    #[error("run directory {} is in use by another `rigl train` (pid {holder}); wait for it, or choose another --run-dir", dir.display())]
    RunLocked {
        /// The directory.
        dir: std::path::PathBuf,
        /// The process id recorded by the holder.
        holder: String,
    },
    /// A run directory that already holds a run, without `--resume` or `--overwrite`.
    #[error("run directory {} already holds a run: pass --resume to continue it, or --overwrite to replace it", .0.display())]
    RunExists(std::path::PathBuf),
    /// `--resume` with settings that differ from the checkpoint's.
    #[error("--resume: the settings differ from the run in {}: {}", dir.display(), differences.join("; "))]
    ResumeMismatch {
        /// The run directory.
        dir: std::path::PathBuf,
        /// `key: checkpoint's value -> value now`, one per differing key.
        differences: Vec<String>,
    },
    /// A data set that cannot be read or fetched.
    #[error(transparent)]
    Data(#[from] rigl_data::DataError),
    /// JSON output failed.
    #[error("cannot write JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// Writing the output failed.
    #[error("cannot write output: {0}")]
    Io(#[from] std::io::Error),
}

impl CliError {
    pub(crate) fn io(path: &std::path::Path, e: std::io::Error) -> Self {
        CliError::Invalid(format!("{}: {e}", path.display()))
    }
}

/// Parse `args` (the first is the program name) and run the subcommand, writing to `out`.
///
/// # Errors
/// [`CliError::Usage`] for arguments that do not parse, and the subcommand's errors.
pub fn run<I, T>(args: I, out: &mut dyn Write) -> Result<(), CliError>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    match parse(args)?.command {
        Command::Count(args) => count::run(&args, out),
        Command::Train(args) => train::run(&args, out),
        Command::Eval(args) => eval::run(&args, out),
        Command::Bench(args) => bench::run(&args, out),
    }
}

/// Parse `args` (the first is the program name), recording which settings of `rigl train`
/// the command line gives (only those override its config file).
///
/// # Errors
/// [`CliError::Usage`] for arguments that do not parse.
pub fn parse<I, T>(args: I) -> Result<Cli, CliError>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let matches = Cli::command().try_get_matches_from(args)?;
    let mut cli = Cli::from_arg_matches(&matches)?;
    if let (Command::Train(args), Some(("train", m))) = (&mut cli.command, matches.subcommand()) {
        **args = std::mem::take(&mut **args).with_given(m);
    }
    Ok(cli)
}

fn main() -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match run(std::env::args_os(), &mut stdout) {
        Ok(()) => ExitCode::SUCCESS,
        // Help, version and usage errors print themselves, with clap's exit codes.
        Err(CliError::Usage(e)) => e.exit(),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
