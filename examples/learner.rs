//! Dynamic sparse training with burn-train's `Learner`: RigL at 95% sparsity on the
//! three-spirals task.
//!
//! Run with `cargo run --release --features learner --example learner`.
//!
//! The model implements burn-train's `TrainStep` and `InferenceStep` as usual;
//! `SparseLearnerModel` wraps it and runs the mask updates from `TrainStep::optimize`.

mod common;

use burn::data::dataloader::DataLoaderBuilder;
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::InMemDataset;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::SgdConfig;
use burn::optim::momentum::MomentumConfig;
use burn::tensor::{Device, Int, Tensor, TensorData};
use burn::train::metric::{AccuracyMetric, LossMetric};
use burn::train::{
    ClassificationOutput, InferenceStep, Learner, SupervisedTraining, TrainOutput, TrainStep,
};
use common::{Mlp, spiral_points, spirals};
use rigl_burn::core::learner::SparseLearnerModel;
use rigl_burn::core::{DstConfig, Method, Sparsify, SparsityConfig};

#[derive(Clone, Debug)]
struct Point {
    x: [f32; 2],
    y: i64,
}

/// A batch of points and their classes.
#[derive(Clone, Debug)]
pub struct PointBatch {
    x: Tensor<2>,
    y: Tensor<1, Int>,
}

#[derive(Clone)]
struct PointBatcher;

impl Batcher<Point, PointBatch> for PointBatcher {
    fn batch(&self, items: Vec<Point>, device: &Device) -> PointBatch {
        let n = items.len();
        let x: Vec<f32> = items.iter().flat_map(|p| p.x).collect();
        let y: Vec<i64> = items.iter().map(|p| p.y).collect();
        PointBatch {
            x: Tensor::from_data(TensorData::new(x, [n, 2]), device),
            y: Tensor::from_data(TensorData::new(y, [n]), device),
        }
    }
}

impl Mlp {
    fn classify(&self, batch: PointBatch) -> ClassificationOutput {
        let output = self.forward(batch.x);
        let loss = CrossEntropyLossConfig::new()
            .init(&output.device())
            .forward(output.clone(), batch.y.clone());
        ClassificationOutput {
            loss,
            output,
            targets: batch.y,
        }
    }
}

impl TrainStep for Mlp {
    type Input = PointBatch;
    type Output = ClassificationOutput;

    fn step(&self, batch: PointBatch) -> TrainOutput<ClassificationOutput> {
        let item = self.classify(batch);
        TrainOutput::new(self, item.loss.backward(), item)
    }
}

impl InferenceStep for Mlp {
    type Input = PointBatch;
    type Output = ClassificationOutput;

    fn step(&self, batch: PointBatch) -> ClassificationOutput {
        self.classify(batch)
    }
}

fn points(n: usize) -> Vec<Point> {
    spiral_points(n)
        .into_iter()
        .map(|(x, y)| Point { x, y })
        .collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let device = Device::default().autodiff();
    let sparsity = SparsityConfig::erk(0.95).first_layer_dense().with_seed(3);
    let dst = DstConfig::new(Method::Rigl)
        .with_frequency(40)
        .with_end_step(600);
    let model = SparseLearnerModel::init(Mlp::new(&device), &sparsity, dst)?;
    let active = model.model.sparsity_report().nnz;

    let train = DataLoaderBuilder::new(PointBatcher)
        .batch_size(50)
        .shuffle(11)
        .build(InMemDataset::new(points(1000)));
    let valid = DataLoaderBuilder::new(PointBatcher)
        .batch_size(500)
        .build(InMemDataset::new(points(300)));
    let dir = std::env::temp_dir().join(format!("rigl-learner-example-{}", std::process::id()));
    let optim = SgdConfig::new()
        .with_momentum(Some(
            MomentumConfig::new()
                .with_nesterov(true)
                .with_dampening(0.0),
        ))
        .init();
    let result = SupervisedTraining::new(&dir, train, valid)
        .metric_train_numeric(LossMetric::new())
        .metric_valid_numeric(AccuracyMetric::new())
        .num_epochs(10)
        .launch(Learner::new(model, optim, 0.1));
    let _ = std::fs::remove_dir_all(&dir);
    if let Some(e) = result.error {
        return Err(format!("training failed: {e:?}").into());
    }
    let model = result.model;
    if let Some(e) = model.error() {
        return Err(format!("sparse training stopped: {e}").into());
    }
    let updates = model.updates();
    println!(
        "{} optimizer steps, {} mask updates (last at step {})",
        model.step_count(),
        updates.len(),
        updates.last().map(|u| u.step).unwrap_or(-1)
    );
    let (x, y) = spirals(300, &device);
    let net = model.into_inner();
    println!("validation accuracy {:.3}", net.accuracy(x, y));
    let report = net.sparsity_report();
    println!("{report}");
    assert_eq!(
        report.nnz, active,
        "the number of active weights is conserved"
    );
    Ok(())
}
