//! Burn's [`ModuleOptimizer`] as a [`SparseOptimizer`]: its state is reset through a host round
//! trip of its record (see the [module docs](super)).

use super::SparseOptimizer;
use crate::error::{Result, SparsityError};
use crate::mask::bools_to_host;
use burn::module::{Module, ParamId};
use burn::optim::lr_scheduler::module_lr_scheduler::ModuleLearningRate;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Bool, Bytes, DType, Tensor, TensorData};
use std::collections::HashMap;

fn state_error(e: &dyn ToString) -> SparsityError {
    SparsityError::OptimizerState(e.to_string())
}

impl SparseOptimizer for ModuleOptimizer {
    fn step<M: Module>(&mut self, lr: ModuleLearningRate, model: M, grads: GradientsParams) -> M {
        ModuleOptimizer::step(self, lr, model, grads)
    }

    fn reset_slots(&mut self, resets: &[(ParamId, Tensor<1, Bool>)]) -> Result<usize> {
        let host: HashMap<ParamId, Vec<bool>> = resets
            .iter()
            .map(|(id, r)| (*id, bools_to_host(r.clone())))
            .collect();
        reset_optimizer_slots(self, &host)
    }

    fn init_slots(&mut self, inits: &[(ParamId, Tensor<1, Bool>, Tensor<1>)]) -> Result<usize> {
        let host: HashMap<ParamId, (Vec<bool>, Vec<f32>)> = inits
            .iter()
            .map(|(id, r, v)| {
                (
                    *id,
                    (
                        bools_to_host(r.clone()),
                        crate::mask::floats_to_host(v.clone()),
                    ),
                )
            })
            .collect();
        edit_optimizer_slots(self, &host)
    }

    fn state_bytes(&self) -> Result<Bytes> {
        self.into_bytes().map_err(|e| state_error(&e))
    }

    fn with_state_bytes(self, bytes: Bytes) -> Result<Self> {
        check_record(&bytes)?;
        self.from_bytes(bytes).map_err(|e| state_error(&e))
    }
}

/// Burn's `ModuleOptimizer::from_bytes` panics on records it did not write itself (a tensor
/// without a parameter id, a rank above 8, a state tensor of another rank than its parameter's
/// `__rank`, a non-float state): refuse those first.
fn check_record(bytes: &Bytes) -> Result<()> {
    let reader = burn_pack::Reader::from_bytes(bytes.clone()).map_err(|e| state_error(&e))?;
    let mut ranks: HashMap<u64, usize> = HashMap::new();
    for (name, value) in reader.scalars() {
        if let Some(id) = name
            .strip_suffix(".__rank")
            .and_then(|i| i.parse::<u64>().ok())
        {
            let rank = u64::try_from(*value)
                .ok()
                .and_then(|r| usize::try_from(r).ok())
                .filter(|r| *r <= 8)
                .ok_or_else(|| {
                    state_error(&format!("`{name}` = {value:?} is not a rank in 0..=8"))
                })?;
            ranks.insert(id, rank);
        }
    }
    let tensors = reader.into_tensors().map_err(|e| state_error(&e))?;
    for t in &tensors {
        let Some(id) = t.param_id else {
            return Err(state_error(&format!(
                "state tensor `{}` names no parameter",
                t.name
            )));
        };
        if !t.dtype.is_float() {
            return Err(state_error(&format!(
                "state tensor `{}` is {:?}, not a float tensor",
                t.name, t.dtype
            )));
        }
        let rank = *ranks.entry(id).or_insert(t.shape.num_dims());
        if rank > 8 {
            return Err(state_error(&format!(
                "state tensor `{}` has rank {rank}",
                t.name
            )));
        }
    }
    // Burn reads a parameter's state by name (`{id}.…`), at the parameter's rank.
    for t in &tensors {
        let rank = t
            .name
            .split_once('.')
            .and_then(|(id, _)| id.parse::<u64>().ok())
            .and_then(|id| ranks.get(&id));
        if let Some(&rank) = rank
            && t.shape.num_dims() != rank
        {
            return Err(state_error(&format!(
                "state tensor `{}` has rank {}, its parameter {rank}",
                t.name,
                t.shape.num_dims()
            )));
        }
    }
    Ok(())
}

/// Zero, in `optim`'s state, every slot of the parameters in `resets` at the positions set in
/// their flat mask. Returns the number of state tensors edited.
///
/// # Errors
/// [`SparsityError::OptimizerState`] if the state cannot be serialised or read back.
pub fn reset_optimizer_slots(
    optim: &mut ModuleOptimizer,
    resets: &HashMap<ParamId, Vec<bool>>,
) -> Result<usize> {
    let edits = resets
        .iter()
        .map(|(id, r)| (*id, (r.clone(), vec![0.0; r.len()])))
        .collect();
    edit_optimizer_slots(optim, &edits)
}

/// Set, in `optim`'s state, every slot of the parameters in `edits` to the given values at the
/// positions set in their flat mask. Returns the number of state tensors edited.
fn edit_optimizer_slots(
    optim: &mut ModuleOptimizer,
    edits: &HashMap<ParamId, (Vec<bool>, Vec<f32>)>,
) -> Result<usize> {
    if edits.values().all(|(r, _)| !r.iter().any(|&b| b)) {
        return Ok(0);
    }
    let err = state_error;
    let bytes = optim.into_bytes().map_err(|e| err(&e))?;
    let reader = burn_pack::Reader::from_bytes(bytes).map_err(|e| err(&e))?;
    let scalars = reader.scalars().clone();
    let metadata = reader.metadata().clone();
    let tensors = reader.into_tensors().map_err(|e| err(&e))?;
    let by_id: HashMap<u64, &(Vec<bool>, Vec<f32>)> =
        edits.iter().map(|(id, e)| (id.val(), e)).collect();

    let mut edited = 0;
    let mut out = Vec::with_capacity(tensors.len());
    for t in tensors {
        let reset = t.param_id.and_then(|id| by_id.get(&id));
        let numel: usize = t.shape.as_slice().iter().product();
        match reset {
            Some((reset, values)) if numel == reset.len() && t.dtype.is_float() => {
                let (name, dtype, shape, id, bytes) = t.into_parts().map_err(|e| err(&e))?;
                let data = TensorData::from_bytes(bytes, shape.clone(), dtype);
                let data = set_at(data, reset, values).map_err(|e| err(&e))?;
                let (bytes, _, dtype) = data.into_parts();
                out.push(burn_pack::Tensor::new(name, dtype, shape, id, bytes));
                edited += 1;
            }
            _ => out.push(t),
        }
    }
    let mut writer = burn_pack::Writer::new(out);
    for (k, v) in &scalars {
        writer = writer.with_scalar(k, *v);
    }
    for (k, v) in &metadata {
        writer = writer.with_metadata(k, v);
    }
    let bytes: Bytes = writer.into_bytes().map_err(|e| err(&e))?;
    *optim = optim.clone().from_bytes(bytes).map_err(|e| err(&e))?;
    Ok(edited)
}

fn set_at(
    data: TensorData,
    reset: &[bool],
    new: &[f32],
) -> core::result::Result<TensorData, String> {
    let shape = data.shape().clone();
    let dtype = data.dtype();
    let mut values: Vec<f32> = data
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| format!("{e:?}"))?;
    for ((v, r), n) in values.iter_mut().zip(reset).zip(new) {
        if *r {
            *v = *n;
        }
    }
    let data = TensorData::new(values, shape);
    Ok(if dtype == DType::F32 {
        data
    } else {
        data.convert_dtype(dtype)
    })
}
