//! Why this file: sizes a user sets (a batch, a crop, a number of workers) are checked against
//! the machine before anything is allocated, so that an impossible run is refused with the
//! setting named instead of dying in the allocator with a partial run folder behind.

/// The memory the kernel says is available to a new allocation now (`MemAvailable`), in bytes;
/// None where it cannot tell (not Linux).
pub fn available_memory() -> Option<u64> {
    proc_bytes("/proc/meminfo", "MemAvailable:")
}

/// The `key` line of a `/proc` file that counts kB (`MemAvailable:   123 kB`), in bytes.
fn proc_bytes(file: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The peak resident memory of this process since it started or since the last
/// [`reset_peak_resident_memory`] (`VmHWM`), in bytes; None where it cannot tell (not Linux).
pub fn peak_resident_memory() -> Option<u64> {
    proc_bytes("/proc/self/status", "VmHWM:")
}

/// Starts [`peak_resident_memory`] again from the memory resident now (Linux ≥ 4.0: `5` to
/// `/proc/self/clear_refs`); false where it cannot.
pub fn reset_peak_resident_memory() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The memory of `device`, in bytes: a GPU's total memory (one rank per GPU), or the host's
/// available memory for the CPU. None where it cannot tell.
pub fn device_memory(device: &candle_core::Device) -> Option<u64> {
    match device {
        #[cfg(feature = "cuda")]
        candle_core::Device::Cuda(d) => {
            d.cuda_stream().context().mem_get_info().ok().map(|(_, total)| total as u64)
        }
        candle_core::Device::Cpu => available_memory(),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_machine_has_some_memory() {
        let m = super::available_memory().expect("Linux reports MemAvailable");
        assert!(m > 1 << 20, "{m}");
    }

    #[test]
    fn the_peak_sees_an_allocation_and_resets() {
        assert!(super::reset_peak_resident_memory());
        let before = super::peak_resident_memory().unwrap();
        let big = vec![1u8; 256 << 20];
        std::hint::black_box(&big);
        let peak = super::peak_resident_memory().unwrap();
        assert!(peak >= before + (250 << 20), "{before} → {peak}");
        drop(big);
        assert!(super::reset_peak_resident_memory());
        let after = super::peak_resident_memory().unwrap();
        assert!(after < peak - (128 << 20), "reset peak {after} still holds {peak}");
    }
}
