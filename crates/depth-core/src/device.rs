//! Why this file: commands, configs and the library all name a device the same way ("cpu",
//! "cuda", "cuda:N"). The name is parsed once where it comes in (a flag, a config key) into
//! [`DeviceSpec`]; the candle device is opened where the work starts. Plain `cuda` is the GPU of
//! this process's local rank, so one config serves every rank of a job with one rank per GPU.

use crate::error::{CoreError, Result};
use candle_core::Device;
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

/// A device as the user names it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DeviceSpec {
    #[default]
    Cpu,
    /// `cuda:N`: that GPU; `cuda`: the GPU of the local rank ([`local_rank`]; 0 when alone).
    Cuda(Option<usize>),
}

impl FromStr for DeviceSpec {
    type Err = CoreError;

    /// `cpu`, `cuda` or `cuda:N` (any case, surrounding blanks ignored). A build without the
    /// `cuda` feature parses CUDA names too and refuses them when opened.
    fn from_str(name: &str) -> Result<Self> {
        let name = name.trim().to_ascii_lowercase();
        match name.as_str() {
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(None)),
            _ => match name.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(ordinal)) => Ok(Self::Cuda(Some(ordinal))),
                _ => Err(CoreError::UnknownDevice(name)),
            },
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(None) => f.write_str("cuda"),
            Self::Cuda(Some(n)) => write!(f, "cuda:{n}"),
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
    /// The device this process uses: plain `cuda` becomes `cuda:<local rank>`.
    pub fn resolve(self) -> Result<Self> {
        Ok(match self {
            Self::Cuda(None) => Self::Cuda(Some(local_rank()?)),
            other => other,
        })
    }

    /// The candle device (a CUDA device needs a build with the `cuda` feature and that GPU).
    pub fn open(self) -> Result<Device> {
        match self.resolve()? {
            Self::Cpu => Ok(Device::Cpu),
            Self::Cuda(ordinal) => cuda(ordinal.unwrap_or(0)),
        }
    }

    pub fn is_cuda(self) -> bool {
        matches!(self, Self::Cuda(_))
    }
}

/// Where the launchers put a process's rank on its own machine, in the order they are trusted:
/// OpenMPI, MPICH (Hydra), Slurm, torchrun.
const LOCAL_RANK_VARS: [&str; 4] =
    ["OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID", "LOCAL_RANK"];

/// This process's rank on its machine as its launcher set it; 0 when no launcher did.
pub fn local_rank() -> Result<usize> {
    local_rank_from(|k| std::env::var(k).ok())
}

/// [`local_rank`] over any variable lookup (tested without touching the environment).
pub fn local_rank_from(var: impl Fn(&str) -> Option<String>) -> Result<usize> {
    for name in LOCAL_RANK_VARS {
        if let Some(v) = var(name) {
            return v.trim().parse().map_err(|_| CoreError::Device {
                device: "cuda".into(),
                reason: format!("{name}={v:?} is not a number (the launcher sets it; do not set it by hand)"),
            });
        }
    }
    Ok(0)
}

/// Whether LayerNorm, softmax, GELU and attention on CUDA tensors run depth-core's fused
/// kernels (`cuda/`) instead of the composed candle ops. Off unless `DEPTH_CUDA_KERNELS=fused`
/// or [`set_fused_cuda_kernels`] says so: the composed path is the one checked on an H100, the
/// fused kernels are unverified until a device run has compared them with the CPU (docs/gpu.md).
pub fn fused_cuda_kernels() -> bool {
    match FUSED.load(Ordering::Relaxed) {
        UNSET => {
            let on = says_fused(std::env::var("DEPTH_CUDA_KERNELS").ok().as_deref());
            FUSED.store(if on { ON } else { OFF }, Ordering::Relaxed);
            on
        }
        v => v == ON,
    }
}

/// `DEPTH_CUDA_KERNELS`'s value: `fused` (any case) turns them on; anything else, or unset, off.
fn says_fused(value: Option<&str>) -> bool {
    value.is_some_and(|v| v.trim().eq_ignore_ascii_case("fused"))
}

/// Turns the fused CUDA kernels on or off for the whole process (see [`fused_cuda_kernels`]).
pub fn set_fused_cuda_kernels(on: bool) {
    FUSED.store(if on { ON } else { OFF }, Ordering::Relaxed);
}

/// How many of depth-core's fused CUDA kernels this process has launched (always 0 without
/// CUDA): how a test tells that an op took the kernels and not the composed path.
pub fn fused_kernel_launches() -> usize {
    LAUNCHES.load(Ordering::Relaxed)
}

#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
pub(crate) fn count_launch() {
    LAUNCHES.fetch_add(1, Ordering::Relaxed);
}

static LAUNCHES: AtomicUsize = AtomicUsize::new(0);

const UNSET: u8 = 0;
const OFF: u8 = 1;
const ON: u8 = 2;
static FUSED: AtomicU8 = AtomicU8::new(UNSET);

/// The fused kernels take this tensor: a CUDA build, a non-empty CUDA tensor of float32 or
/// bfloat16, and the switch on.
pub(crate) fn fused_route(t: &candle_core::Tensor) -> bool {
    cfg!(feature = "cuda")
        && t.device().is_cuda()
        && t.elem_count() > 0
        && matches!(t.dtype(), candle_core::DType::F32 | candle_core::DType::BF16)
        && fused_cuda_kernels()
}

#[cfg(feature = "cuda")]
fn cuda(ordinal: usize) -> Result<Device> {
    Device::new_cuda(ordinal).map_err(|e| CoreError::Device {
        device: format!("cuda:{ordinal}"),
        reason: format!(
            "cannot open it ({e}); plain `cuda` is the local rank's GPU: run at most one rank per GPU, \
             or name the GPU as cuda:N"
        ),
    })
}

#[cfg(not(feature = "cuda"))]
fn cuda(ordinal: usize) -> Result<Device> {
    Err(CoreError::NoCuda { device: format!("cuda:{ordinal}") })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_print_and_round_trip() {
        let parse = |s: &str| s.parse::<DeviceSpec>();
        assert_eq!(parse("cpu").unwrap(), DeviceSpec::Cpu);
        assert_eq!(parse(" CPU ").unwrap(), DeviceSpec::Cpu);
        assert_eq!(parse("cuda").unwrap(), DeviceSpec::Cuda(None));
        assert_eq!(parse("cuda:3").unwrap(), DeviceSpec::Cuda(Some(3)));
        assert!(matches!(parse("tpu"), Err(CoreError::UnknownDevice(_))));
        assert!(matches!(parse("cuda:x"), Err(CoreError::UnknownDevice(_))));
        for d in
            [DeviceSpec::Cpu, DeviceSpec::Cuda(None), DeviceSpec::Cuda(Some(0)), DeviceSpec::Cuda(Some(7))]
        {
            assert_eq!(parse(&d.to_string()).unwrap(), d);
        }
        assert!(DeviceSpec::Cpu.open().unwrap().is_cpu());
        #[cfg(not(feature = "cuda"))]
        {
            let err = DeviceSpec::Cuda(Some(1)).open().unwrap_err().to_string();
            assert!(err.contains("cuda:1") && err.contains("cargo xtask-cuda"), "{err}");
        }
    }

    #[test]
    fn configs_hold_it_as_text() {
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct C {
            device: DeviceSpec,
        }
        let c: C = toml::from_str("device = \"cuda:2\"").unwrap();
        assert_eq!(c.device, DeviceSpec::Cuda(Some(2)));
        assert_eq!(toml::to_string(&c).unwrap().trim(), "device = \"cuda:2\"");
        let err = toml::from_str::<C>("device = \"gpu\"").unwrap_err().to_string();
        assert!(err.contains("unknown device 'gpu'"), "{err}");
    }

    #[test]
    fn the_fused_cuda_kernels_switch() {
        assert!(says_fused(Some("fused")) && says_fused(Some(" FUSED ")));
        assert!(!says_fused(None) && !says_fused(Some("composed")) && !says_fused(Some("1")));
        let before = fused_cuda_kernels();
        set_fused_cuda_kernels(true);
        assert!(fused_cuda_kernels());
        // a CPU tensor never takes the CUDA kernels, whatever the switch says
        assert!(!fused_route(&candle_core::Tensor::zeros(4, candle_core::DType::F32, &Device::Cpu).unwrap()));
        set_fused_cuda_kernels(false);
        assert!(!fused_cuda_kernels());
        set_fused_cuda_kernels(before);
    }

    #[test]
    fn plain_cuda_is_the_local_ranks_gpu() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        assert_eq!(local_rank_from(env(&[])).unwrap(), 0);
        assert_eq!(local_rank_from(env(&[("LOCAL_RANK", "3")])).unwrap(), 3);
        assert_eq!(
            local_rank_from(env(&[("OMPI_COMM_WORLD_LOCAL_RANK", "1"), ("LOCAL_RANK", "5")])).unwrap(),
            1
        );
        assert_eq!(local_rank_from(env(&[("MPI_LOCALRANKID", "2")])).unwrap(), 2);
        assert_eq!(local_rank_from(env(&[("SLURM_LOCALID", "6")])).unwrap(), 6);
        let err = local_rank_from(env(&[("LOCAL_RANK", "first")])).unwrap_err().to_string();
        assert!(err.contains("LOCAL_RANK") && err.contains("\"first\""), "{err}");
        // a named GPU stays itself, whatever the launcher says
        assert_eq!(DeviceSpec::Cuda(Some(4)).resolve().unwrap(), DeviceSpec::Cuda(Some(4)));
        assert_eq!(DeviceSpec::Cpu.resolve().unwrap(), DeviceSpec::Cpu);
    }
}
