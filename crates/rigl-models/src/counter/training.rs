//! Training FLOPs per step, by method, and gradual pruning's schedule.

use super::{SpatialRule, TrainingOptions, count_layer};
use crate::spec::LayerSpec;
use rigl_core::Method;

/// Forward FLOPs of `layers` at `sparsities`.
pub(super) fn forward_flops(layers: &[LayerSpec], sparsities: &[f64], rule: SpatialRule) -> f64 {
    layers
        .iter()
        .zip(sparsities)
        .map(|(l, &s)| count_layer(l, s, s > 0.0, rule).flops)
        .sum()
}

/// Per-step training FLOPs of `method` from `f_s` and `f_d`.
pub(super) fn step_flops(method: Method, delta_t: u64, f_s: f64, f_d: f64) -> f64 {
    match method {
        Method::Dense => 3.0 * f_d,
        Method::Scratch | Method::StaticRezero | Method::Set | Method::Snip => 3.0 * f_s,
        // STE: sparse forward and input gradient, the weight gradient of every stored weight.
        Method::Snfs | Method::Ste => 2.0 * f_s + f_d,
        Method::Rigl | Method::Prune => {
            let dt = delta_t as f64;
            (3.0 * f_s * dt + 2.0 * f_s + f_d) / (dt + 1.0)
        }
    }
}

/// The sparsity in force at each step of a pruning run, as `(first step, steps, s_t)` runs.
pub(super) fn pruning_segments(final_sparsity: f64, t: &TrainingOptions) -> Vec<(u64, u64, f64)> {
    let p = t.pruning;
    let span = (p.end_step - p.begin_step) as f64;
    let mut events: Vec<u64> = (p.begin_step..p.end_step)
        .step_by(t.delta_t as usize)
        .collect();
    events.push(p.end_step);
    let mut segments = vec![(0, p.begin_step.min(p.total_steps), 0.0)];
    for (i, &e) in events.iter().enumerate() {
        if e >= p.total_steps {
            break;
        }
        let next = events.get(i + 1).copied().unwrap_or(u64::MAX);
        let len = next.min(p.total_steps) - e;
        let frac = ((e - p.begin_step) as f64 / span).clamp(0.0, 1.0);
        segments.push((e, len, final_sparsity * (1.0 - (1.0 - frac).powi(3))));
    }
    segments.retain(|s| s.1 > 0);
    segments
}
