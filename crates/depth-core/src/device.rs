//! Device choice from a user-facing name ("cpu", "cuda", "cuda:N").

use crate::error::{CoreError, Result};
use candle_core::Device;

/// Parses a device name as the command-line tools accept it.
pub fn parse_device(name: &str) -> Result<Device> {
    let name = name.trim().to_ascii_lowercase();
    match name.as_str() {
        "cpu" => Ok(Device::Cpu),
        "cuda" => cuda(0, &name),
        _ => match name.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(ordinal)) => cuda(ordinal, &name),
            _ => Err(CoreError::UnknownDevice(name)),
        },
    }
}

#[cfg(feature = "cuda")]
fn cuda(ordinal: usize, _name: &str) -> Result<Device> {
    Ok(Device::new_cuda(ordinal)?)
}

#[cfg(not(feature = "cuda"))]
fn cuda(_ordinal: usize, name: &str) -> Result<Device> {
    Err(CoreError::UnknownDevice(name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(parse_device("cpu").unwrap().is_cpu());
        assert!(parse_device(" CPU ").unwrap().is_cpu());
        assert!(matches!(parse_device("tpu"), Err(CoreError::UnknownDevice(_))));
        assert!(matches!(parse_device("cuda:x"), Err(CoreError::UnknownDevice(_))));
        #[cfg(not(feature = "cuda"))]
        assert!(matches!(parse_device("cuda:0"), Err(CoreError::UnknownDevice(_))));
    }
}
