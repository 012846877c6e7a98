//! The mask update of a step: the flat inputs of every masked layer, the updater's decision,
//! and writing it back (masks, grow initialisation, optimizer slots).

use super::grow_init::{normal_samples, shuffled, uniform_samples};
use super::{GrowInit, LayerUpdateStats, SparseTrainer, UpdateStats, count_true};
use crate::error::{Result, SparsityError};
use crate::layers::KernelParam;
use crate::module_path::ModulePath;
use crate::optim::SparseOptimizer;
use crate::param_context::ParamContext;
use crate::sparsify::{Sparsify, flat_weights};
use crate::updater::{LayerSlot, MaskUpdater, UpdateContext, UpdateDecision, UpdateInput};
use burn::module::{Module, ModuleMapper, Param, ParamId};
use burn::tensor::{Bool, Device, Tensor, TensorData};
use std::collections::HashMap;

impl SparseTrainer {
    pub(super) fn update_masks<M: Module, O: SparseOptimizer>(
        &self,
        updater: &mut dyn MaskUpdater,
        model: M,
        optim: &mut O,
        dense: &HashMap<ParamId, Tensor<1>>,
        t: i64,
    ) -> Result<(M, UpdateStats)> {
        let schedule = self.config.schedule();
        let ctx = UpdateContext {
            step: t,
            drop_fraction: schedule.drop_fraction_at(t),
            seed: self.sparsity.seed,
            allow_regrow: self.config.allow_regrow,
            begin_step: schedule.begin_step,
            end_step: schedule.end_step,
            threshold_decay: self.config.threshold_decay,
            weight_decay: self.config.weight_decay,
        };
        let layers = model.sparse_layers();
        let (input, ids) = self.update_input(&model, &layers, dense)?;
        if input.is_empty() {
            return Ok((
                model,
                UpdateStats {
                    step: t,
                    drop_fraction: ctx.drop_fraction,
                    layers: Vec::new(),
                },
            ));
        }
        let non_finite = non_finite_counts(&input);
        for (s, &(weights, _)) in input.layers.iter().zip(&non_finite) {
            // The layer's planned active connections must be choosable among finite weights;
            // beyond that the update cannot be made meaningfully.
            let needed = s.target_active;
            if weights > 0 && s.len - weights < needed {
                return Err(SparsityError::NonFiniteWeights {
                    path: s.path.clone(),
                    step: t,
                    non_finite: weights,
                    finite: s.len - weights,
                    needed,
                });
            }
        }
        let decision = updater.update(&ctx, &input)?;

        // Per-layer counts of the decision: from the updater when it counted them, otherwise
        // from the masks, read back in one transfer.
        let counts: Vec<usize> = match &decision.changes {
            Some(changes) => changes
                .iter()
                .flat_map(|c| [c.active, c.reset, c.dropped])
                .collect(),
            None => {
                let dropped = input
                    .mask
                    .clone()
                    .bool_and(decision.mask.clone().bool_not());
                let mut parts = Vec::with_capacity(3 * input.layers.len());
                for s in &input.layers {
                    for t in [&decision.mask, &decision.reset, &dropped] {
                        parts.push(t.clone().narrow(0, s.offset, s.len));
                    }
                }
                count_true(parts)
            }
        };
        // Structured layers were decided on their output-major views.
        let decision = UpdateDecision {
            mask: input.to_stored(decision.mask),
            reset: input.to_stored(decision.reset),
            changes: decision.changes,
        };
        let mut new_masks = HashMap::new();
        let mut resets = HashMap::new();
        let mut slot_resets = Vec::new();
        let mut stats = Vec::with_capacity(input.layers.len());
        for (((s, id), c), nf) in input
            .layers
            .iter()
            .zip(&ids)
            .zip(counts.chunks_exact(3))
            .zip(&non_finite)
        {
            let (active, reset, dropped) = (c[0], c[1], c[2]);
            stats.push(LayerUpdateStats {
                path: s.path.clone(),
                active,
                reset,
                dropped,
                non_finite_weights: nf.0,
                non_finite_gradients: nf.1,
            });
            if reset > 0 {
                let r = decision.reset.clone().narrow(0, s.offset, s.len);
                slot_resets.push((*id, r.clone()));
                resets.insert(s.path.clone(), r);
            }
            if dropped > 0 || active != s.n_active {
                new_masks.insert(
                    s.path.clone(),
                    decision.mask.clone().narrow(0, s.offset, s.len),
                );
            }
        }
        let mut mapper = UpdateMapper {
            path: ModulePath::default(),
            masks: new_masks,
            resets,
            grow_init: self.config.grow_init,
            seed: self.sparsity.seed,
            step: t,
            gradients: dense,
            initial_weights: &self.initial_weights,
        };
        let model = model.map(&mut mapper);
        let acc_scale = self.config.rigl_acc_scale;
        if acc_scale != 0.0 {
            // RigL's rigl_acc_scale: the slots of new connections start at
            // acc_scale * dL/d(w*m).
            let inits: Vec<_> = slot_resets
                .iter()
                .map(|(id, r)| {
                    let g = dense.get(id).cloned().ok_or_else(|| {
                        SparsityError::InvalidSetting(
                            "rigl_acc_scale needs the dense gradient of every updated layer".into(),
                        )
                    })?;
                    Ok((*id, r.clone(), g.without_autodiff().mul_scalar(acc_scale)))
                })
                .collect::<Result<_>>()?;
            optim.init_slots(&inits)?;
        } else {
            optim.reset_slots(&slot_resets)?;
        }
        Ok((
            model,
            UpdateStats {
                step: t,
                drop_fraction: ctx.drop_fraction,
                layers: stats,
            },
        ))
    }

    /// The flat buffers of an update: every masked layer's weights, mask and dense gradient,
    /// concatenated on the model's device; and the layers' parameter ids.
    fn update_input<M: Module>(
        &self,
        model: &M,
        layers: &[KernelParam],
        dense: &HashMap<ParamId, Tensor<1>>,
    ) -> Result<(UpdateInput, Vec<ParamId>)> {
        let plan = self.plan.as_ref().expect("updates need a plan");
        let layers: Vec<(&KernelParam, Tensor<1, Bool>)> = layers
            .iter()
            .filter_map(|l| l.mask.clone().map(|m| (l, m)))
            .collect();
        let mut weights = flat_weights(model, layers.iter().map(|(l, _)| l.path.as_str()));
        let n_active = count_true(layers.iter().map(|(_, m)| m.clone()).collect());
        let mut slots = Vec::with_capacity(layers.len());
        let mut groups = Vec::with_capacity(layers.len());
        let mut w = Vec::with_capacity(layers.len());
        let mut offset = 0;
        for ((l, mask), n_active) in layers.iter().zip(n_active) {
            let weight = weights
                .remove(&l.path)
                .ok_or_else(|| SparsityError::UnknownLayer {
                    path: l.path.clone(),
                })?;
            let len = mask.dims()[0];
            let planned = plan.layer(&l.path);
            slots.push(LayerSlot {
                path: l.path.clone(),
                offset,
                len,
                n_active,
                target_active: planned.map(|p| p.n_active).unwrap_or(n_active),
                target_sparsity: planned
                    .map(|p| p.sparsity)
                    .unwrap_or(1.0 - n_active as f64 / len.max(1) as f64),
                groups: None,
                global: planned.is_some_and(|p| p.role.follows_distribution()),
            });
            groups.push(planned.and_then(|p| p.groups));
            w.push(weight);
            offset += len;
        }
        let ids = layers.iter().map(|(l, _)| l.id).collect();
        if slots.is_empty() {
            let device = Device::default();
            let input = UpdateInput {
                layers: slots,
                weights: Tensor::zeros([0], &device),
                mask: Tensor::zeros([0], &device),
                dense_grad: None,
            };
            return Ok((input, ids));
        }
        let cat = |parts: Option<Vec<Tensor<1>>>| {
            parts.map(|p| Tensor::cat(p.into_iter().map(Tensor::without_autodiff).collect(), 0))
        };
        let dense_grad = cat(layers
            .iter()
            .map(|(l, _)| dense.get(&l.id).cloned())
            .collect());
        let input = UpdateInput {
            layers: slots,
            weights: Tensor::cat(w, 0),
            mask: Tensor::cat(
                layers
                    .into_iter()
                    .map(|(_, m)| m.without_autodiff())
                    .collect(),
                0,
            ),
            dense_grad,
        }
        .with_structure(&groups);
        Ok((input, ids))
    }
}

/// Per layer of `input`: its NaN or infinite weights and dense-gradient entries (0 without a
/// dense gradient), read back in one transfer.
fn non_finite_counts(input: &UpdateInput) -> Vec<(usize, usize)> {
    let bad = |t: &Tensor<1>| t.clone().is_finite().bool_not();
    let weights = bad(&input.weights);
    let grads = input.dense_grad.as_ref().map(bad);
    let mut parts = Vec::new();
    for s in &input.layers {
        parts.push(weights.clone().narrow(0, s.offset, s.len));
        if let Some(g) = &grads {
            parts.push(g.clone().narrow(0, s.offset, s.len));
        }
    }
    let counts = count_true(parts);
    let per = if grads.is_some() { 2 } else { 1 };
    counts
        .chunks_exact(per)
        .map(|c| (c[0], c.get(1).copied().unwrap_or(0)))
        .collect()
}

/// Writes new masks and sets the weights at new connections to the grow initialisation.
struct UpdateMapper<'a> {
    path: ModulePath,
    masks: HashMap<String, Tensor<1, Bool>>,
    resets: HashMap<String, Tensor<1, Bool>>,
    grow_init: GrowInit,
    seed: u64,
    step: i64,
    gradients: &'a HashMap<ParamId, Tensor<1>>,
    initial_weights: &'a HashMap<String, Tensor<1>>,
}

impl UpdateMapper<'_> {
    /// The grow values of the layer at `path` (flat, `n` of them), from its stored weights
    /// `weights` (flat, inner backend) and its dense gradient `gradient`; `None` for zeros.
    fn grow_values(
        &self,
        path: &str,
        weights: &Tensor<1>,
        gradient: Option<&Tensor<1>>,
    ) -> Option<Tensor<1>> {
        let device = weights.device();
        let n = weights.dims()[0];
        let divisor = self.grow_init.divisor();
        let upload = |v: Vec<f32>| Tensor::<1>::from_data(TensorData::new(v, [n]), &device);
        let gradient = || {
            gradient
                .cloned()
                .expect("validated: gradient grow inits are RigL's, which has the dense gradient")
                .without_autodiff()
                .to_device(&device)
        };
        let values = match self.grow_init {
            GrowInit::Zeros => return None,
            GrowInit::RandomNormal(_) => {
                // reduce_std: the population deviation of every stored weight of the layer.
                let std = weights.clone().var_bias(0).sqrt();
                upload(normal_samples(self.seed, path, self.step, n, 1.0)) * std.expand([n])
            }
            GrowInit::RandomUniform(_) => {
                let mean = weights.clone().abs().mean();
                upload(uniform_samples(self.seed, path, self.step, n)) * mean.expand([n])
            }
            GrowInit::InitialDist(_) => {
                // Without kept initial weights (an older checkpoint), the current ones.
                let initial = self
                    .initial_weights
                    .get(path)
                    .map(|t| crate::mask::floats_to_host(t.clone()))
                    .unwrap_or_else(|| crate::mask::floats_to_host(weights.clone()));
                upload(shuffled(self.seed, path, self.step, initial))
            }
            GrowInit::GradScale(_) => gradient(),
            GrowInit::GradSign(_) => gradient().sign(),
        };
        Some(if divisor == 1.0 {
            values
        } else {
            values.div_scalar(divisor as f32)
        })
    }
}

impl ModuleMapper for UpdateMapper<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.enter(name);
    }

    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.exit();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let path = self.path.joined();
        let Some(reset) = self.resets.remove(&path) else {
            return param;
        };
        let id = param.id;
        let gradient = self.gradients.get(&id).cloned();
        param.map(move |t| {
            let shape = t.shape();
            let reset = reset.reshape(shape.clone());
            let context = ParamContext::capture(&t);
            let inner = t.inner();
            let flat: Tensor<1> = inner.clone().reshape([-1]);
            let updated = match self.grow_values(&path, &flat, gradient.as_ref()) {
                None => inner.mask_fill(reset, 0.0),
                Some(values) => inner.mask_where(reset, values.reshape(shape)),
            };
            context.restore(updated, id)
        })
    }

    fn map_bool<const D: usize>(
        &mut self,
        param: Param<Tensor<D, Bool>>,
    ) -> Param<Tensor<D, Bool>> {
        let Some(weight) = self.path.mask_field("mask").filter(|_| D == 1) else {
            return param;
        };
        let Some(values) = self.masks.remove(&weight) else {
            return param;
        };
        // A new mask gets a new id (derived from the old one, so resumed runs stay identical):
        // sparse layers cache their pattern by mask id (`nn::PatternCache`).
        let (id, old, mapper) = param.consume();
        let values = values.reshape(old.shape());
        Param::from_mapped_value(ParamId::from(next_mask_id(id.val())), values, mapper)
    }
}

/// The id of a mask parameter after an update: a SplitMix64 step of the old id.
fn next_mask_id(id: u64) -> u64 {
    let mut z = id.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
