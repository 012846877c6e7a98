//! Equivalence with the CPU reference, bit for bit, over the problem catalogue: the fast CPU
//! path, the CPU backend through the tensor API and, with the `wgpu` feature, the CubeCL
//! kernels on wgpu; for the selections and for the drop-and-grow decision.
//!
//! The catalogue's sizes above 100,000 (10^6, 2.5 x 10^6, 10^7) are checked one size at a time,
//! and the ResNet-50 problem (54 segments, 25.5M positions) on wgpu.

use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use rigl_kernels::catalogue::{
    DropGrowProblem, Problem, SIZES, catalogue, catalogue_of_size, drop_grow_catalogue,
};
use rigl_kernels::cpu_reference::drop_grow as drop_grow_reference;
use rigl_kernels::cpu_reference::segmented_random_top_k_mask;
use rigl_kernels::cpu_reference::segmented_top_k_mask as reference;
use rigl_kernels::{GrowBy, Growth, RandomSegment, SelectError, cpu};

fn bools(t: Tensor<1, Bool>) -> Vec<bool> {
    t.into_data()
        .convert::<bool>()
        .try_into_vec::<bool>()
        .unwrap()
}

fn check_fast_cpu(problems: &[Problem]) {
    for p in problems {
        let expect = reference(&p.scores, p.eligible.as_deref(), &p.segments).unwrap();
        let got = cpu::segmented_top_k_mask(&p.scores, p.eligible.as_deref(), &p.segments).unwrap();
        assert_eq!(
            got.mask.iter().filter(|m| **m).count(),
            p.selected(),
            "{}",
            p.name
        );
        assert!(got == expect, "fast CPU path differs on {}", p.name);
    }
}

/// The tensor API on `device` equals the reference; by magnitude (`segmented_top_k_mask_abs`),
/// the reference on `|scores|`.
fn check_device(problems: &[Problem], device: &Device, magnitude: bool) {
    for p in problems {
        let expected_scores: Vec<f32> = if magnitude {
            p.scores.iter().map(|s| s.abs()).collect()
        } else {
            p.scores.clone()
        };
        let expect = reference(&expected_scores, p.eligible.as_deref(), &p.segments).unwrap();
        let n = p.len();
        let scores = Tensor::<1>::from_data(TensorData::new(p.scores.clone(), [n]), device);
        let eligible = p
            .eligible
            .as_ref()
            .map(|e| Tensor::<1, Bool>::from_data(TensorData::new(e.clone(), [n]), device));
        let got = if magnitude {
            rigl_kernels::segmented_top_k_mask_abs(scores, eligible, &p.segments)
        } else {
            rigl_kernels::segmented_top_k_mask(scores, eligible, &p.segments)
        }
        .unwrap();
        assert_eq!(got.nan_counts, expect.nan_counts, "{}", p.name);
        let mask = bools(got.mask);
        if mask != expect.mask {
            let first = mask.iter().zip(&expect.mask).position(|(a, b)| a != b);
            panic!(
                "{} (magnitude: {magnitude}) differs from the reference on {device:?}: first at \
                 {first:?}, {} vs {} selected",
                p.name,
                mask.iter().filter(|m| **m).count(),
                p.selected()
            );
        }
    }
}

/// The fast CPU path by magnitude equals the reference on `|scores|`.
fn check_fast_cpu_abs(problems: &[Problem]) {
    for p in problems {
        let abs: Vec<f32> = p.scores.iter().map(|s| s.abs()).collect();
        let expect = reference(&abs, p.eligible.as_deref(), &p.segments).unwrap();
        let (mask, counts) =
            cpu::segmented_top_k_counts_abs(&p.scores, p.eligible.as_deref(), &p.segments).unwrap();
        assert!(
            mask == expect.mask,
            "fast CPU path by magnitude differs on {}",
            p.name
        );
        let nan: Vec<usize> = counts.iter().map(|c| c.nan).collect();
        assert_eq!(nan, expect.nan_counts, "{}", p.name);
    }
}

fn random_segments(p: &Problem) -> Vec<RandomSegment> {
    p.segments
        .iter()
        .enumerate()
        .map(|(i, s)| RandomSegment {
            offset: s.offset,
            len: s.len,
            k: s.k.min(s.len / 2),
            stream: rigl_kernels::stream_id(&format!("layer{i}.weight")),
        })
        .collect()
}

fn check_random(problems: &[Problem], device: &Device) {
    for p in problems.iter().filter(|p| p.eligible.is_none()) {
        let segments = random_segments(p);
        let n = p.len();
        let expect = segmented_random_top_k_mask(11, 4, n, None, &segments).unwrap();
        let got = rigl_kernels::random_top_k_mask(11, 4, n, None, &segments, device).unwrap();
        assert_eq!(bools(got), expect, "random {}", p.name);
        let keys = rigl_kernels::philox_u32(11, 4, n, &segments, device).unwrap();
        let keys: Vec<u32> = keys.into_data().convert::<u32>().try_into_vec().unwrap();
        assert_eq!(
            keys,
            cpu::philox_u32(11, 4, n, &segments).unwrap(),
            "{}",
            p.name
        );
    }
    // Growth among inactive positions: eligible = not currently selected.
    for p in problems.iter().filter(|p| p.eligible.is_some()) {
        let n = p.len();
        let e = p.eligible.clone().unwrap();
        let segments: Vec<RandomSegment> = random_segments(p)
            .into_iter()
            .map(|s| {
                let avail = e[s.offset..s.offset + s.len].iter().filter(|b| **b).count();
                RandomSegment { k: avail / 3, ..s }
            })
            .collect();
        let expect = segmented_random_top_k_mask(5, 9, n, Some(&e), &segments).unwrap();
        let eligible = Tensor::<1, Bool>::from_data(TensorData::new(e, [n]), device);
        let got =
            rigl_kernels::random_top_k_mask(5, 9, n, Some(eligible), &segments, device).unwrap();
        assert_eq!(bools(got), expect, "random eligible {}", p.name);
    }
}

/// The drop-and-grow decision on `device` equals the reference: masks, new connections, counts.
fn check_drop_grow(problems: &[DropGrowProblem], device: &Device) {
    for p in problems {
        let expect = drop_grow_reference(
            &p.weights,
            &p.mask,
            Some(&p.scores),
            p.grow_by,
            &p.segments,
            p.allow_regrow,
        )
        .unwrap();
        let n = p.weights.len();
        let floats = |v: &[f32]| Tensor::<1>::from_data(TensorData::new(v.to_vec(), [n]), device);
        let growth = match p.grow_by {
            GrowBy::Scores => Growth::Scores(floats(&p.scores)),
            GrowBy::Magnitude => Growth::Magnitude(floats(&p.scores)),
            GrowBy::Random { seed, step } => Growth::Random { seed, step },
        };
        let mask = Tensor::<1, Bool>::from_data(TensorData::new(p.mask.clone(), [n]), device);
        let got = rigl_kernels::drop_grow(
            floats(&p.weights),
            mask,
            growth,
            &p.segments,
            p.allow_regrow,
        )
        .unwrap();
        assert!(
            bools(got.mask) == expect.mask,
            "{} mask on {device:?}",
            p.name
        );
        assert!(
            bools(got.reset) == expect.reset,
            "{} reset on {device:?}",
            p.name
        );
        assert_eq!(got.counts, expect.counts, "{} on {device:?}", p.name);
    }
}

fn check_errors(device: &Device) {
    let scores = Tensor::<1>::from_data(
        TensorData::new(vec![f32::NAN, 1.0, 2.0, f32::NAN], [4]),
        device,
    );
    let err = rigl_kernels::top_k_mask(scores.clone(), None, 3).unwrap_err();
    assert_eq!(
        err,
        SelectError::KTooLarge {
            segment: 0,
            k: 3,
            available: 2
        }
    );
    let sel = rigl_kernels::top_k_mask(scores, None, 2).unwrap();
    assert_eq!(sel.nan_counts, [2]);
    assert_eq!(bools(sel.mask), [false, true, true, false]);
    let _unused: Option<Tensor<1, Int>> = None;
}

#[test]
fn fast_cpu_path_equals_reference() {
    check_fast_cpu(&catalogue(100_000));
    check_fast_cpu_abs(&catalogue(100_000));
}

#[test]
fn cpu_backend_equals_reference() {
    let device = Device::flex();
    check_device(&catalogue(4_097), &device, false);
    check_device(&catalogue(100_000), &device, true);
    check_random(&catalogue(4_097), &device);
    check_drop_grow(&drop_grow_catalogue(100_000), &device);
    check_errors(&device);
}

/// The catalogue's sizes above 100,000, one size at a time (to bound memory).
fn large_sizes() -> impl Iterator<Item = Vec<Problem>> {
    SIZES
        .into_iter()
        .filter(|&n| n > 100_000)
        .map(catalogue_of_size)
}

#[test]
fn large_sizes_on_cpu() {
    for problems in large_sizes() {
        check_fast_cpu(&problems);
        check_device(&problems, &Device::flex(), false);
    }
}

#[cfg(feature = "wgpu")]
mod wgpu {
    use super::*;
    use burn::tensor::DeviceKind;

    fn device() -> Device {
        Device::wgpu(DeviceKind::DefaultDevice)
    }

    /// One test for the whole small catalogue: the kernels compile once per variant.
    #[test]
    fn wgpu_equals_reference() {
        let device = device();
        let probe = Tensor::<1>::zeros([1], &device);
        let name = format!("{:?}", probe.device());
        assert!(
            name.to_lowercase().contains("wgpu"),
            "not a wgpu device: {name}"
        );
        eprintln!("device: {name}");
        let problems = catalogue(100_000);
        eprintln!("{} problems", problems.len());
        check_device(&problems, &device, false);
        check_device(&problems, &device, true);
        check_random(&catalogue(4_097), &device);
        check_drop_grow(&drop_grow_catalogue(100_000), &device);
        check_errors(&device);
    }

    #[test]
    fn large_sizes_on_wgpu() {
        let device = device();
        for problems in large_sizes() {
            check_device(&problems, &device, false);
        }
        let resnet = rigl_kernels::catalogue::resnet50(Some(0.5));
        check_device(std::slice::from_ref(&resnet), &device, true);
    }
}

/// Bits of a float buffer, for exact comparison (NaN included).
fn float_bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|f| f.to_bits()).collect()
}

/// The sparse products' fast CPU path equals the reference bit for bit, and the reference
/// equals the dense product of the masked weight within the bound of the `spmm` module docs.
#[test]
fn sparse_products_fast_cpu_equals_reference() {
    use rigl_kernels::SparsePattern;
    use rigl_kernels::catalogue::sparse_matmul_catalogue;
    use rigl_kernels::cpu_reference::{sddmm, spmm, spmm_transposed};
    let problems = sparse_matmul_catalogue(usize::MAX);
    assert_eq!(problems.len(), 50);
    for p in &problems {
        let pattern = SparsePattern::from_mask(p.rows, p.cols, &p.mask).unwrap();
        let y = spmm(&p.x, p.batch, &p.weight, &pattern).unwrap();
        let dx = spmm_transposed(&p.dy, p.batch, &p.weight, &pattern).unwrap();
        let dw = sddmm(&p.x, &p.dy, p.batch, &pattern).unwrap();
        assert!(
            y.iter().chain(&dx).chain(&dw).all(|v| v.is_finite()),
            "{}",
            p.name
        );
        let fast_y = cpu::spmm(&p.x, p.batch, &p.weight, &pattern).unwrap();
        let fast_dx = cpu::spmm_transposed(&p.dy, p.batch, &p.weight, &pattern).unwrap();
        let fast_dw = cpu::sddmm(&p.x, &p.dy, p.batch, &pattern).unwrap();
        assert_eq!(float_bits(&fast_y), float_bits(&y), "forward of {}", p.name);
        assert_eq!(
            float_bits(&fast_dx),
            float_bits(&dx),
            "input gradient of {}",
            p.name
        );
        assert_eq!(
            float_bits(&fast_dw),
            float_bits(&dw),
            "weight gradient of {}",
            p.name
        );
        // Against the dense product of the masked weight, summed in f64.
        if p.dense_work() > 20_000_000 {
            continue;
        }
        let w = p.masked_weight();
        let (b, r, c) = (p.batch, p.rows, p.cols);
        for bi in 0..b {
            for j in 0..c {
                let (exact, mag) = (0..r).fold((0.0f64, 0.0f64), |(s, m), i| {
                    let t = p.x[bi * r + i] as f64 * w[i * c + j] as f64;
                    (s + t, m + t.abs())
                });
                let bound = r as f64 * f32::EPSILON as f64 * mag;
                assert!((y[bi * c + j] as f64 - exact).abs() <= bound, "{}", p.name);
            }
            for i in 0..r {
                let (exact, mag) = (0..c).fold((0.0f64, 0.0f64), |(s, m), j| {
                    let t = p.dy[bi * c + j] as f64 * w[i * c + j] as f64;
                    (s + t, m + t.abs())
                });
                let bound = c as f64 * f32::EPSILON as f64 * mag;
                assert!((dx[bi * r + i] as f64 - exact).abs() <= bound, "{}", p.name);
            }
        }
        for i in 0..r {
            for j in 0..c {
                let at = i * c + j;
                if !p.mask[at] {
                    assert_eq!(dw[at].to_bits(), 0, "{}", p.name);
                    continue;
                }
                let (exact, mag) = (0..b).fold((0.0f64, 0.0f64), |(s, m), bi| {
                    let t = p.x[bi * r + i] as f64 * p.dy[bi * c + j] as f64;
                    (s + t, m + t.abs())
                });
                let bound = b as f64 * f32::EPSILON as f64 * mag;
                assert!((dw[at] as f64 - exact).abs() <= bound, "{}", p.name);
            }
        }
    }
}

/// The tensor-level sparse product on `device`, forward and both gradients (through autodiff),
/// against the CPU reference: within `(terms + 2) * f32::EPSILON * sum |terms|` of each value
/// (a device may fuse a product and its sum), and exactly zero at inactive weight positions.
fn check_sparse_linear(max_work: usize, device: &Device) {
    use rigl_kernels::catalogue::sparse_matmul_catalogue;
    use rigl_kernels::cpu_reference::{sddmm, spmm, spmm_transposed};
    use rigl_kernels::{SparsePattern, sparse_linear};
    use std::sync::Arc;
    let device = device.clone().autodiff();
    for p in sparse_matmul_catalogue(max_work) {
        let pattern = Arc::new(SparsePattern::from_mask(p.rows, p.cols, &p.mask).unwrap());
        let x = Tensor::<2>::from_data(TensorData::new(p.x.clone(), [p.batch, p.rows]), &device)
            .require_grad();
        let w =
            Tensor::<2>::from_data(TensorData::new(p.weight.clone(), [p.rows, p.cols]), &device)
                .require_grad();
        let dy = Tensor::<2>::from_data(TensorData::new(p.dy.clone(), [p.batch, p.cols]), &device);
        let y = sparse_linear(x.clone(), w.clone(), &pattern).unwrap();
        let grads = (y.clone() * dy).sum().backward();
        let host = |t: Tensor<2>| {
            t.into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .unwrap()
        };
        let (gy, gx, gw) = (
            host(y),
            host(x.grad(&grads).unwrap()),
            host(w.grad(&grads).unwrap()),
        );
        let want_y = spmm(&p.x, p.batch, &p.weight, &pattern).unwrap();
        let want_x = spmm_transposed(&p.dy, p.batch, &p.weight, &pattern).unwrap();
        let want_w = sddmm(&p.x, &p.dy, p.batch, &pattern).unwrap();
        // Sums of |terms| of every output element, and its number of terms.
        let w = p.masked_weight();
        let (b, r, c) = (p.batch, p.rows, p.cols);
        let mag_y: Vec<f32> = (0..b * c)
            .map(|e| {
                (0..r)
                    .map(|i| (p.x[e / c * r + i] * w[i * c + e % c]).abs())
                    .sum()
            })
            .collect();
        let mag_x: Vec<f32> = (0..b * r)
            .map(|e| {
                (0..c)
                    .map(|j| (p.dy[e / r * c + j] * w[(e % r) * c + j]).abs())
                    .sum()
            })
            .collect();
        let mag_w: Vec<f32> = (0..r * c)
            .map(|e| {
                (0..b)
                    .map(|k| (p.x[k * r + e / c] * p.dy[k * c + e % c]).abs())
                    .sum()
            })
            .collect();
        for (what, got, want, mag, terms) in [
            ("forward", &gy, &want_y, &mag_y, r),
            ("input gradient", &gx, &want_x, &mag_x, c),
            ("weight gradient", &gw, &want_w, &mag_w, b),
        ] {
            assert_eq!(got.len(), want.len(), "{what} of {}", p.name);
            for ((a, want), m) in got.iter().zip(want).zip(mag) {
                let bound = (terms as f32 + 2.0) * f32::EPSILON * m * 1.01;
                assert!(
                    (a - want).abs() <= bound,
                    "{what} of {}: {a} vs {want}",
                    p.name
                );
            }
        }
        for (g, m) in gw.iter().zip(&p.mask) {
            assert!(
                *m || g.to_bits() == 0,
                "{}: gradient at an inactive weight",
                p.name
            );
        }
    }
}

#[test]
fn sparse_linear_on_the_cpu_backend_equals_reference() {
    check_sparse_linear(500_000, &Device::flex());
}

#[cfg(feature = "wgpu")]
#[test]
fn sparse_linear_on_wgpu_equals_reference() {
    check_sparse_linear(
        3_000_000,
        &Device::wgpu(burn::tensor::DeviceKind::DefaultDevice),
    );
}

/// The condensed product on wgpu (the portable gather path) against the CPU reference, within
/// `(k + 2) * f32::EPSILON * sum |terms|` of each value (a device may fuse a product and its
/// sum).
#[cfg(feature = "wgpu")]
#[test]
fn condensed_linear_on_wgpu_equals_reference() {
    use rigl_kernels::catalogue::constant_fan_in_catalogue;
    use rigl_kernels::cpu_reference::condensed_linear as reference;
    use rigl_kernels::{Condensed, condensed_linear};
    let device = Device::wgpu(burn::tensor::DeviceKind::DefaultDevice);
    for p in constant_fan_in_catalogue(3_000_000) {
        let m = &p.matmul;
        let w = Condensed::from_linear(&m.weight, &m.mask, m.rows, m.cols).unwrap();
        let want = reference(&m.x, m.batch, &w).unwrap();
        let x = Tensor::<2>::from_data(TensorData::new(m.x.clone(), [m.batch, m.rows]), &device);
        let got = condensed_linear(x, &w)
            .unwrap()
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap();
        let k = w.k();
        for (e, (g, r)) in got.iter().zip(&want).enumerate() {
            let (b, j) = (e / m.cols, e % m.cols);
            let scale: f32 = (0..k)
                .map(|t| {
                    let i = w.indices()[j * k + t] as usize;
                    (w.values()[j * k + t] * m.x[b * m.rows + i]).abs()
                })
                .sum();
            let bound = (k + 2) as f32 * f32::EPSILON * scale;
            assert!((g - r).abs() <= bound, "{}: {g} vs {r} at {e}", m.name);
        }
    }
}

/// The sparse convolutions' fast CPU path equals the reference bit for bit over the catalogue,
/// and both equal Burn's dense convolution of the masked weight (and its autodiff gradients)
/// within `2 (terms + 2) f32::EPSILON sum |terms|` of each value, exactly zero at inactive taps.
#[test]
fn sparse_convolutions_fast_cpu_equals_reference() {
    use burn::tensor::module::conv2d;
    use burn::tensor::ops::ConvOptions;
    use rigl_kernels::SparsePattern;
    use rigl_kernels::catalogue::sparse_conv_catalogue;
    use rigl_kernels::cpu_reference::{
        sparse_conv2d, sparse_conv2d_input_grad, sparse_conv2d_weight_grad,
    };
    let problems = sparse_conv_catalogue(2_000_000);
    assert_eq!(problems.len(), 40);
    let device = Device::flex().autodiff();
    for p in &problems {
        let g = p.geometry;
        let pattern = SparsePattern::from_mask(g.channels_out, g.taps(), &p.mask).unwrap();
        let y = sparse_conv2d(&p.x, &p.weight, &pattern, &g).unwrap();
        let dx = sparse_conv2d_input_grad(&p.dy, &p.weight, &pattern, &g).unwrap();
        let dw = sparse_conv2d_weight_grad(&p.x, &p.dy, &pattern, &g).unwrap();
        assert!(
            y.iter().chain(&dx).chain(&dw).all(|v| v.is_finite()),
            "{}",
            p.name
        );
        let fast_y = cpu::sparse_conv2d(&p.x, &p.weight, &pattern, &g).unwrap();
        let fast_dx = cpu::sparse_conv2d_input_grad(&p.dy, &p.weight, &pattern, &g).unwrap();
        let fast_dw = cpu::sparse_conv2d_weight_grad(&p.x, &p.dy, &pattern, &g).unwrap();
        let (both_dx, both_dw) =
            cpu::sparse_conv2d_backward(&p.x, &p.dy, &p.weight, &pattern, &g, true).unwrap();
        assert_eq!(float_bits(&both_dx.unwrap()), float_bits(&dx), "{}", p.name);
        assert_eq!(float_bits(&both_dw), float_bits(&dw), "{}", p.name);
        assert_eq!(float_bits(&fast_y), float_bits(&y), "forward of {}", p.name);
        assert_eq!(
            float_bits(&fast_dx),
            float_bits(&dx),
            "input gradient of {}",
            p.name
        );
        assert_eq!(
            float_bits(&fast_dw),
            float_bits(&dw),
            "weight gradient of {}",
            p.name
        );
        assert!(
            dw.iter().zip(&p.mask).all(|(v, &m)| m || v.to_bits() == 0),
            "{}: gradient at an inactive tap",
            p.name
        );
        // Burn's dense convolution of the masked weight, and the same on |x|, |W|, |dy| for
        // the magnitudes of the sums.
        let [oh, ow] = g.output();
        let options = ConvOptions {
            stride: g.stride,
            padding: g.padding,
            dilation: g.dilation,
            groups: 1,
        };
        let xs = [g.batch, g.channels_in, g.input[0], g.input[1]];
        let ws = [g.channels_out, g.channels_in, g.kernel[0], g.kernel[1]];
        let ys = [g.batch, g.channels_out, oh, ow];
        let dense = |x: Vec<f32>, w: Vec<f32>, dy: Vec<f32>| {
            let x = Tensor::<4>::from_data(TensorData::new(x, xs), &device).require_grad();
            let w = Tensor::<4>::from_data(TensorData::new(w, ws), &device).require_grad();
            let dy = Tensor::<4>::from_data(TensorData::new(dy, ys), &device);
            let y = conv2d(x.clone(), w.clone(), None, options.clone());
            let grads = (y.clone() * dy).sum().backward();
            let host = |t: Tensor<4>| {
                t.into_data()
                    .convert::<f32>()
                    .try_into_vec::<f32>()
                    .unwrap()
            };
            [
                host(y),
                host(x.grad(&grads).unwrap()),
                host(w.grad(&grads).unwrap()),
            ]
        };
        let abs = |v: &[f32]| v.iter().map(|v| v.abs()).collect::<Vec<_>>();
        let want = dense(p.x.clone(), p.masked_weight(), p.dy.clone());
        let mag = dense(abs(&p.x), abs(&p.masked_weight()), abs(&p.dy));
        let terms = [
            g.taps(),
            g.channels_out * g.kernel[0] * g.kernel[1],
            g.batch * oh * ow,
        ];
        for (n, (what, got)) in [
            ("forward", &y),
            ("input gradient", &dx),
            ("weight gradient", &dw),
        ]
        .into_iter()
        .enumerate()
        {
            for (e, (a, b)) in got.iter().zip(&want[n]).enumerate() {
                if n == 2 && !p.mask[e] {
                    continue;
                }
                let bound = 2.0 * (terms[n] as f32 + 2.0) * f32::EPSILON * mag[n][e] * 1.01;
                assert!(
                    (a - b).abs() <= bound,
                    "{what} of {} at {e}: {a} vs {b}",
                    p.name
                );
            }
        }
    }
}

/// The tensor-level sparse convolution on `device`, forward and both gradients (through
/// autodiff), against the CPU reference: within `(terms + 2) * f32::EPSILON * sum |terms|` of
/// each value (the sums of `|terms|` are the reference on `|x|`, `|W|`, `|dy|`), and exactly
/// zero at inactive taps. The catalogue's weights are NaN at inactive taps, so a kernel that
/// reads one fails.
fn check_sparse_conv(max_work: usize, device: &Device) {
    use burn::tensor::ops::ConvOptions;
    use rigl_kernels::catalogue::sparse_conv_catalogue;
    use rigl_kernels::cpu_reference::{
        sparse_conv2d as forward, sparse_conv2d_input_grad as input_grad,
        sparse_conv2d_weight_grad as weight_grad,
    };
    use rigl_kernels::{SparsePattern, sparse_conv2d};
    use std::sync::Arc;
    let device = device.clone().autodiff();
    let problems = sparse_conv_catalogue(max_work);
    assert!(problems.len() >= 30, "{} problems", problems.len());
    for p in &problems {
        let g = p.geometry;
        let pattern =
            Arc::new(SparsePattern::from_mask(g.channels_out, g.taps(), &p.mask).unwrap());
        let [oh, ow] = g.output();
        let xs = [g.batch, g.channels_in, g.input[0], g.input[1]];
        let ws = [g.channels_out, g.channels_in, g.kernel[0], g.kernel[1]];
        let ys = [g.batch, g.channels_out, oh, ow];
        let options = ConvOptions {
            stride: g.stride,
            padding: g.padding,
            dilation: g.dilation,
            groups: 1,
        };
        let x = Tensor::<4>::from_data(TensorData::new(p.x.clone(), xs), &device).require_grad();
        let w =
            Tensor::<4>::from_data(TensorData::new(p.weight.clone(), ws), &device).require_grad();
        let dy = Tensor::<4>::from_data(TensorData::new(p.dy.clone(), ys), &device);
        let y = sparse_conv2d(x.clone(), w.clone(), &pattern, &options).unwrap();
        let grads = (y.clone() * dy).sum().backward();
        let host = |t: Tensor<4>| {
            t.into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .unwrap()
        };
        let got = [
            host(y),
            host(x.grad(&grads).unwrap()),
            host(w.grad(&grads).unwrap()),
        ];
        let want = [
            forward(&p.x, &p.weight, &pattern, &g).unwrap(),
            input_grad(&p.dy, &p.weight, &pattern, &g).unwrap(),
            weight_grad(&p.x, &p.dy, &pattern, &g).unwrap(),
        ];
        let abs = |v: &[f32]| v.iter().map(|v| v.abs()).collect::<Vec<_>>();
        let (ax, aw, ady) = (abs(&p.x), abs(&p.weight), abs(&p.dy));
        let mag = [
            forward(&ax, &aw, &pattern, &g).unwrap(),
            input_grad(&ady, &aw, &pattern, &g).unwrap(),
            weight_grad(&ax, &ady, &pattern, &g).unwrap(),
        ];
        let terms = [
            g.taps(),
            g.channels_out * g.kernel[0] * g.kernel[1],
            g.batch * oh * ow,
        ];
        for (n, what) in ["forward", "input gradient", "weight gradient"]
            .into_iter()
            .enumerate()
        {
            assert_eq!(got[n].len(), want[n].len(), "{what} of {}", p.name);
            for (e, (a, b)) in got[n].iter().zip(&want[n]).enumerate() {
                let bound = (terms[n] as f32 + 2.0) * f32::EPSILON * mag[n][e] * 1.01;
                assert!(
                    (a - b).abs() <= bound,
                    "{what} of {} at {e}: {a} vs {b}",
                    p.name
                );
            }
        }
        assert!(
            got[2]
                .iter()
                .zip(&p.mask)
                .all(|(v, &m)| m || v.to_bits() == 0),
            "{}: gradient at an inactive tap",
            p.name
        );
    }
}

#[test]
fn sparse_conv_on_the_cpu_backend_equals_reference() {
    check_sparse_conv(2_000_000, &Device::flex());
}

#[cfg(feature = "wgpu")]
#[test]
fn sparse_conv_on_wgpu_equals_reference() {
    check_sparse_conv(
        2_000_000,
        &Device::wgpu(burn::tensor::DeviceKind::DefaultDevice),
    );
}
