//! The MNIST multilayer perceptron of the reference (784-300-100-10, ReLU).

use crate::error::{ModelError, Result};
use crate::spec::{LayerSpec, SparseArchitecture};
use burn::config::Config;
use burn::module::Module;
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use rigl_core::nn::{SparseExecution, SparseLinear, SparseLinearConfig};

/// Configuration of the [`Mlp`]: `d_input - d_hidden1 - d_hidden2 - num_classes`.
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use rigl_models::MlpConfig;
/// let device = Device::default();
/// let mlp = MlpConfig::new().init(&device);
/// let logits = mlp.forward(Tensor::<2>::zeros([8, 784], &device));
/// assert_eq!(logits.dims(), [8, 10]);
/// ```
#[derive(Config, Debug, PartialEq)]
pub struct MlpConfig {
    /// Input features (784 for 28x28 images).
    #[config(default = 784)]
    pub d_input: usize,
    /// Width of the first hidden layer.
    #[config(default = 300)]
    pub d_hidden1: usize,
    /// Width of the second hidden layer.
    #[config(default = 100)]
    pub d_hidden2: usize,
    /// Number of classes.
    #[config(default = 10)]
    pub num_classes: usize,
    /// When the layers run their sparse kernels (see [`SparseLinear`]).
    #[config(default = "SparseExecution::default()")]
    pub execution: SparseExecution,
}

/// Three fully connected layers with ReLU between them; sparse-aware ([`SparseLinear`]), with
/// the records of Burn's `Linear`.
#[derive(Module, Debug)]
pub struct Mlp {
    /// Input to first hidden layer.
    pub fc1: SparseLinear,
    /// First to second hidden layer.
    pub fc2: SparseLinear,
    /// Second hidden layer to logits.
    pub fc3: SparseLinear,
}

impl MlpConfig {
    /// Check the configuration.
    ///
    /// # Errors
    /// [`ModelError::InvalidConfig`] when a width is zero or the execution policy's threshold
    /// is outside `[0, 1]`.
    pub fn validate(&self) -> Result<()> {
        if let Err(e) = self.execution.validate() {
            return Err(ModelError::InvalidConfig {
                model: "mlp",
                reason: e.to_string(),
            });
        }
        if [
            self.d_input,
            self.d_hidden1,
            self.d_hidden2,
            self.num_classes,
        ]
        .contains(&0)
        {
            return Err(ModelError::InvalidConfig {
                model: "mlp",
                reason: "every layer width must be positive".into(),
            });
        }
        Ok(())
    }

    /// Build the network (initialised as with Burn's `LinearConfig`).
    ///
    /// # Panics
    /// When the execution policy's threshold is outside `[0, 1]`.
    pub fn init(&self, device: &Device) -> Mlp {
        let layer = |d_in, d_out| {
            SparseLinearConfig::new(d_in, d_out)
                .with_execution(self.execution)
                .init(device)
        };
        Mlp {
            fc1: layer(self.d_input, self.d_hidden1),
            fc2: layer(self.d_hidden1, self.d_hidden2),
            fc3: layer(self.d_hidden2, self.num_classes),
        }
    }
}

impl SparseArchitecture for MlpConfig {
    fn arch_name(&self) -> String {
        format!(
            "mlp-{}-{}-{}-{}",
            self.d_input, self.d_hidden1, self.d_hidden2, self.num_classes
        )
    }

    fn layer_specs(&self) -> Result<Vec<LayerSpec>> {
        self.validate()?;
        Ok(vec![
            LayerSpec::dense("fc1.weight", self.d_input, self.d_hidden1),
            LayerSpec::dense("fc2.weight", self.d_hidden1, self.d_hidden2),
            LayerSpec::dense("fc3.weight", self.d_hidden2, self.num_classes),
        ])
    }
}

impl Mlp {
    /// The network with another execution policy on every layer.
    pub fn with_execution(self, execution: SparseExecution) -> Self {
        Self {
            fc1: self.fc1.with_execution(execution),
            fc2: self.fc2.with_execution(execution),
            fc3: self.fc3.with_execution(execution),
        }
    }

    /// Logits for a batch of flattened inputs.
    ///
    /// # Shapes
    /// - input: `[batch, d_input]`
    /// - output: `[batch, num_classes]`
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let x = relu(self.fc1.forward(x));
        let x = relu(self.fc2.forward(x));
        self.fc3.forward(x)
    }

    /// Logits for a batch of images, flattened first.
    ///
    /// # Shapes
    /// - input: `[batch, channels, height, width]` with `channels * height * width == d_input`
    /// - output: `[batch, num_classes]`
    pub fn forward_images(&self, x: Tensor<4>) -> Tensor<2> {
        self.forward(x.flatten::<2>(1, 3))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::sparse_forward_backward;
    use rigl_core::{Sparsify, SparsityConfig};

    #[test]
    fn forward_shapes() {
        let device = Device::default();
        let mlp = MlpConfig::new().init(&device);
        assert_eq!(
            mlp.forward(Tensor::<2>::zeros([3, 784], &device)).dims(),
            [3, 10]
        );
        assert_eq!(
            mlp.forward_images(Tensor::<4>::zeros([2, 1, 28, 28], &device))
                .dims(),
            [2, 10]
        );
    }

    /// The reference MNIST set-up: 98% uniform, layer 2 at 0.882, output layer dense.
    #[test]
    fn reference_mask_counts() {
        let config = SparsityConfig::uniform(0.98)
            .with_custom_sparsity("fc2", 0.882)
            .last_layer_dense();
        let plan = MlpConfig::new().sparsity_plan(&config).unwrap();
        let active: Vec<_> = plan.layers.iter().map(|l| l.n_active).collect();
        assert_eq!(active, [4704, 3540, 1000]);
        // The same counts on a real model's masks.
        let device = Device::default();
        let mlp = MlpConfig::new().init(&device).sparsify(&config).unwrap();
        let report = mlp.sparsity_report();
        let nnz: Vec<_> = report.layers.iter().map(|l| l.nnz).collect();
        assert_eq!(nnz, [4704, 3540, 1000]);
        assert_eq!((report.nnz, report.numel), (9244, 266_200));
    }

    #[test]
    fn invalid_config_is_an_error() {
        assert!(matches!(
            MlpConfig::new().with_d_hidden1(0).layer_specs(),
            Err(ModelError::InvalidConfig { .. })
        ));
    }

    #[test]
    fn sparse_forward_and_backward_at_90_percent_erk() {
        let config = MlpConfig::new();
        sparse_forward_backward(&config, |d| config.init(d), [4, 784], |m, x| m.forward(x));
    }
}
