//! Segmented top-k selection: this crate's selection against full sorts and Burn's `sort` /
//! `topk`, over problems of the shared catalogue.
//!
//! ```text
//! cargo bench --bench topk                      # CPU
//! cargo bench --bench topk --features wgpu      # CPU and wgpu (lavapipe in CI)
//! ```
//!
//! Every case reports elements per second. `memcpy` measures the machine's copy bandwidth, the
//! reference for the fraction of memory bandwidth in `benches/RESULTS.md`.

use burn::tensor::{Bool, Device, Tensor, TensorData};
use divan::counter::{BytesCount, ItemsCount};
use divan::{Bencher, black_box};
use rigl_burn::kernels::catalogue::{self, KRule, Layout, Pattern, Problem};
use rigl_burn::kernels::{cpu, cpu_reference, f32_key};
use std::sync::OnceLock;

fn main() {
    divan::main();
}

/// Sizes of the single-segment cases.
const SIZES: [usize; 3] = [100_000, 1_000_000, 10_000_000];

fn single(n: usize) -> &'static Problem {
    static CACHE: OnceLock<Vec<Problem>> = OnceLock::new();
    CACHE
        .get_or_init(|| {
            SIZES
                .iter()
                .map(|&n| {
                    catalogue::problem(
                        Pattern::Uniform,
                        Layout::Single,
                        n,
                        KRule::Fraction(0.3),
                        None,
                        7,
                    )
                })
                .collect()
        })
        .iter()
        .find(|p| p.len() == n)
        .expect("a catalogue size")
}

fn resnet() -> &'static Problem {
    static CACHE: OnceLock<Problem> = OnceLock::new();
    CACHE.get_or_init(|| catalogue::resnet50(None))
}

fn resnet_masked() -> &'static Problem {
    static CACHE: OnceLock<Problem> = OnceLock::new();
    CACHE.get_or_init(|| catalogue::resnet50(Some(0.5)))
}

/// The definition by a full sort of every segment: what the reference used to do.
fn full_sort(p: &Problem) -> Vec<bool> {
    let mut mask = vec![false; p.len()];
    for s in &p.segments {
        let mut packed: Vec<u64> = (0..s.len)
            .filter(|&j| p.eligible.as_ref().is_none_or(|e| e[s.offset + j]))
            .filter_map(|j| f32_key(p.scores[s.offset + j]).map(|k| ((!k as u64) << 32) | j as u64))
            .collect();
        packed.sort_unstable();
        for w in &packed[..s.k] {
            mask[s.offset + (*w & 0xFFFF_FFFF) as usize] = true;
        }
    }
    mask
}

mod cpu_host {
    use super::*;

    #[divan::bench(args = SIZES, sample_count = 10)]
    fn radix_select(bencher: Bencher, n: usize) {
        let p = single(n);
        bencher
            .counter(ItemsCount::new(n))
            .bench(|| cpu::segmented_top_k_mask(&p.scores, None, &p.segments).unwrap());
    }

    #[divan::bench(args = SIZES, sample_count = 10)]
    fn reference_select_nth(bencher: Bencher, n: usize) {
        let p = single(n);
        bencher
            .counter(ItemsCount::new(n))
            .bench(|| cpu_reference::segmented_top_k_mask(&p.scores, None, &p.segments).unwrap());
    }

    #[divan::bench(args = SIZES, sample_count = 5)]
    fn full_sort(bencher: Bencher, n: usize) {
        let p = single(n);
        bencher
            .counter(ItemsCount::new(n))
            .bench(|| super::full_sort(p));
    }

    #[divan::bench(sample_count = 10)]
    fn resnet50_radix_select(bencher: Bencher) {
        let p = resnet();
        bencher
            .counter(ItemsCount::new(p.len()))
            .bench(|| cpu::segmented_top_k_mask(&p.scores, None, &p.segments).unwrap());
    }

    #[divan::bench(sample_count = 10)]
    fn resnet50_masked_radix_select(bencher: Bencher) {
        let p = resnet_masked();
        bencher.counter(ItemsCount::new(p.len())).bench(|| {
            cpu::segmented_top_k_mask(&p.scores, p.eligible.as_deref(), &p.segments).unwrap()
        });
    }

    #[divan::bench(sample_count = 5)]
    fn resnet50_reference_select_nth(bencher: Bencher) {
        let p = resnet();
        bencher
            .counter(ItemsCount::new(p.len()))
            .bench(|| cpu_reference::segmented_top_k_mask(&p.scores, None, &p.segments).unwrap());
    }

    #[divan::bench(sample_count = 3)]
    fn resnet50_full_sort(bencher: Bencher) {
        let p = resnet();
        bencher
            .counter(ItemsCount::new(p.len()))
            .bench(|| super::full_sort(p));
    }

    #[divan::bench(sample_count = 10)]
    fn resnet50_random(bencher: Bencher) {
        let p = resnet();
        let segments: Vec<_> = p
            .segments
            .iter()
            .enumerate()
            .map(|(i, s)| rigl_burn::kernels::RandomSegment {
                offset: s.offset,
                len: s.len,
                k: s.k,
                stream: i as u32,
            })
            .collect();
        bencher
            .counter(ItemsCount::new(p.len()))
            .bench(|| cpu::segmented_random_top_k_mask(1, 0, p.len(), None, &segments).unwrap());
    }

    /// Copy bandwidth of the machine: read and write 25.5M `f32`.
    #[divan::bench(sample_count = 10)]
    fn memcpy(bencher: Bencher) {
        let p = resnet();
        let mut out = vec![0f32; p.len()];
        bencher
            .counter(BytesCount::new(p.len() * 8))
            .bench_local(|| out.copy_from_slice(black_box(&p.scores)));
    }
}

/// The tensor API and Burn's own ops on a device.
fn tensor_cases(device: &Device, p: &Problem) -> (Tensor<1>, Option<Tensor<1, Bool>>) {
    let n = p.len();
    let scores = Tensor::<1>::from_data(TensorData::new(p.scores.clone(), [n]), device);
    let eligible = p
        .eligible
        .as_ref()
        .map(|e| Tensor::<1, Bool>::from_data(TensorData::new(e.clone(), [n]), device));
    (scores, eligible)
}

fn select_on(device: &Device, p: &Problem, bencher: Bencher) {
    let (scores, eligible) = tensor_cases(device, p);
    bencher.counter(ItemsCount::new(p.len())).bench(|| {
        let sel =
            rigl_burn::kernels::segmented_top_k_mask(scores.clone(), eligible.clone(), &p.segments)
                .unwrap();
        device.sync().unwrap();
        sel
    });
}

/// Burn's sort path: a descending argsort of the single segment, whose first `k` indices are
/// the selection (the scatter into a mask is not even included).
fn argsort_on(device: &Device, p: &Problem, bencher: Bencher) {
    let (scores, _) = tensor_cases(device, p);
    let k = p.segments[0].k;
    bencher.counter(ItemsCount::new(p.len())).bench(|| {
        let idx = scores.clone().argsort_descending(0).slice(0..k);
        device.sync().unwrap();
        idx
    });
}

/// Burn's `topk` (values only), for a `k` it supports.
fn burn_topk_on(device: &Device, p: &Problem, k: usize, bencher: Bencher) {
    let (scores, _) = tensor_cases(device, p);
    bencher.counter(ItemsCount::new(p.len())).bench(|| {
        let v = scores.clone().topk(k, 0);
        device.sync().unwrap();
        v
    });
}

fn select_k_on(device: &Device, p: &Problem, k: usize, bencher: Bencher) {
    let (scores, _) = tensor_cases(device, p);
    bencher.counter(ItemsCount::new(p.len())).bench(|| {
        let sel = rigl_burn::kernels::top_k_mask(scores.clone(), None, k).unwrap();
        device.sync().unwrap();
        sel
    });
}

mod cpu_backend {
    use super::*;

    #[divan::bench(args = SIZES, sample_count = 5)]
    fn select(bencher: Bencher, n: usize) {
        select_on(&Device::flex(), single(n), bencher);
    }

    #[divan::bench(args = SIZES, sample_count = 3)]
    fn burn_argsort(bencher: Bencher, n: usize) {
        argsort_on(&Device::flex(), single(n), bencher);
    }

    #[divan::bench(args = SIZES, sample_count = 5)]
    fn select_k256(bencher: Bencher, n: usize) {
        select_k_on(&Device::flex(), single(n), 256, bencher);
    }

    #[divan::bench(args = SIZES, sample_count = 5)]
    fn burn_topk_k256(bencher: Bencher, n: usize) {
        burn_topk_on(&Device::flex(), single(n), 256, bencher);
    }

    #[divan::bench(sample_count = 5)]
    fn resnet50_select(bencher: Bencher) {
        select_on(&Device::flex(), resnet(), bencher);
    }
}

#[cfg(feature = "wgpu")]
mod wgpu {
    use super::*;
    use burn::tensor::DeviceKind;

    fn device() -> Device {
        Device::wgpu(DeviceKind::DefaultDevice)
    }

    #[divan::bench(args = SIZES, sample_count = 5)]
    fn select(bencher: Bencher, n: usize) {
        select_on(&device(), single(n), bencher);
    }

    #[divan::bench(args = SIZES, sample_count = 3)]
    fn burn_argsort(bencher: Bencher, n: usize) {
        argsort_on(&device(), single(n), bencher);
    }

    #[divan::bench(args = SIZES, sample_count = 5)]
    fn select_k256(bencher: Bencher, n: usize) {
        select_k_on(&device(), single(n), 256, bencher);
    }

    #[divan::bench(args = SIZES, sample_count = 5)]
    fn burn_topk_k256(bencher: Bencher, n: usize) {
        burn_topk_on(&device(), single(n), 256, bencher);
    }

    #[divan::bench(sample_count = 5)]
    fn resnet50_select(bencher: Bencher) {
        select_on(&device(), resnet(), bencher);
    }

    #[divan::bench(sample_count = 5)]
    fn resnet50_masked_select(bencher: Bencher) {
        select_on(&device(), resnet_masked(), bencher);
    }

    #[divan::bench(sample_count = 5)]
    fn resnet50_random(bencher: Bencher) {
        let p = resnet();
        let device = device();
        let segments: Vec<_> = p
            .segments
            .iter()
            .enumerate()
            .map(|(i, s)| rigl_burn::kernels::RandomSegment {
                offset: s.offset,
                len: s.len,
                k: s.k,
                stream: i as u32,
            })
            .collect();
        bencher.counter(ItemsCount::new(p.len())).bench(|| {
            let m = rigl_burn::kernels::random_top_k_mask(1, 0, p.len(), None, &segments, &device)
                .unwrap();
            device.sync().unwrap();
            m
        });
    }
}
