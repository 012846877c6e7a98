//! [`ModulePath`]: the dotted path a module visitor or mapper is at, for the visitors that name
//! parameters by path and find the fields of attached masks.

use crate::mask::SparseMask;

/// The path of the module a [`ModuleVisitor`](burn::module::ModuleVisitor) or
/// [`ModuleMapper`](burn::module::ModuleMapper) is in: [`enter`](Self::enter) in
/// `enter_module`, [`exit`](Self::exit) in `exit_module`.
#[derive(Clone, Debug, Default)]
pub(crate) struct ModulePath(Vec<String>);

impl ModulePath {
    /// Into the child module `name`.
    pub(crate) fn enter(&mut self, name: &str) {
        self.0.push(name.to_string());
    }

    /// Back out of the current module.
    pub(crate) fn exit(&mut self) {
        self.0.pop();
    }

    /// The path, `a.b.c` (a parameter's path when called from `visit_*` / `map_*`).
    pub(crate) fn joined(&self) -> String {
        self.0.join(".")
    }

    /// When the path is the field `field` of a [`SparseMask`] attached to a weight
    /// (`<weight>.sparse_mask.<field>`), the weight's path.
    pub(crate) fn mask_field(&self, field: &str) -> Option<String> {
        let n = self.0.len();
        (n >= 3 && self.0[n - 2] == SparseMask::NAME && self.0[n - 1] == field)
            .then(|| self.0[..n - 2].join("."))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_mask_fields() {
        let mut p = ModulePath::default();
        for name in ["encoder", "fc1", "weight", SparseMask::NAME, "mask"] {
            p.enter(name);
        }
        assert_eq!(p.joined(), "encoder.fc1.weight.sparse_mask.mask");
        assert_eq!(p.mask_field("mask").as_deref(), Some("encoder.fc1.weight"));
        assert_eq!(p.mask_field("dense_grad"), None);
        p.exit();
        p.exit();
        assert_eq!(p.joined(), "encoder.fc1.weight");
        assert_eq!(p.mask_field("mask"), None);
    }
}
