//! Shared checks for the model tests.

use crate::spec::{SparseArchitecture, check_layers};
use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Distribution, Tensor};
use rigl_core::{Sparsify, SparsityConfig};
use rigl_core::{bools_to_host, floats_to_host};

/// Build a model on the autodiff CPU device, check it against its layer list, make it 90%
/// sparse with ERK, run a forward and a backward pass, and check shapes, mask counts and that
/// gradients vanish exactly at inactive weights (and nowhere else is every gradient zero).
pub(crate) fn sparse_forward_backward<A, M, const DI: usize, const DO: usize>(
    arch: &A,
    init: impl Fn(&Device) -> M,
    input: [usize; DI],
    forward: impl Fn(&M, Tensor<DI>) -> Tensor<DO>,
) where
    A: SparseArchitecture,
    M: Module,
{
    let device = Device::default().autodiff();
    let config = SparsityConfig::erk(0.9);
    let model = init(&device);
    let layers = arch.layer_specs().unwrap();
    check_layers(&model, &layers).unwrap();

    // The decorator (traversal order) and the layer list (forward order) agree, including the
    // first- and last-layer rules.
    for cfg in [
        config.clone(),
        config.clone().first_layer_dense().last_layer_dense(),
    ] {
        let from_specs = arch.sparsity_plan(&cfg).unwrap();
        let from_model = model.sparsity_plan(&cfg).unwrap();
        for l in &from_specs.layers {
            let m = from_model.layer(&l.path).unwrap();
            assert_eq!((m.masked, m.n_active), (l.masked, l.n_active), "{}", l.path);
        }
    }

    let plan = arch.sparsity_plan(&config).unwrap();
    let sparse = model.sparsify(&config).unwrap();
    let report = sparse.sparsity_report();
    for l in &plan.layers {
        assert_eq!(report.layer(&l.path).unwrap().nnz, l.n_active, "{}", l.path);
    }
    assert!((report.sparsity - 0.9).abs() < 0.01, "{}", report.sparsity);

    let x = Tensor::<DI>::random(input, Distribution::Normal(0.0, 1.0), &device);
    let y = forward(&sparse, x);
    assert_eq!(y.dims()[0], input[0]);
    let grads = GradientsParams::from_grads(y.powi_scalar(2).sum().backward(), &sparse);
    let masked = sparse.sparse_layers();
    assert_eq!(
        masked.len(),
        plan.layers.iter().filter(|l| l.masked).count()
    );
    for k in masked {
        let g = match k.shape.dims.len() {
            2 => grads.get::<2>(k.id).map(floats_to_host),
            4 => grads.get::<4>(k.id).map(floats_to_host),
            r => panic!("unexpected kernel rank {r}"),
        }
        .unwrap_or_else(|| panic!("no gradient for {}", k.path));
        let mask = bools_to_host(k.mask.clone().unwrap());
        assert_eq!(g.len(), mask.len());
        assert!(
            g.iter().zip(&mask).all(|(g, m)| *m || *g == 0.0),
            "{}: gradient at an inactive weight",
            k.path
        );
        assert!(
            g.iter().zip(&mask).any(|(g, m)| *m && *g != 0.0),
            "{}: no gradient at any active weight",
            k.path
        );
    }
}
