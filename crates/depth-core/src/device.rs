//! Why this file: commands, configs and the library all name a device the same way ("cpu",
//! "cuda", "cuda:N"). The name is parsed once where it comes in (a flag, a config key) into
//! [`DeviceSpec`]; the candle device is opened where the work starts.

use crate::error::{CoreError, Result};
use candle_core::Device;
use std::fmt;
use std::str::FromStr;

/// A device as the user names it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DeviceSpec {
    #[default]
    Cpu,
    /// The GPU of this ordinal (`cuda` is `cuda:0`).
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = CoreError;

    /// `cpu`, `cuda` or `cuda:N` (any case, surrounding blanks ignored). A build without the
    /// `cuda` feature parses CUDA names too and refuses them when opened.
    fn from_str(name: &str) -> Result<Self> {
        let name = name.trim().to_ascii_lowercase();
        match name.as_str() {
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            _ => match name.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(ordinal)) => Ok(Self::Cuda(ordinal)),
                _ => Err(CoreError::UnknownDevice(name)),
            },
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl serde::Serialize for DeviceSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for DeviceSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl DeviceSpec {
    /// The candle device (a CUDA device needs a build with the `cuda` feature and that GPU).
    pub fn open(self) -> Result<Device> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Cuda(ordinal) => cuda(ordinal),
        }
    }
}

#[cfg(feature = "cuda")]
fn cuda(ordinal: usize) -> Result<Device> {
    Ok(Device::new_cuda(ordinal)?)
}

#[cfg(not(feature = "cuda"))]
fn cuda(ordinal: usize) -> Result<Device> {
    Err(CoreError::NoCuda { device: DeviceSpec::Cuda(ordinal).to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_print_and_round_trip() {
        let parse = |s: &str| s.parse::<DeviceSpec>();
        assert_eq!(parse("cpu").unwrap(), DeviceSpec::Cpu);
        assert_eq!(parse(" CPU ").unwrap(), DeviceSpec::Cpu);
        assert_eq!(parse("cuda").unwrap(), DeviceSpec::Cuda(0));
        assert_eq!(parse("cuda:3").unwrap(), DeviceSpec::Cuda(3));
        assert!(matches!(parse("tpu"), Err(CoreError::UnknownDevice(_))));
        assert!(matches!(parse("cuda:x"), Err(CoreError::UnknownDevice(_))));
        for d in [DeviceSpec::Cpu, DeviceSpec::Cuda(0), DeviceSpec::Cuda(7)] {
            assert_eq!(parse(&d.to_string()).unwrap(), d);
        }
        assert!(DeviceSpec::Cpu.open().unwrap().is_cpu());
        #[cfg(not(feature = "cuda"))]
        {
            let err = DeviceSpec::Cuda(1).open().unwrap_err().to_string();
            assert!(err.contains("cuda:1") && err.contains("--features cuda"), "{err}");
        }
    }

    #[test]
    fn configs_hold_it_as_text() {
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct C {
            device: DeviceSpec,
        }
        let c: C = toml::from_str("device = \"cuda:2\"").unwrap();
        assert_eq!(c.device, DeviceSpec::Cuda(2));
        assert_eq!(toml::to_string(&c).unwrap().trim(), "device = \"cuda:2\"");
        let err = toml::from_str::<C>("device = \"gpu\"").unwrap_err().to_string();
        assert!(err.contains("unknown device 'gpu'"), "{err}");
    }
}
