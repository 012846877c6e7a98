//! The mask: a Burn [`Reparameterization`] that turns a stored weight into its sparse value.

use burn::module::{Flag, Module, Param, ParamId, Reparameterization};
use burn::tensor::{Bool, Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

/// How gradients reach the stored weight of a masked parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum GradientMode {
    /// The effective weight is `w.mask_fill(!m, 0)`: the gradient is exactly zero at inactive
    /// positions, so any optimizer, weight decay included, keeps the network sparse.
    #[default]
    Masked,
    /// Straight-through: the effective weight has the same value, `w - detach(w).mask_fill(m,
    /// 0)`, but the stored weight receives the dense gradient `dL/d(w*m)` at every position,
    /// inactive ones included. RigL's grow step and SNFS score with it. An optimizer step in
    /// this mode moves inactive stored weights; their effective value stays zero.
    Dense,
}

/// A sparsity mask attached to a weight parameter.
///
/// The mask is stored flat (row-major over the weight) as a Bool parameter, recorded at
/// `<weight path>.sparse_mask.mask`; `true` marks an active connection. The gradient mode is
/// runtime configuration (a [`Flag`]) and is not recorded.
#[derive(Module, Debug)]
pub struct SparseMask {
    /// One entry per weight element; `true` = active.
    pub mask: Param<Tensor<1, Bool>>,
    /// Whether the dense-gradient ([`GradientMode::Dense`]) formulation is in use.
    pub dense_grad: Param<Flag>,
}

impl SparseMask {
    /// Path component under which the mask's parameters are recorded.
    pub const NAME: &'static str = "sparse_mask";

    /// A mask from host values, on `device`.
    pub fn from_bools(values: Vec<bool>, device: &Device, mode: GradientMode) -> Self {
        let n = values.len();
        let mask = Tensor::<1, Bool>::from_data(TensorData::new(values, [n]), device);
        Self::from_tensor(mask, mode)
    }

    /// A mask from a flat Bool tensor.
    pub fn from_tensor(mask: Tensor<1, Bool>, mode: GradientMode) -> Self {
        Self {
            mask: Param::initialized(ParamId::new(), mask),
            dense_grad: Param::from_bool(mode == GradientMode::Dense),
        }
    }

    /// The gradient mode in force.
    pub fn gradient_mode(&self) -> GradientMode {
        if self.dense_grad.is_enabled() {
            GradientMode::Dense
        } else {
            GradientMode::Masked
        }
    }
}

impl Reparameterization for SparseMask {
    const NAME: &'static str = SparseMask::NAME;

    fn apply<const D: usize>(&self, base: Tensor<D>) -> Tensor<D> {
        let mask = self.mask.val().reshape(base.shape());
        if self.dense_grad.is_enabled() {
            let inactive_part = base.clone().detach().mask_fill(mask, 0.0);
            base - inactive_part
        } else {
            base.mask_fill(mask.bool_not(), 0.0)
        }
    }
}

/// Read non-negative integer counts (sums of masks) to the host, in one transfer.
pub(crate) fn counts_to_host(counts: Tensor<1, burn::tensor::Int>) -> Vec<usize> {
    counts
        .into_data()
        .convert::<i64>()
        .try_into_vec::<i64>()
        .expect("counts convert to i64")
        .into_iter()
        .map(|c| c.max(0) as usize)
        .collect()
}

/// Read a Bool tensor to the host (backends that store Bool as integers included).
pub fn bools_to_host<const D: usize>(tensor: Tensor<D, Bool>) -> Vec<bool> {
    let data = tensor.into_data();
    if data.dtype() == burn::tensor::DType::Bool(burn::tensor::BoolStore::Native) {
        data.try_into_vec::<bool>()
            .expect("native Bool data reads as bool")
    } else {
        data.convert::<u8>()
            .try_into_vec::<u8>()
            .expect("Bool data converted to u8")
            .into_iter()
            .map(|b| b != 0)
            .collect()
    }
}

/// Read a float tensor to the host as `f32`.
pub fn floats_to_host<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("float data converted to f32")
}
