//! [`check_device`]: whether a device that this build includes is present.
//!
//! Burn's GPU backends initialise their device at its first operation and panic when there is
//! none (no adapter, no driver). A run that names such a device should fail at its start with
//! a typed error, not after loading its data, and not with a panic.

use crate::error::{Result, SparsityError};
use burn::tensor::{Device, Tensor, TensorData};

/// Run one small operation on `device` and read its result back.
///
/// The backend's panic, if any, is caught and turned into the error; the panic hook is
/// silenced for the duration of the probe (it is process-wide: call this at start-up, before
/// other threads run).
///
/// # Errors
/// [`SparsityError::DeviceUnavailable`] naming the device and the backend's reason.
pub fn check_device(device: &Device) -> Result<()> {
    let name = format!("{device:?}");
    let probe = || {
        let t = Tensor::<1>::from_data(TensorData::new(vec![1.0f32, 2.0], [2]), device);
        t.sum().into_scalar::<f32>()
    };
    // The backend may panic on its own thread (its device server) and the probe then fails on
    // a closed channel: keep every panic message of the probe, the first is the reason.
    let messages = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = messages.clone();
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "the backend panicked".into());
        seen.lock().unwrap_or_else(|p| p.into_inner()).push(message);
    }));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(probe));
    std::panic::set_hook(hook);
    match outcome {
        Ok(3.0) => Ok(()),
        Ok(sum) => Err(SparsityError::DeviceUnavailable {
            device: name,
            reason: format!("a test sum gave {sum}, not 3"),
        }),
        Err(_) => {
            let messages = messages.lock().unwrap_or_else(|p| p.into_inner());
            Err(SparsityError::DeviceUnavailable {
                device: name,
                reason: messages
                    .first()
                    .cloned()
                    .unwrap_or_else(|| "the backend panicked".into()),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_backend_is_always_there() {
        check_device(&Device::flex()).unwrap();
    }
}
