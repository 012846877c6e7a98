//! The condensed product over the constant fan-in catalogue: the fast CPU path and the CPU
//! backend equal the reference bit for bit; the portable gather path and the masked dense
//! product agree with it within the bound of the sum's order.

use burn::tensor::{Device, Int, Tensor, TensorData};
use rigl_kernels::catalogue::constant_fan_in_catalogue;
use rigl_kernels::cpu_reference::condensed_linear as reference;
use rigl_kernels::{Condensed, condensed_linear, condensed_linear_gather, cpu};

fn host(t: Tensor<2>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap()
}

/// `|a - b| <= k * eps * scale` per entry, `scale` the sum of the terms' magnitudes.
fn assert_close(a: &[f32], b: &[f32], scale: &[f64], k: usize, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    for ((x, y), s) in a.iter().zip(b).zip(scale) {
        let bound = (k.max(1) as f64) * f64::from(f32::EPSILON) * s + 1e-30;
        assert!(
            (f64::from(*x) - f64::from(*y)).abs() <= bound,
            "{what}: {x} vs {y} (bound {bound})"
        );
    }
}

#[test]
fn condensed_products_equal_the_reference() {
    let problems = constant_fan_in_catalogue(usize::MAX);
    assert_eq!(problems.len(), 50);
    let device = Device::flex();
    for p in &problems {
        let m = &p.matmul;
        let w = Condensed::from_linear(&m.weight, &m.mask, m.rows, m.cols).unwrap();
        assert_eq!(w.k(), p.k, "{}", m.name);
        let expect = reference(&m.x, m.batch, &w).unwrap();
        assert!(
            expect.iter().all(|v| v.is_finite()),
            "{}: read an inactive weight",
            m.name
        );
        // Fast CPU path and the tensor API on the CPU backend: bit for bit.
        assert_eq!(
            cpu::condensed_linear(&m.x, m.batch, &w).unwrap(),
            expect,
            "{}",
            m.name
        );
        let x = Tensor::<2>::from_data(TensorData::new(m.x.clone(), [m.batch, m.rows]), &device);
        assert_eq!(
            host(condensed_linear(x.clone(), &w).unwrap()),
            expect,
            "{}",
            m.name
        );
        // The masked dense product in f64, and the portable gather path: within the bound.
        let dense = m.masked_weight();
        let mut exact = vec![0.0f64; m.batch * m.cols];
        let mut scale = vec![0.0f64; m.batch * m.cols];
        for b in 0..m.batch {
            for i in 0..m.rows {
                let xi = f64::from(m.x[b * m.rows + i]);
                for j in 0..m.cols {
                    let term = xi * f64::from(dense[i * m.cols + j]);
                    exact[b * m.cols + j] += term;
                    scale[b * m.cols + j] += term.abs();
                }
            }
        }
        let exact: Vec<f32> = exact.iter().map(|&v| v as f32).collect();
        assert_close(&expect, &exact, &scale, p.k, &m.name);
        let values = Tensor::<2>::from_data(
            TensorData::new(w.values().to_vec(), [w.d_out(), w.k()]),
            &device,
        );
        let idx: Vec<i64> = w.indices().iter().map(|&i| i64::from(i)).collect();
        let n = idx.len();
        let idx = Tensor::<1, Int>::from_data(TensorData::new(idx, [n]), &device);
        let gathered = host(condensed_linear_gather(x, values, idx));
        assert_close(&gathered, &expect, &scale, p.k, &m.name);
    }
}

#[test]
fn a_wrong_input_width_is_an_error() {
    let p = &constant_fan_in_catalogue(1000)[3];
    let m = &p.matmul;
    let w = Condensed::from_linear(&m.weight, &m.mask, m.rows, m.cols).unwrap();
    let x = Tensor::<2>::zeros([2, m.rows + 1], &Device::flex());
    let err = condensed_linear(x, &w).unwrap_err();
    assert!(err.to_string().contains("x columns"), "{err}");
}
