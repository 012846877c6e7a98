//! A linear layer that computes on its active weights only.

use super::execution::{SparseExecution, warn_once};
use super::pattern_cache::PatternCache;
use crate::mask::{GradientMode, SparseMask};
use burn::config::Config;
use burn::module::{Content, DisplaySettings, Module, ModuleDisplay, Param};
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::Tensor;
use burn::tensor::module::linear;
use burn::tensor::{Device, Shape};

/// Configuration of a [`SparseLinear`]: [`LinearConfig`]'s fields (row layout) and the
/// execution policy.
#[derive(Config, Debug)]
pub struct SparseLinearConfig {
    /// The size of the input features.
    pub d_input: usize,
    /// The size of the output features.
    pub d_output: usize,
    /// If a bias should be applied during the linear transformation.
    #[config(default = true)]
    pub bias: bool,
    /// The type of function used to initialize neural network parameters (that of
    /// [`LinearConfig`]).
    #[config(default = "Initializer::KaimingUniform{gain:1.0/3.0f64.sqrt(), fan_out_only:false}")]
    pub initializer: Initializer,
    /// When the layer runs its sparse kernels.
    #[config(default = "SparseExecution::default()")]
    pub execution: SparseExecution,
}

/// A drop-in replacement for Burn's [`Linear`] (row layout, weight `[d_input, d_output]`) that,
/// with a [`SparseMask`] attached, computes the forward, the input gradient and the weight
/// gradient on the active weights only.
///
/// It runs the sparse kernels ([`rigl_kernels::sparse_linear`]) when the mask is in
/// [`GradientMode::Masked`], the policy ([`SparseExecution`]) says so for the mask's density and
/// the backend has kernels (the CPU and CubeCL backends, `f32`); otherwise it computes exactly as
/// [`Linear`] does on the masked weight. Falling back for a reason other than the policy is
/// logged once (warn level). The gradient of the stored weight is zero at inactive positions
/// in both paths. Its record is [`Linear`]'s (`weight`, `bias`, and the mask at
/// `weight.sparse_mask.mask`), so burn-nn records load and vice versa.
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use rigl_core::nn::SparseLinearConfig;
/// use rigl_core::{Sparsify, SparsityConfig};
///
/// let device = Device::default();
/// let layer = SparseLinearConfig::new(64, 32).init(&device);
/// let layer = layer.sparsify(SparsityConfig::uniform(0.9))?;
/// let y = layer.forward(Tensor::<2>::ones([8, 64], &device));
/// assert_eq!(y.dims(), [8, 32]);
/// assert!(layer.runs_sparse());
/// # Ok::<(), rigl_core::SparsityError>(())
/// ```
#[derive(Module, Debug)]
#[module(custom_display)]
pub struct SparseLinear {
    /// Matrix of shape `[d_input, d_output]`, as [`Linear::weight`].
    pub weight: Param<Tensor<2>>,
    /// Vector of size `d_output`, as [`Linear::bias`].
    pub bias: Option<Param<Tensor<1>>>,
    /// When the layer runs sparse.
    #[module(skip)]
    pub execution: SparseExecution,
    /// The pattern of the mask the layer last ran with.
    #[module(skip)]
    pub pattern: PatternCache,
}

impl SparseLinearConfig {
    /// Build the layer, initialised as [`LinearConfig::init`] would.
    ///
    /// # Panics
    /// When the execution policy's threshold is outside `[0, 1]`
    /// ([`SparseExecution::validate`]).
    pub fn init(&self, device: &Device) -> SparseLinear {
        if let Err(e) = self.execution.validate() {
            panic!("{e}");
        }
        let linear = LinearConfig::new(self.d_input, self.d_output)
            .with_bias(self.bias)
            .with_initializer(self.initializer.clone())
            .init(device);
        SparseLinear::from_linear(linear, self.execution)
    }
}

impl SparseLinear {
    /// A sparse-aware layer with the parameters (and any attached mask) of `linear`, which must
    /// use the row layout (`[d_input, d_output]`, Burn's default).
    pub fn from_linear(linear: Linear, execution: SparseExecution) -> Self {
        Self {
            weight: linear.weight,
            bias: linear.bias,
            execution,
            pattern: PatternCache::default(),
        }
    }

    /// The plain Burn layer with the same parameters and mask.
    pub fn into_linear(self) -> Linear {
        Linear {
            weight: self.weight,
            bias: self.bias,
        }
    }

    /// The layer with another execution policy.
    pub fn with_execution(mut self, execution: SparseExecution) -> Self {
        self.execution = execution;
        self
    }

    /// Whether the next forward runs the sparse kernels (builds the mask's pattern if it is not
    /// cached).
    pub fn runs_sparse(&self) -> bool {
        self.sparse_plan().is_some()
    }

    fn sparse_plan(&self) -> Option<std::sync::Arc<rigl_kernels::SparsePattern>> {
        let mask = self.weight.reparameterization::<SparseMask>()?;
        if mask.gradient_mode() == GradientMode::Dense
            || self.execution.mode == super::Execution::Dense
        {
            return None;
        }
        let [rows, cols] = self.weight.shape().dims();
        let device = self.weight.lazy_device();
        if let Err(e) = rigl_kernels::sparse_linear_support(&device, self.weight.dtype()) {
            warn_once(format!(
                "sparse linear layers run the masked dense path: {e}"
            ));
            return None;
        }
        let pattern = match self.pattern.pattern(mask, rows, cols) {
            Ok(p) => p,
            Err(e) => {
                warn_once(format!(
                    "a sparse linear layer runs the masked dense path: {e}"
                ));
                return None;
            }
        };
        self.execution
            .linear_runs_sparse(pattern.density())
            .then_some(pattern)
    }

    /// Applies the layer: `y = x W + b`, over the active weights when it runs sparse.
    ///
    /// # Shapes
    /// - input: `[..., d_input]`
    /// - output: `[..., d_output]`
    ///
    /// # Panics
    /// When the input's last dimension is not `d_input` (as [`Linear::forward`]).
    pub fn forward<const D: usize>(&self, input: Tensor<D>) -> Tensor<D> {
        let [d_input, d_output] = self.weight.shape().dims();
        burn::tensor::assert_shape!(input, [.., d_input]);
        let bias = self.bias.as_ref().map(|b| b.val());
        let Some(pattern) = self.sparse_plan() else {
            return linear(input, self.weight.val(), bias);
        };
        let dims = input.dims();
        let batch: usize = dims[..D - 1].iter().product();
        let x = input.clone().reshape([batch, d_input]);
        match rigl_kernels::sparse_linear(x, self.weight.base(), &pattern) {
            Ok(y) => {
                let y = match bias {
                    Some(b) => y + b.unsqueeze(),
                    None => y,
                };
                let mut out = dims;
                out[D - 1] = d_output;
                y.reshape(Shape::from(out))
            }
            Err(e) => {
                warn_once(format!(
                    "a sparse linear layer runs the masked dense path: {e}"
                ));
                linear(
                    input,
                    self.weight.val(),
                    self.bias.as_ref().map(|b| b.val()),
                )
            }
        }
    }
}

impl ModuleDisplay for SparseLinear {
    fn custom_settings(&self) -> Option<DisplaySettings> {
        DisplaySettings::new()
            .with_new_line_after_attribute(false)
            .optional()
    }

    fn custom_content(&self, content: Content) -> Option<Content> {
        let [d_input, d_output] = self.weight.shape().dims();
        content
            .add("d_input", &d_input)
            .add("d_output", &d_output)
            .add("bias", &self.bias.is_some())
            .add("execution", &self.execution.mode.name().to_string())
            .optional()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::Execution;
    use crate::{Sparsify, SparsityConfig, floats_to_host};
    use burn::tensor::TensorData;

    fn inputs(n: usize, seed: u64, _device: &Device) -> Vec<f32> {
        // A multiplicative congruential sequence: deterministic values in [-1, 1).
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
            })
            .collect()
    }

    /// Forward and gradients of `layer` on `x` (rank 3 when `seq`), with the sparse path on or
    /// off: output, input gradient, weight gradient, bias gradient.
    fn run(layer: &SparseLinear, x: &[f32], shape: &[usize], device: &Device) -> [Vec<f32>; 4] {
        let x = Tensor::<3>::from_data(TensorData::new(x.to_vec(), shape.to_vec()), device)
            .require_grad();
        let y = layer.forward(x.clone());
        // A loss whose gradient differs per output element.
        let w = Tensor::<3>::from_data(
            TensorData::new(inputs(y.shape().num_elements(), 9, device), y.shape()),
            device,
        );
        let grads = (y.clone() * w).sum().backward();
        let gw = layer
            .weight
            .grad(&grads)
            .map(floats_flat)
            .unwrap_or_default();
        let gb = layer
            .bias
            .as_ref()
            .and_then(|b| b.grad(&grads))
            .map(floats_host1)
            .unwrap_or_default();
        [floats_flat(y), floats_flat(x.grad(&grads).unwrap()), gw, gb]
    }

    fn floats_flat<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        floats_to_host(t.reshape([-1]))
    }

    fn floats_host1(t: Tensor<1>) -> Vec<f32> {
        floats_to_host(t)
    }

    fn close(a: &[f32], b: &[f32], tol: f32, what: &str) {
        assert_eq!(a.len(), b.len(), "{what}");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= tol * (1.0 + y.abs()),
                "{what}[{i}]: {x} vs {y}"
            );
        }
    }

    #[test]
    fn sparse_path_equals_the_masked_dense_path() {
        let device = Device::flex().autodiff();
        // Odd sizes, batch 1, densities from empty to full.
        for (d_in, d_out, shape) in [
            (7, 5, [1, 1, 7]),
            (33, 65, [2, 3, 33]),
            (100, 10, [4, 25, 100]),
        ] {
            for sparsity in [0.0, 0.5, 0.9, 0.98, 1.0] {
                let config = if sparsity == 1.0 {
                    SparsityConfig::uniform(0.0).with_custom_sparsity("weight", 1.0)
                } else {
                    SparsityConfig::uniform(sparsity)
                };
                let sparse = SparseLinearConfig::new(d_in, d_out)
                    .with_execution(SparseExecution::new(Execution::Sparse))
                    .init(&device)
                    .sparsify(&config)
                    .unwrap();
                assert!(sparse.runs_sparse(), "{d_in}x{d_out} at {sparsity}");
                let dense = sparse
                    .clone()
                    .with_execution(SparseExecution::new(Execution::Dense));
                assert!(!dense.runs_sparse());
                let x = inputs(shape.iter().product(), 3, &device);
                let got = run(&sparse, &x, &shape, &device);
                let want = run(&dense, &x, &shape, &device);
                let what = format!("{d_in}x{d_out} batch {shape:?} sparsity {sparsity}");
                for (k, name) in ["output", "input grad", "weight grad", "bias grad"]
                    .iter()
                    .enumerate()
                {
                    close(&got[k], &want[k], 1e-5, &format!("{name} of {what}"));
                }
                // The weight gradient is exactly zero at inactive positions.
                let mask = crate::bools_to_host(sparse.mask("weight").unwrap());
                for (g, m) in got[2].iter().zip(&mask) {
                    assert!(*m || g.to_bits() == 0, "{what}");
                }
            }
        }
    }

    #[test]
    fn dense_gradient_mode_and_policy_take_the_masked_path() {
        let device = Device::flex().autodiff();
        let layer = SparseLinearConfig::new(20, 30)
            .init(&device)
            .sparsify(SparsityConfig::uniform(0.9))
            .unwrap();
        // Auto at 10% density with the default threshold 0.3: sparse.
        assert!(layer.runs_sparse());
        assert!(
            !layer
                .clone()
                .with_gradient_mode(GradientMode::Dense)
                .runs_sparse()
        );
        let strict = SparseExecution::default().with_linear_max_density(0.05);
        assert!(!layer.clone().with_execution(strict).runs_sparse());
        // Without a mask: Burn's Linear.
        assert!(!SparseLinearConfig::new(20, 30).init(&device).runs_sparse());
        // The dense gradient in dense mode reaches inactive positions.
        let dense = layer.with_gradient_mode(GradientMode::Dense);
        let x = Tensor::<2>::ones([2, 20], &device);
        let grads = dense.forward(x).sum().backward();
        let g = floats_flat(dense.weight.grad(&grads).unwrap());
        let mask = crate::bools_to_host(dense.mask("weight").unwrap());
        assert!(g.iter().zip(&mask).any(|(g, m)| !m && *g != 0.0));
    }

    #[test]
    fn burn_linear_records_load_both_ways() {
        let device = Device::flex();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("linear.bpk");
        let linear = LinearConfig::new(12, 6)
            .init(&device)
            .sparsify(SparsityConfig::uniform(0.75))
            .unwrap();
        linear.save_sparse(&path).unwrap();
        let sparse = SparseLinearConfig::new(12, 6)
            .init(&device)
            .load_sparse(&path)
            .unwrap();
        assert_eq!(
            floats_flat(sparse.weight.val()),
            floats_flat(linear.weight.val())
        );
        assert_eq!(
            crate::bools_to_host(sparse.mask("weight").unwrap()),
            crate::bools_to_host(linear.mask("weight").unwrap())
        );
        let back_path = dir.path().join("sparse.bpk");
        sparse.save_sparse(&back_path).unwrap();
        let back = LinearConfig::new(12, 6)
            .init(&device)
            .load_sparse(&back_path)
            .unwrap();
        assert_eq!(
            floats_flat(back.weight.val()),
            floats_flat(linear.weight.val())
        );
        let x = Tensor::<2>::ones([3, 12], &device);
        close(
            &floats_flat(sparse.forward(x.clone())),
            &floats_flat(linear.forward(x)),
            1e-6,
            "forward",
        );
    }

    #[test]
    #[should_panic(expected = "outside [0, 1]")]
    fn an_invalid_threshold_panics_at_init() {
        SparseLinearConfig::new(2, 2)
            .with_execution(SparseExecution::default().with_linear_max_density(1.5))
            .init(&Device::flex());
    }
}
