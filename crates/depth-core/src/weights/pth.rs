//! Official PyTorch checkpoints (`torch.save` zip archives), read without trusting them: the
//! pickle is scanned before candle's reader runs it (see `pickle_scan`), and every tensor's
//! claimed size is checked against its storage in the archive before a byte is allocated. A
//! pickle only ever names classes here; nothing in it is executed.

use super::files::TensorMap;
use super::pickle_scan;
use crate::error::{CoreError, Result};
use candle_core::pickle::PthTensors;
use std::io::Read;
use std::path::Path;

/// The largest `data.pkl` read (a ViT-G state dict's is ~100 kB).
pub const MAX_PICKLE_BYTES: u64 = 64 << 20;

/// Runs candle's reader, turning a panic on a malformed file into an error (candle indexes the
/// argument tuples of `_rebuild_tensor_v2` without checking their length). The panic hook is
/// silenced meanwhile, so the error is reported once, as an error.
fn guarded<T>(f: impl FnOnce() -> candle_core::Result<T>) -> std::result::Result<T, String> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::panic::set_hook(hook);
    match result {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()));
            Err(format!("the pickle reader failed on it ({})", msg.unwrap_or_default()))
        }
    }
}

/// The state-dict entries that are tensors candle cannot read (an unknown storage type, a
/// malformed shape), with the reason. candle's own reader prints these on stderr and drops them,
/// which a strict load then reports as missing keys.
fn unreadable_tensors(pickle: &[u8], dir: &Path) -> candle_core::Result<Vec<(String, String)>> {
    use candle_core::pickle::{Object, Stack};
    let mut stack = Stack::empty();
    stack.read_loop(&mut std::io::Cursor::new(pickle))?;
    let Object::Dict(entries) = stack.finalize()? else { return Ok(Vec::new()) };
    let mut bad = Vec::new();
    let check = |entries: Vec<(Object, Object)>, bad: &mut Vec<(String, String)>| {
        for (k, v) in entries {
            let key = match &k {
                Object::Unicode(s) => s.clone(),
                _ => continue,
            };
            if let Err(e) = v.into_tensor_info(k, dir) {
                bad.push((key, e.to_string()));
            }
        }
    };
    let mut nested = Vec::new();
    let mut top = Vec::new();
    for (k, v) in entries {
        match (&k, v) {
            (Object::Unicode(s), Object::Dict(d)) if s == "model" || s == "state_dict" => nested.push(d),
            (_, v) => top.push((k, v)),
        }
    }
    check(top, &mut bad);
    for d in nested {
        check(d, &mut bad);
    }
    Ok(bad)
}

/// Reads an official PyTorch checkpoint (`torch.save` of a state dict, optionally wrapped under
/// `model` or `state_dict`; a DistributedDataParallel `module.` prefix is removed).
pub fn load_pth(path: &Path) -> Result<TensorMap> {
    let bad =
        |reason: String| CoreError::Format { path: path.into(), format: "PyTorch .pth weights", reason };
    let io = |source| CoreError::Io { path: path.into(), source };
    let mut file = crate::read::open(path)?;
    let file_size = file.metadata().map_err(io)?.len();
    let mut magic = [0u8; 4];
    let n = file.read(&mut magic).map_err(io)?;
    if magic[..n] != *b"PK\x03\x04" {
        return Err(bad(if magic[0] == 0x80 {
            "a legacy torch.save file (not a zip archive; PyTorch before 1.6 or \
             _use_new_zipfile_serialization=False): load it in PyTorch and save it again with torch.save"
                .into()
        } else {
            format!(
                "{file_size} bytes that are not a zip archive (torch.save has written zip archives since PyTorch 1.6)"
            )
        }));
    }
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| bad(format!("the zip archive: {e}")))?;
    let names: Vec<String> = zip.file_names().filter_map(|n| n.ok().map(|n| n.into_owned())).collect();
    let pickles: Vec<&String> = names.iter().filter(|n| n.ends_with("data.pkl")).collect();
    if pickles.is_empty() {
        return Err(bad("the archive holds no data.pkl (not a torch.save checkpoint)".into()));
    }
    for name in pickles {
        let entry = zip.by_name(name).map_err(|e| bad(format!("{name}: {e}")))?;
        if entry.size() > MAX_PICKLE_BYTES {
            return Err(bad(format!("{name} claims {} bytes, more than {MAX_PICKLE_BYTES}", entry.size())));
        }
        let mut pickle = Vec::new();
        entry.take(MAX_PICKLE_BYTES).read_to_end(&mut pickle).map_err(|e| bad(format!("{name}: {e}")))?;
        pickle_scan::scan(&pickle).map_err(|e| bad(format!("{name} is refused: {e}")))?;
        let dir = Path::new(name.strip_suffix(".pkl").unwrap_or(name));
        let unreadable = guarded(|| unreadable_tensors(&pickle, dir)).map_err(bad)?;
        if let Some((key, why)) = unreadable.first() {
            return Err(bad(format!(
                "{} tensors cannot be read, first '{key}': {why} (candle reads float32/64, float16, bfloat16, \
                 uint8 and int64 storages, contiguous)",
                unreadable.len()
            )));
        }
    }
    let mut found = None;
    for key in [None, Some("model"), Some("state_dict")] {
        let pth = guarded(|| PthTensors::new(path, key)).map_err(bad)?;
        if !pth.tensor_infos().is_empty() {
            found = Some(pth);
            break;
        }
    }
    let pth = found.ok_or_else(|| bad("no tensors found (expected a state dict)".into()))?;
    let mut out = TensorMap::new();
    for (name, info) in pth.tensor_infos() {
        let entry = zip
            .by_name(&info.path)
            .map_err(|e| bad(format!("tensor '{name}': storage {}: {e}", info.path)))?;
        if entry.compression() != zip::CompressionMethod::Stored {
            return Err(bad(format!(
                "tensor '{name}': storage {} is compressed ({}); torch.save stores tensors uncompressed",
                info.path,
                entry.compression()
            )));
        }
        let dims = info.layout.dims();
        let elems = dims.iter().try_fold(1u128, |acc, &d| acc.checked_mul(d as u128));
        let need = elems.and_then(|e| e.checked_mul(info.dtype.size_in_bytes() as u128));
        let need = need.and_then(|b| b.checked_add(info.layout.start_offset() as u128));
        let have = entry.size().min(file_size) as u128;
        if need.is_none_or(|need| need > have) {
            return Err(bad(format!(
                "tensor '{name}' claims shape {dims:?} of {:?} from byte {}, more than the {have} bytes of its storage {}",
                info.dtype,
                info.layout.start_offset(),
                info.path
            )));
        }
        drop(entry);
        let tensor = guarded(|| pth.get(name)).map_err(|e| bad(format!("tensor '{name}': {e}")))?;
        let tensor = tensor.ok_or_else(|| bad(format!("tensor '{name}' vanished while reading")))?;
        out.insert(name.strip_prefix("module.").map(str::to_string).unwrap_or_else(|| name.clone()), tensor);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A torch.save-style pickle of `{'w': FloatStorage '0' viewed as `shape`}` (what
    /// `torch._utils._rebuild_tensor_v2` is called with).
    fn state_dict_pickle(shape: &[u32]) -> Vec<u8> {
        let ints = |p: &mut Vec<u8>, v: &[u32]| {
            p.push(b'(');
            for &x in v {
                p.push(b'J');
                p.extend_from_slice(&x.to_le_bytes());
            }
            p.push(b't');
        };
        let s = |p: &mut Vec<u8>, t: &str| {
            p.push(b'X');
            p.extend_from_slice(&(t.len() as u32).to_le_bytes());
            p.extend_from_slice(t.as_bytes());
        };
        let mut p = vec![0x80, 2, b'}', b'('];
        s(&mut p, "w");
        p.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\n(");
        p.push(b'(');
        s(&mut p, "storage");
        p.extend_from_slice(b"ctorch\nFloatStorage\n");
        s(&mut p, "0");
        s(&mut p, "cpu");
        p.extend_from_slice(&[b'K', 4, b't', b'Q', b'K', 0]);
        ints(&mut p, shape);
        let strides: Vec<u32> = (0..shape.len()).map(|i| shape[i + 1..].iter().product()).collect();
        ints(&mut p, &strides);
        p.push(0x89);
        p.extend_from_slice(b"ccollections\nOrderedDict\n)R");
        p.extend_from_slice(b"tRu.");
        p
    }

    fn archive(path: &Path, pickle: &[u8], storage: &[u8]) {
        let mut z = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
        let opts =
            zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        z.start_file("archive/data.pkl", opts).unwrap();
        z.write_all(pickle).unwrap();
        z.start_file("archive/data/0", opts).unwrap();
        z.write_all(storage).unwrap();
        z.finish().unwrap();
    }

    #[test]
    fn a_small_state_dict_loads_and_hostile_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let storage: Vec<u8> = [1f32, 2.0, 3.0, 4.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let ok = dir.path().join("ok.pth");
        archive(&ok, &state_dict_pickle(&[2, 2]), &storage);
        let t = load_pth(&ok).unwrap();
        assert_eq!(t["w"].to_vec2::<f32>().unwrap(), [[1.0, 2.0], [3.0, 4.0]]);

        let cases: [(&str, Vec<u8>, &str); 4] = [
            ("huge.pth", state_dict_pickle(&[100_000, 100_000]), "claims shape [100000, 100000]"),
            (
                "bomb.pth",
                [&[0x80, 2, b']', b'q', 0][..], &[b'(', b'h', 0, b'h', 0, b'l', b'q', 0].repeat(64), b"."]
                    .concat(),
                "memo-reference bomb",
            ),
            (
                "deep.pth",
                [vec![0x80, 2], vec![b'('; 200_000], vec![b')'], vec![b't'; 200_000], vec![b'.']].concat(),
                "deeper than",
            ),
            ("cut.pth", state_dict_pickle(&[2, 2])[..40].to_vec(), "data.pkl is refused"),
        ];
        for (name, pickle, says) in cases {
            let p = dir.path().join(name);
            archive(&p, &pickle, &storage);
            let err = load_pth(&p).unwrap_err().to_string();
            assert!(err.contains(name) && err.contains(says), "{name}: {err}");
        }
        let legacy = dir.path().join("legacy.pth");
        std::fs::write(&legacy, state_dict_pickle(&[2, 2])).unwrap();
        let err = load_pth(&legacy).unwrap_err().to_string();
        assert!(err.contains("legacy.pth") && err.contains("legacy torch.save"), "{err}");
        // a storage type candle does not read is named, not reported later as a missing key
        let int = dir.path().join("int_storage.pth");
        let pickle = state_dict_pickle(&[2, 2]);
        let at = pickle.windows(12).position(|w| w == b"FloatStorage").unwrap();
        let pickle = [&pickle[..at], b"IntStorage", &pickle[at + 12..]].concat();
        archive(&int, &pickle, &storage);
        let err = load_pth(&int).unwrap_err().to_string();
        assert!(
            err.contains("int_storage.pth") && err.contains("'w'") && err.contains("IntStorage"),
            "{err}"
        );
        // found by fuzzing: `_rebuild_tensor_v2` called with 3 arguments made candle's reader
        // panic (an index out of bounds); it is an error naming the file
        let short = dir.path().join("short_args.pth");
        archive(&short, include_bytes!("../../tests/data/fuzz_pth_short_rebuild_args.pkl"), &storage);
        let err = load_pth(&short).unwrap_err().to_string();
        assert!(err.contains("short_args.pth") && err.contains("reader failed"), "{err}");
        let empty = dir.path().join("empty.pth");
        std::fs::write(&empty, b"").unwrap();
        assert!(load_pth(&empty).unwrap_err().to_string().contains("not a zip archive"));
    }
}
