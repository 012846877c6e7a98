//! A 2-D convolution that computes on its active weights only.

use super::execution::{SparseExecution, warn_once};
use super::pattern_cache::PatternCache;
use crate::mask::{GradientMode, SparseMask};
use burn::config::Config;
use burn::module::{Content, DisplaySettings, Module, ModuleDisplay, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, PaddingConfig2d};
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Tensor};
use std::sync::Arc;

/// Configuration of a [`SparseConv2d`]: [`Conv2dConfig`]'s fields and the execution policy.
#[derive(Config, Debug)]
pub struct SparseConv2dConfig {
    /// The number of channels `[in, out]`.
    pub channels: [usize; 2],
    /// The size of the kernel.
    pub kernel_size: [usize; 2],
    /// The stride of the convolution.
    #[config(default = "[1, 1]")]
    pub stride: [usize; 2],
    /// Spacing between kernel elements.
    #[config(default = "[1, 1]")]
    pub dilation: [usize; 2],
    /// Controls the connections between input and output channels (sparse kernels need 1).
    #[config(default = "1")]
    pub groups: usize,
    /// The padding configuration.
    #[config(default = "PaddingConfig2d::Valid")]
    pub padding: PaddingConfig2d,
    /// If bias should be added to the output.
    #[config(default = true)]
    pub bias: bool,
    /// The type of function used to initialize neural network parameters (that of
    /// [`Conv2dConfig`]).
    #[config(default = "Initializer::KaimingUniform{gain:1.0/3.0f64.sqrt(), fan_out_only:false}")]
    pub initializer: Initializer,
    /// When the layer runs its sparse kernels.
    #[config(default = "SparseExecution::default()")]
    pub execution: SparseExecution,
}

/// A drop-in replacement for Burn's [`Conv2d`] that, with a [`SparseMask`] attached, computes
/// the forward, the input gradient and the weight gradient on the active weights only.
///
/// It runs the direct sparse convolution ([`rigl_kernels::sparse_conv2d`]) when the mask is in
/// [`GradientMode::Masked`], the policy ([`SparseExecution::conv_runs_sparse`]) says so for
/// the mask's density, the convolution is not grouped and the backend has kernels (the CPU
/// and CubeCL backends, `f32`); otherwise it computes exactly as [`Conv2d`] does on the masked
/// weight.
/// Falling back for a reason other than the policy is logged once (warn level). The gradient
/// of the stored weight is zero at inactive positions in both paths. Its record is
/// [`Conv2d`]'s, so burn-nn records load and vice versa.
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use burn::nn::PaddingConfig2d;
/// use rigl_core::nn::SparseConv2dConfig;
/// use rigl_core::{Sparsify, SparsityConfig};
///
/// let device = Device::default();
/// let conv = SparseConv2dConfig::new([8, 16], [3, 3])
///     .with_padding(PaddingConfig2d::Same)
///     .init(&device)
///     .sparsify(SparsityConfig::uniform(0.9))?;
/// let y = conv.forward(Tensor::<4>::ones([2, 8, 10, 10], &device));
/// assert_eq!(y.dims(), [2, 16, 10, 10]);
/// assert!(conv.runs_sparse([10, 10]));
/// # Ok::<(), rigl_core::SparsityError>(())
/// ```
#[derive(Module, Debug)]
#[module(custom_display)]
pub struct SparseConv2d {
    /// Tensor of shape `[channels_out, channels_in / groups, kernel_size_1, kernel_size_2]`.
    pub weight: Param<Tensor<4>>,
    /// Tensor of shape `[channels_out]`.
    pub bias: Option<Param<Tensor<1>>>,
    /// Stride of the convolution.
    pub stride: [usize; 2],
    /// Size of the kernel.
    pub kernel_size: [usize; 2],
    /// Spacing between kernel elements.
    pub dilation: [usize; 2],
    /// Controls the connections between input and output channels.
    pub groups: usize,
    /// Padding configuration.
    #[module(skip)]
    pub padding: PaddingConfig2d,
    /// When the layer runs sparse.
    #[module(skip)]
    pub execution: SparseExecution,
    /// The pattern of the mask the layer last ran with.
    #[module(skip)]
    pub pattern: PatternCache,
}

impl SparseConv2dConfig {
    /// Build the layer, initialised as [`Conv2dConfig::init`] would.
    ///
    /// # Panics
    /// When the channels are not divisible by the groups (as [`Conv2dConfig::init`]) or the
    /// execution policy's thresholds are outside `[0, 1]` ([`SparseExecution::validate`]).
    pub fn init(&self, device: &Device) -> SparseConv2d {
        if let Err(e) = self.execution.validate() {
            panic!("{e}");
        }
        let conv = Conv2dConfig::new(self.channels, self.kernel_size)
            .with_stride(self.stride)
            .with_dilation(self.dilation)
            .with_groups(self.groups)
            .with_padding(self.padding.clone())
            .with_bias(self.bias)
            .with_initializer(self.initializer.clone())
            .init(device);
        SparseConv2d::from_conv2d(conv, self.execution)
    }
}

impl SparseConv2d {
    /// A sparse-aware layer with the parameters (and any attached mask) of `conv`.
    pub fn from_conv2d(conv: Conv2d, execution: SparseExecution) -> Self {
        Self {
            weight: conv.weight,
            bias: conv.bias,
            stride: conv.stride,
            kernel_size: conv.kernel_size,
            dilation: conv.dilation,
            groups: conv.groups,
            padding: conv.padding,
            execution,
            pattern: PatternCache::default(),
        }
    }

    /// The plain Burn layer with the same parameters and mask.
    pub fn into_conv2d(self) -> Conv2d {
        Conv2d {
            weight: self.weight,
            bias: self.bias,
            stride: self.stride,
            kernel_size: self.kernel_size,
            dilation: self.dilation,
            groups: self.groups,
            padding: self.padding,
        }
    }

    /// The layer with another execution policy.
    pub fn with_execution(mut self, execution: SparseExecution) -> Self {
        self.execution = execution;
        self
    }

    /// Whether a forward on an input of `[height, width]` runs the sparse kernels (builds the
    /// mask's pattern if it is not cached).
    pub fn runs_sparse(&self, input: [usize; 2]) -> bool {
        let [_, cin, _, _] = self.weight.shape().dims();
        let options = self.options(input);
        self.sparse_plan(&options, [1, cin * self.groups, input[0], input[1]])
            .is_some()
    }

    fn options(&self, [height, width]: [usize; 2]) -> ConvOptions<2> {
        let ((top, bottom), (left, right)) = padding_pairs(
            &self.padding,
            [height, width],
            self.kernel_size,
            self.stride,
        );
        ConvOptions::new_with_padding(
            self.stride,
            [(top, bottom), (left, right)],
            self.dilation,
            self.groups,
        )
    }

    fn sparse_plan(
        &self,
        options: &ConvOptions<2>,
        input: [usize; 4],
    ) -> Option<Arc<rigl_kernels::SparsePattern>> {
        let mask = self.weight.reparameterization::<SparseMask>()?;
        if mask.gradient_mode() == GradientMode::Dense
            || self.execution.mode == super::Execution::Dense
        {
            return None;
        }
        let dims: [usize; 4] = self.weight.shape().dims();
        let geometry = rigl_kernels::Conv2dGeometry::new(
            input,
            dims,
            options.stride,
            options.padding,
            options.dilation,
            options.groups,
        )
        .and_then(|_| {
            rigl_kernels::sparse_conv2d_support(&self.weight.lazy_device(), self.weight.dtype())
        });
        if let Err(e) = geometry {
            warn_once(format!(
                "sparse convolutions run the masked dense path: {e}"
            ));
            return None;
        }
        let pattern = match self
            .pattern
            .pattern(mask, dims[0], dims[1] * dims[2] * dims[3])
        {
            Ok(p) => p,
            Err(e) => {
                warn_once(format!(
                    "a sparse convolution runs the masked dense path: {e}"
                ));
                return None;
            }
        };
        self.execution
            .conv_runs_sparse(pattern.density())
            .then_some(pattern)
    }

    /// Applies the convolution, over the active weights when it runs sparse.
    ///
    /// # Shapes
    /// - input: `[batch_size, channels_in, height_in, width_in]`
    /// - output: `[batch_size, channels_out, height_out, width_out]`
    ///
    /// # Panics
    /// When the input does not fit the layer (as [`Conv2d::forward`]).
    pub fn forward(&self, input: Tensor<4>) -> Tensor<4> {
        let [_, _, height, width] = input.dims();
        let options = self.options([height, width]);
        let bias = self.bias.as_ref().map(|b| b.val());
        let Some(pattern) = self.sparse_plan(&options, input.dims()) else {
            return conv2d(input, self.weight.val(), bias, options);
        };
        match rigl_kernels::sparse_conv2d(input.clone(), self.weight.base(), &pattern, &options) {
            Ok(y) => match bias {
                Some(b) => {
                    let [channels] = b.dims();
                    y + b.reshape([1, channels, 1, 1])
                }
                None => y,
            },
            Err(e) => {
                warn_once(format!(
                    "a sparse convolution runs the masked dense path: {e}"
                ));
                conv2d(input, self.weight.val(), bias, options)
            }
        }
    }
}

/// The `(begin, end)` padding of each dimension, as [`Conv2d::forward`] computes it (Burn's
/// `Same` rounds the output up and puts the odd pixel at the end; it ignores the dilation).
fn padding_pairs(
    padding: &PaddingConfig2d,
    input: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
) -> ((usize, usize), (usize, usize)) {
    let same = |d: usize| {
        let out = input[d].div_ceil(stride[d]);
        let total = if out > 0 {
            ((out - 1) * stride[d] + kernel[d]).saturating_sub(input[d])
        } else {
            0
        };
        (total / 2, total - total / 2)
    };
    match padding {
        PaddingConfig2d::Valid => ((0, 0), (0, 0)),
        PaddingConfig2d::Same => (same(0), same(1)),
        PaddingConfig2d::Explicit(top, left, bottom, right) => ((*top, *bottom), (*left, *right)),
    }
}

impl ModuleDisplay for SparseConv2d {
    fn custom_settings(&self) -> Option<DisplaySettings> {
        DisplaySettings::new()
            .with_new_line_after_attribute(false)
            .optional()
    }

    fn custom_content(&self, content: Content) -> Option<Content> {
        let [channels_out, group_channels_in, _, _] = self.weight.dims();
        content
            .add("ch_in", &format!("{}", group_channels_in * self.groups))
            .add("ch_out", &format!("{channels_out}"))
            .add("stride", &format!("{:?}", self.stride))
            .add("kernel_size", &format!("{:?}", self.kernel_size))
            .add("dilation", &format!("{:?}", self.dilation))
            .add("groups", &self.groups)
            .add_debug_attribute("padding", &self.padding)
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

    fn inputs(n: usize, seed: u64) -> Vec<f32> {
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

    fn flat<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        floats_to_host(t.reshape([-1]))
    }

    /// Output, input gradient, weight gradient and bias gradient of `conv` on `x`.
    fn run(conv: &SparseConv2d, x: &[f32], shape: [usize; 4], device: &Device) -> [Vec<f32>; 4] {
        let x = Tensor::<4>::from_data(TensorData::new(x.to_vec(), shape), device).require_grad();
        let y = conv.forward(x.clone());
        let w = Tensor::<4>::from_data(
            TensorData::new(inputs(y.shape().num_elements(), 9), y.shape()),
            device,
        );
        let grads = (y.clone() * w).sum().backward();
        let gw = conv.weight.grad(&grads).map(flat).unwrap_or_default();
        let gb = conv
            .bias
            .as_ref()
            .and_then(|b| b.grad(&grads))
            .map(flat)
            .unwrap_or_default();
        [flat(y), flat(x.grad(&grads).unwrap()), gw, gb]
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
        // Batch 1, odd sizes, stride 2, 1x1, Same and explicit padding, densities 0 to 1.
        let cases = [
            ([1, 3, 5, 7], [3, 4], [3, 3], [1, 1], PaddingConfig2d::Same),
            (
                [2, 4, 9, 8],
                [4, 6],
                [3, 3],
                [2, 2],
                PaddingConfig2d::Explicit(1, 1, 1, 1),
            ),
            ([3, 5, 6, 6], [5, 7], [1, 1], [1, 1], PaddingConfig2d::Valid),
            ([2, 2, 8, 8], [2, 3], [1, 1], [2, 2], PaddingConfig2d::Valid),
        ];
        for (shape, channels, kernel, stride, padding) in cases {
            for sparsity in [0.0, 0.5, 0.9, 1.0] {
                let config = if sparsity == 1.0 {
                    SparsityConfig::uniform(0.0).with_custom_sparsity("weight", 1.0)
                } else {
                    SparsityConfig::uniform(sparsity)
                };
                let sparse = SparseConv2dConfig::new(channels, kernel)
                    .with_stride(stride)
                    .with_padding(padding.clone())
                    .with_execution(SparseExecution::new(Execution::Sparse))
                    .init(&device)
                    .sparsify(&config)
                    .unwrap();
                assert!(sparse.runs_sparse([shape[2], shape[3]]));
                let dense = sparse
                    .clone()
                    .with_execution(SparseExecution::new(Execution::Dense));
                assert!(!dense.runs_sparse([shape[2], shape[3]]));
                let x = inputs(shape.iter().product(), 3);
                let got = run(&sparse, &x, shape, &device);
                let want = run(&dense, &x, shape, &device);
                let what =
                    format!("{shape:?} kernel {kernel:?} stride {stride:?} sparsity {sparsity}");
                for (k, name) in ["output", "input grad", "weight grad", "bias grad"]
                    .iter()
                    .enumerate()
                {
                    close(&got[k], &want[k], 1e-5, &format!("{name} of {what}"));
                }
                let mask = crate::bools_to_host(sparse.mask("weight").unwrap());
                for (g, m) in got[2].iter().zip(&mask) {
                    assert!(*m || g.to_bits() == 0, "{what}");
                }
            }
        }
    }

    #[test]
    fn grouped_dense_mode_and_policy_take_the_masked_path() {
        let device = Device::flex().autodiff();
        let conv = SparseConv2dConfig::new([4, 8], [3, 3])
            .init(&device)
            .sparsify(SparsityConfig::uniform(0.9))
            .unwrap();
        assert!(conv.runs_sparse([6, 6]));
        assert!(
            !conv
                .clone()
                .with_gradient_mode(GradientMode::Dense)
                .runs_sparse([6, 6])
        );
        let strict = SparseExecution::default().with_conv_max_density(0.05);
        assert!(!conv.clone().with_execution(strict).runs_sparse([6, 6]));
        assert!(
            !SparseConv2dConfig::new([4, 8], [3, 3])
                .init(&device)
                .runs_sparse([6, 6])
        );
        // A depthwise convolution has no sparse kernel: it computes as Conv2d does.
        let depthwise = SparseConv2dConfig::new([4, 4], [3, 3])
            .with_groups(4)
            .with_execution(SparseExecution::new(Execution::Sparse))
            .init(&device)
            .sparsify(SparsityConfig::uniform(0.5))
            .unwrap();
        assert!(!depthwise.runs_sparse([6, 6]));
        let x = Tensor::<4>::ones([1, 4, 6, 6], &device);
        let want = depthwise.clone().into_conv2d().forward(x.clone());
        close(&flat(depthwise.forward(x)), &flat(want), 0.0, "depthwise");
    }

    #[test]
    fn burn_conv2d_records_load_both_ways() {
        let device = Device::flex();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("conv.bpk");
        let conv = Conv2dConfig::new([3, 5], [3, 3])
            .init(&device)
            .sparsify(SparsityConfig::uniform(0.75))
            .unwrap();
        conv.save_sparse(&path).unwrap();
        let sparse = SparseConv2dConfig::new([3, 5], [3, 3])
            .init(&device)
            .load_sparse(&path)
            .unwrap();
        assert_eq!(flat(sparse.weight.val()), flat(conv.weight.val()));
        assert_eq!(
            crate::bools_to_host(sparse.mask("weight").unwrap()),
            crate::bools_to_host(conv.mask("weight").unwrap())
        );
        let back_path = dir.path().join("sparse.bpk");
        sparse.save_sparse(&back_path).unwrap();
        let back = Conv2dConfig::new([3, 5], [3, 3])
            .init(&device)
            .load_sparse(&back_path)
            .unwrap();
        assert_eq!(flat(back.weight.val()), flat(conv.weight.val()));
        let x = Tensor::<4>::ones([2, 3, 7, 7], &device);
        close(
            &flat(sparse.forward(x.clone())),
            &flat(conv.forward(x)),
            1e-6,
            "forward",
        );
    }
}
