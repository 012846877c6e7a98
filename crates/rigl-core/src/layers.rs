//! Finding a module's maskable weights: a visitor that walks the module tree once, without
//! initialising lazy parameters.

use crate::distribution::LayerShape;
use crate::module_path::ModulePath;
use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::tensor::{Bool, Device, Tensor};

/// A float parameter of rank >= 2 (a kernel), in traversal order.
#[derive(Clone, Debug)]
pub struct KernelParam {
    /// Parameter path, e.g. `layers.0.weight`.
    pub path: String,
    /// Id of the stored weight (what gradients and optimizer state are keyed by).
    pub id: ParamId,
    /// Its shape, with fan-in and fan-out told by the holding module's type.
    pub shape: LayerShape,
    /// Type of the module holding it, e.g. `Struct:Linear`.
    pub module_type: String,
    /// The attached mask, if the parameter is sparse.
    pub mask: Option<Tensor<1, Bool>>,
    /// The device the parameter lives (or, if lazy, will live) on.
    pub device: Device,
}

impl KernelParam {
    /// Whether a mask is attached.
    pub fn is_masked(&self) -> bool {
        self.mask.is_some()
    }
}

/// All kernel parameters (float, rank >= 2) of `module`, in traversal order, each with its
/// mask if it has one. Lazy parameters stay uninitialised.
pub fn kernel_params<M: Module>(module: &M) -> Vec<KernelParam> {
    let mut v = KernelVisitor::default();
    module.visit(&mut v);
    v.out
}

#[derive(Default)]
struct KernelVisitor {
    path: ModulePath,
    types: Vec<String>,
    out: Vec<KernelParam>,
}

impl ModuleVisitor for KernelVisitor {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name);
        self.types.push(container_type.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
        self.types.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if D < 2 {
            return;
        }
        let dims = param.lazy_shape().as_slice().to_vec();
        let module_type = self.types.last().cloned().unwrap_or_default();
        self.out.push(KernelParam {
            path: self.path.joined(),
            id: param.id,
            shape: LayerShape::burn(&dims, &module_type),
            module_type,
            mask: None,
            device: param.lazy_device(),
        });
    }

    fn visit_bool<const D: usize>(&mut self, param: &Param<Tensor<D, Bool>>) {
        let Some(weight_path) = self.path.mask_field("mask").filter(|_| D == 1) else {
            return;
        };
        if let Some(k) = self.out.last_mut()
            && k.path == weight_path
        {
            let t: Tensor<D, Bool> = param.val();
            k.mask = Some(t.reshape([-1]));
        }
    }
}
