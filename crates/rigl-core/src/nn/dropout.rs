//! Dropout whose mask is drawn fast on the CPU backend.

use burn::config::Config;
use burn::module::{Content, DisplaySettings, Flag, Module, ModuleDisplay, Param};
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::{Distribution, Tensor};

/// Configuration of a [`FusedDropout`]: [`DropoutConfig`]'s field.
#[derive(Config, Debug)]
pub struct FusedDropoutConfig {
    /// The probability of zeroing an element.
    pub prob: f64,
}

/// A drop-in replacement for Burn's [`Dropout`] (same fields, same record): in training, on an
/// autodiff device, each element is zeroed with probability `prob` and the others scaled by
/// `1 / (1 - prob)`. On the CPU backend the mask is a counter-based draw
/// ([`rigl_kernels::dropout`]) seeded from the device's generator, about ten times faster than
/// Burn's Bernoulli tensor and not stored for the backward; elsewhere it is Burn's.
#[derive(Module, Debug)]
#[module(custom_display)]
pub struct FusedDropout {
    /// The probability of zeroing an element.
    pub prob: f64,
    /// Whether the layer drops in training (see [`Dropout`]).
    pub training: Param<Flag>,
}

impl FusedDropoutConfig {
    /// Build the layer.
    ///
    /// # Panics
    /// When `prob` is not finite and in `[0, 1)` (as [`DropoutConfig::init`]).
    pub fn init(&self) -> FusedDropout {
        FusedDropout::from_dropout(DropoutConfig::new(self.prob).init())
    }
}

impl FusedDropout {
    /// The layer with the probability and state of `dropout`.
    pub fn from_dropout(dropout: Dropout) -> Self {
        Self {
            prob: dropout.prob,
            training: dropout.training,
        }
    }

    /// The plain Burn layer.
    pub fn into_dropout(self) -> Dropout {
        Dropout {
            prob: self.prob,
            training: self.training,
        }
    }

    /// Applies dropout in training on an autodiff device; the identity otherwise.
    ///
    /// # Shapes
    /// - input: `[..., any]`
    /// - output: like the input
    pub fn forward<const D: usize>(&self, input: Tensor<D>) -> Tensor<D> {
        if !self.training.is_enabled() || !input.device().is_autodiff() || self.prob == 0.0 {
            return input;
        }
        // A fresh seed from the device's generator, so that seeding the device fixes the masks.
        let draw: Vec<f32> = Tensor::<1>::random([2], Distribution::Default, &input.device())
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap_or_default();
        let seed = draw
            .iter()
            .fold(0u64, |s, v| (s << 32) | v.to_bits() as u64);
        rigl_kernels::dropout(input, self.prob, seed)
    }
}

impl ModuleDisplay for FusedDropout {
    fn custom_settings(&self) -> Option<DisplaySettings> {
        DisplaySettings::new()
            .with_new_line_after_attribute(false)
            .optional()
    }

    fn custom_content(&self, content: Content) -> Option<Content> {
        content.add("prob", &self.prob).optional()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::floats_to_host;
    use burn::tensor::{Device, TensorData};

    #[test]
    fn drops_in_training_and_is_the_identity_otherwise() {
        let device = Device::flex().autodiff();
        let layer = FusedDropoutConfig::new(0.4).init();
        let x = Tensor::<2>::from_data(TensorData::new(vec![1.0f32; 4000], [2, 2000]), &device);
        device.seed(5);
        let a = floats_to_host(layer.forward(x.clone()).reshape([-1]));
        device.seed(5);
        let b = floats_to_host(layer.forward(x.clone()).reshape([-1]));
        let c = floats_to_host(layer.forward(x.clone()).reshape([-1]));
        assert_eq!(a, b, "a seeded device gives the same mask");
        assert_ne!(b, c, "every forward draws a new mask");
        let dropped = a.iter().filter(|&&v| v == 0.0).count() as f64 / 4000.0;
        assert!((dropped - 0.4).abs() < 0.04, "{dropped}");
        // Inference (no autodiff) and a disabled layer pass the input through.
        let inner = Device::flex();
        let xi = Tensor::<2>::from_data(TensorData::new(vec![1.0f32; 4000], [2, 2000]), &inner);
        assert!(
            floats_to_host(layer.forward(xi).reshape([-1]))
                .iter()
                .all(|&v| v == 1.0)
        );
        let record = layer.clone().into_dropout();
        assert_eq!(record.prob, 0.4);
    }
}
