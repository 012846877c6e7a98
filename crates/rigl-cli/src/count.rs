//! `rigl count`: FLOPs and size of a sparse model, from its configuration alone.

use crate::CliError;
use clap::{Args, ValueEnum};
use rigl_core::Method;
use rigl_core::{Distribution, SparsityConfig, Structure};
use rigl_models::counter::{self, CountOptions, PruningSchedule, SpatialRule, TrainingOptions};
use rigl_models::{ModelKind, ModelOptions};
use std::io::Write;

/// Output format.
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// A per-layer table and the totals.
    #[default]
    Table,
    /// JSON: one entry per counted layer and the totals.
    Json,
}

/// Arguments of `rigl count`.
#[derive(Args, Debug, Clone)]
pub struct CountArgs {
    /// The model: mlp, wrn, resnet50, mobilenet-v1, mobilenet-v2.
    #[arg(long)]
    pub model: ModelKind,
    /// Sparsity distribution: uniform (the reference's `random`), er or erk.
    #[arg(long, default_value = "uniform")]
    pub distribution: Distribution,
    /// Global sparsity, in [0, 1) (with an N:M structure, 0 means its 1 - N/M).
    #[arg(long, default_value_t = 0.0)]
    pub sparsity: f64,
    /// Mask structure: unstructured, N:M (e.g. 2:4; counted with `ceil(log2 M)` index bits
    /// per kept weight where that is less than the 1-bit mask) or fan-in.
    #[arg(long, default_value = "unstructured")]
    pub structure: Structure,
    /// Leave the first layer dense (unmasked), like the reference's uniform runs.
    #[arg(long)]
    pub first_layer_dense: bool,
    /// Leave the last layer dense (unmasked).
    #[arg(long)]
    pub last_layer_dense: bool,
    /// Sparsity of the first layer, taken out of the ER/ERK budget.
    #[arg(long, value_name = "S", conflicts_with = "first_layer_dense")]
    pub first_layer_sparsity: Option<f64>,
    /// Sparsity of the last layer, taken out of the ER/ERK budget.
    #[arg(long, value_name = "S", conflicts_with = "last_layer_dense")]
    pub last_layer_sparsity: Option<f64>,
    /// A layer's own sparsity, e.g. `fc2=0.882` (`*` wildcards; repeatable).
    #[arg(long, value_name = "PATTERN=S", value_parser = parse_custom)]
    pub custom: Vec<(String, f64)>,
    /// Leave the layers matching this pattern unmasked, e.g. `blocks.*.depthwise`
    /// (repeatable).
    #[arg(long, value_name = "PATTERN")]
    pub exclude: Vec<String>,
    /// ERK's power scale.
    #[arg(long, default_value_t = 1.0)]
    pub erk_power_scale: f64,
    /// Training method for the training-FLOPs estimate: dense, scratch, static_rezero, set,
    /// snfs, rigl, snip, prune, ste (or the reference's names: baseline, static, momentum).
    #[arg(long, default_value = "rigl")]
    pub method: Method,
    /// Steps between mask updates (RigL) or pruning steps (pruning).
    #[arg(long, default_value_t = 100)]
    pub delta_t: u64,
    /// Training-length multiplier.
    #[arg(long, default_value_t = 1.0)]
    pub multiplier: f64,
    /// Length of a gradual-pruning run (steps).
    #[arg(long, default_value_t = PruningSchedule::default().total_steps)]
    pub total_steps: u64,
    /// First gradual-pruning step.
    #[arg(long, default_value_t = PruningSchedule::default().begin_step)]
    pub begin_step: u64,
    /// Last gradual-pruning step.
    #[arg(long, default_value_t = PruningSchedule::default().end_step)]
    pub end_step: u64,
    /// Spatial sizes for conv FLOPs: reference (as the published tables count) or actual
    /// (the Burn module's output sizes).
    #[arg(long, default_value = "reference")]
    pub spatial: SpatialRule,
    /// Number of classes (default: 10 for mlp and wrn, 1000 for the ImageNet models).
    #[arg(long)]
    pub num_classes: Option<usize>,
    /// Input resolution (default: 28 for mlp, 32 for wrn, 224 for the ImageNet models).
    #[arg(long)]
    pub input_size: Option<usize>,
    /// Input channels (default: 1 for mlp, 3 otherwise).
    #[arg(long)]
    pub in_channels: Option<usize>,
    /// Width: the widen factor k of wrn (an integer) or the width multiplier of the
    /// MobileNets.
    #[arg(long)]
    pub width: Option<f64>,
    /// Depth of wrn (6n + 4).
    #[arg(long)]
    pub depth: Option<usize>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

fn parse_custom(s: &str) -> Result<(String, f64), String> {
    let (pattern, value) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not PATTERN=SPARSITY"))?;
    let value: f64 = value
        .trim()
        .parse()
        .map_err(|_| format!("`{value}` in `{s}` is not a number"))?;
    Ok((pattern.trim().to_string(), value))
}

impl CountArgs {
    /// The sparsity configuration the arguments describe.
    ///
    /// # Errors
    /// Any [`SparsityConfig::validate`] error.
    pub fn sparsity_config(&self) -> Result<SparsityConfig, CliError> {
        let sparsity = match self.structure.implied_sparsity() {
            Some(implied) if self.sparsity == 0.0 => implied,
            _ => self.sparsity,
        };
        let mut config = SparsityConfig::new(sparsity)
            .with_distribution(self.distribution)
            .with_erk_power_scale(self.erk_power_scale)
            .with_structure(self.structure);
        if self.first_layer_dense {
            config = config.first_layer_dense();
        }
        if self.last_layer_dense {
            config = config.last_layer_dense();
        }
        if let Some(s) = self.first_layer_sparsity {
            config = config.with_first_layer_sparsity(Some(s));
        }
        if let Some(s) = self.last_layer_sparsity {
            config = config.with_last_layer_sparsity(Some(s));
        }
        for (pattern, s) in &self.custom {
            config = config.with_custom_sparsity(pattern.clone(), *s);
        }
        for pattern in &self.exclude {
            config = config.exclude(pattern.clone());
        }
        config.validate()?;
        Ok(config)
    }

    /// The counting options the arguments describe.
    pub fn count_options(&self) -> CountOptions {
        CountOptions {
            spatial: self.spatial,
            training: TrainingOptions {
                method: self.method,
                delta_t: self.delta_t,
                multiplier: self.multiplier,
                pruning: PruningSchedule {
                    total_steps: self.total_steps,
                    begin_step: self.begin_step,
                    end_step: self.end_step,
                },
            },
            structure: self.structure,
        }
    }

    /// The model's knobs the arguments set.
    pub fn model_options(&self) -> ModelOptions {
        ModelOptions {
            num_classes: self.num_classes,
            input_size: self.input_size,
            in_channels: self.in_channels,
            width: self.width,
            depth: self.depth,
            dropout: None,
            execution: None,
        }
    }
}

/// Run `rigl count`: count the model and write the table or the JSON to `out`.
///
/// # Errors
/// Invalid arguments, sparsity or model configurations, and output failures.
pub fn run(args: &CountArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let config = args.sparsity_config()?;
    let model = args.model.config(&args.model_options())?;
    let count = counter::count(model.architecture(), &config, &args.count_options())?;
    match args.format {
        Format::Table => {
            let mut rules = Vec::new();
            let rule = |which: &str, s: f64| {
                if s == 0.0 {
                    format!("{which} layer dense")
                } else {
                    format!("{which} layer {s}")
                }
            };
            if let Some(s) = config.first_layer_sparsity {
                rules.push(rule("first", s));
            }
            if let Some(s) = config.last_layer_sparsity {
                rules.push(rule("last", s));
            }
            for (p, s) in &config.custom {
                rules.push(format!("{p} {s}"));
            }
            for p in &config.exclude {
                rules.push(format!("{p} excluded"));
            }
            let rules = if rules.is_empty() {
                String::new()
            } else {
                format!(" ({})", rules.join(", "))
            };
            writeln!(
                out,
                "{}: {} sparsity {}{rules}\n",
                count.model, config.distribution, config.sparsity
            )?;
            writeln!(out, "{count}")?;
        }
        Format::Json => {
            #[derive(serde::Serialize)]
            struct Report<'a> {
                #[serde(flatten)]
                count: &'a rigl_models::counter::ModelCount,
                sparsity_config: &'a SparsityConfig,
            }
            let report = Report {
                count: &count,
                sparsity_config: &config,
            };
            serde_json::to_writer_pretty(&mut *out, &report)?;
            writeln!(out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::{CliError, run};
    use serde_json::Value;

    fn output(args: &[&str]) -> Result<String, CliError> {
        let mut out = Vec::new();
        let mut argv = vec!["rigl", "count"];
        argv.extend_from_slice(args);
        run(argv, &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    fn json(args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend_from_slice(&["--format", "json"]);
        serde_json::from_str(&output(&a).unwrap()).unwrap()
    }

    #[test]
    fn resnet50_erk_json_reproduces_the_reference_row() {
        let v = json(&[
            "--model",
            "resnet50",
            "--distribution",
            "erk",
            "--sparsity",
            "0.9",
            "--method",
            "rigl",
            "--delta-t",
            "100",
            "--multiplier",
            "5",
        ]);
        let layers = v["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 54);
        assert_eq!(layers[0]["path"], "conv1.weight");
        assert_eq!(layers[0]["shape"], serde_json::json!([64, 3, 7, 7]));
        for key in ["sparsity", "nnz", "flops", "bits", "kind", "masked"] {
            assert!(!layers[10][key].is_null(), "{key}");
        }
        assert_eq!(layers[53]["path"], "fc.weight");
        let t = &v["totals"];
        let f = |k: &str| t[k].as_f64().unwrap();
        assert_eq!(format!("{:.2}", f("inference_flops_ratio")), "0.24");
        assert_eq!(format!("{:.2}", f("training_flops_ratio")), "1.23");
        assert_eq!(format!("{:.3}", f("size_mb")), "13.499");
        assert_eq!(format!("{:.1e}", f("dense_inference_flops")), "8.2e9");
        assert!(f("inference_flops") > 0.0);
        assert_eq!(v["training"]["multiplier"], 5.0);
        assert_eq!(v["sparsity_config"]["distribution"], "erk");
        // The per-layer counts add up to the totals.
        let sum: f64 = layers.iter().map(|l| l["flops"].as_f64().unwrap()).sum();
        assert!((sum - f("inference_flops")).abs() < 1.0);
    }

    #[test]
    fn uniform_first_layer_dense() {
        let v = json(&[
            "--model",
            "resnet50",
            "--sparsity",
            "0.9",
            "--first-layer-dense",
            "--multiplier",
            "5",
        ]);
        assert_eq!(v["layers"][0]["masked"], false);
        assert_eq!(v["layers"][0]["sparsity"], 0.0);
        assert_eq!(v["layers"][1]["sparsity"], 0.9);
        let t = &v["totals"];
        assert_eq!(format!("{:.3}", t["size_mb"].as_f64().unwrap()), "13.532");
        assert_eq!(
            format!("{:.2}", t["training_flops_ratio"].as_f64().unwrap()),
            "0.66"
        );
    }

    #[test]
    fn every_model_prints_a_table_and_json() {
        for model in ["mlp", "wrn", "resnet50", "mobilenet-v1", "mobilenet-v2"] {
            let table = output(&[
                "--model",
                model,
                "--distribution",
                "erk",
                "--sparsity",
                "0.9",
            ])
            .unwrap();
            assert!(table.contains("inference FLOPs"), "{model}: {table}");
            assert!(table.contains("total"), "{model}");
            let v = json(&[
                "--model",
                model,
                "--distribution",
                "erk",
                "--sparsity",
                "0.9",
            ]);
            assert!(v["layers"].as_array().unwrap().len() >= 3, "{model}");
            let s = v["totals"]["sparsity"].as_f64().unwrap();
            assert!((s - 0.9).abs() < 0.01, "{model}: {s}");
        }
    }

    #[test]
    fn mnist_reference_setup() {
        let v = json(&[
            "--model",
            "mlp",
            "--sparsity",
            "0.98",
            "--custom",
            "fc2=0.882",
            "--last-layer-dense",
        ]);
        let nnz: Vec<u64> = v["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["nnz"].as_u64().unwrap())
            .collect();
        assert_eq!(nnz, [4704, 3540, 1000]);
    }

    #[test]
    fn structured_counts_use_index_bits() {
        let bits = |structure: &str| {
            let v = json(&[
                "--model",
                "mlp",
                "--structure",
                structure,
                "--last-layer-dense",
            ]);
            let layers = v["layers"].as_array().unwrap().clone();
            let nnz: Vec<u64> = layers.iter().map(|l| l["nnz"].as_u64().unwrap()).collect();
            let bits: Vec<f64> = layers.iter().map(|l| l["bits"].as_f64().unwrap()).collect();
            (nnz, bits)
        };
        // 1:4 implies sparsity 0.75; two index bits per kept weight.
        let (nnz, b) = bits("1:4");
        assert_eq!(nnz, [58_800, 7_500, 1_000]);
        assert_eq!(b[0], 58_800.0 * 32.0 + 300.0 * 32.0 + 117_600.0);
        // 2:4: the same bits as a 1-bit mask.
        let (nnz, b) = bits("2:4");
        assert_eq!(nnz, [117_600, 15_000, 1_000]);
        assert_eq!(b[1], 15_000.0 * 32.0 + 100.0 * 32.0 + 30_000.0);
        let err = output(&["--model", "mlp", "--structure", "2:4", "--sparsity", "0.9"]);
        assert!(err.is_err(), "2:4 at sparsity 0.9 is refused");
    }

    #[test]
    fn model_options() {
        let v = json(&[
            "--model",
            "wrn",
            "--depth",
            "16",
            "--width",
            "4",
            "--num-classes",
            "100",
        ]);
        assert_eq!(v["model"], "wrn-16-4");
        assert_eq!(
            v["layers"].as_array().unwrap().last().unwrap()["shape"],
            serde_json::json!([256, 100])
        );
        let v = json(&[
            "--model",
            "mobilenet-v1",
            "--width",
            "0.5",
            "--input-size",
            "128",
        ]);
        assert_eq!(v["layers"][0]["shape"], serde_json::json!([16, 3, 3, 3]));
        let v = json(&["--model", "resnet50", "--spatial", "actual"]);
        assert_eq!(v["layers"][0]["output_size"], serde_json::json!([112, 112]));
        let err = output(&["--model", "resnet50", "--width", "2"]).unwrap_err();
        assert!(matches!(err, CliError::Model(_)), "{err:?}");
        assert!(
            err.to_string()
                .contains("`width` does not apply to resnet50")
        );
        let err = output(&["--model", "wrn", "--width", "1.5"]).unwrap_err();
        assert!(matches!(err, CliError::Model(_)), "{err:?}");
        assert!(err.to_string().contains("positive integer"), "{err}");
        assert!(matches!(
            output(&["--model", "wrn", "--depth", "20"]),
            Err(CliError::Model(_))
        ));
    }

    #[test]
    fn bad_arguments_are_errors() {
        let err = output(&["--model", "resnet50", "--sparsity", "1.5"]).unwrap_err();
        assert!(matches!(err, CliError::Sparsity(_)), "{err:?}");
        assert!(err.to_string().contains("1.5"), "{err}");
        let err = output(&["--model", "vgg16"]).unwrap_err();
        assert!(matches!(err, CliError::Usage(_)), "{err:?}");
        assert!(err.to_string().contains("vgg16"), "{err}");
        assert!(matches!(
            output(&["--model", "mlp", "--distribution", "lottery"]),
            Err(CliError::Usage(_))
        ));
        assert!(matches!(
            output(&["--model", "mlp", "--custom", "fc2"]),
            Err(CliError::Usage(_))
        ));
        assert!(matches!(
            output(&["--model", "mlp", "--custom", "fc9=0.5"]),
            Err(CliError::Model(_))
        ));
        assert!(matches!(
            output(&["--model", "mlp", "--delta-t", "0"]),
            Err(CliError::Model(_))
        ));
        assert!(matches!(
            output(&["--sparsity", "0.5"]),
            Err(CliError::Usage(_))
        ));
    }

    #[test]
    fn gradual_pruning_from_the_cli() {
        let v = json(&[
            "--model",
            "resnet50",
            "--sparsity",
            "0.8",
            "--first-layer-dense",
            "--method",
            "prune",
            "--delta-t",
            "1000",
        ]);
        let r = v["totals"]["training_flops_ratio"].as_f64().unwrap();
        // Dense for 10k of 32k steps, sparse after: between the sparse and the dense cost.
        let inf = v["totals"]["inference_flops_ratio"].as_f64().unwrap();
        assert!(r > inf && r < 1.0, "{r}");
    }
}
