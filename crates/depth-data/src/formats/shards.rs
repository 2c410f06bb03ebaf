//! Why this file: at the paper's scale (62M photos) one file per label is what every large
//! training stack avoids. Labels go into shards in WebDataset's layout — a plain tar whose
//! members are `<key>.<image extension>` (the image's bytes, as found) and
//! `<key>.disparity.safetensors` (the label, [`super::pseudo`]'s format), in key order — beside
//! an index (`<shard>.index.json`: the teacher, and per sample its image path and hash, its
//! size, and where its two members lie in the tar). A shard is written atomically, tar first,
//! index last: a shard whose index exists is done, so a rerun reads indexes only. The index
//! begins with its sample count and teacher, so opening a store of 62M samples reads each
//! index's first lines only ([`read_head`]); a shard's entries are read when the loader first
//! reaches it and kept for a few shards ([`ShardedPseudo`]), so memory does not grow with the
//! store. The loader reads a sample with two positioned reads through the index, streaming
//! whole shards (`Dataset::groups`); `tar -x` or WebDataset read the tar.

use super::pseudo::{TeacherId, parse_pseudo_label, upsample_label};
use crate::dataset::Dataset;
use crate::error::{DataError, Result};
use crate::sample::Sample;
use depth_core::CoreError;
use serde::{Deserialize, Serialize};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub const SHARD_FORMAT: &str = "depth-pseudo-shard/2";
/// The first format, without `count`; still read.
const SHARD_FORMAT_1: &str = "depth-pseudo-shard/1";
const INDEX: &str = ".index.json";
/// How far into an index its head (everything before `"samples"`) may reach.
const HEAD_LIMIT: u64 = 64 << 10;
/// Shards whose entries a [`ShardedPseudo`] keeps: the loader's shuffle buffer draws from the
/// last few shards it streamed (a miss re-reads an index, it is not an error).
const CACHED_SHARDS: usize = 16;

/// One shard's index. The fields before `samples` are its head: serialised first, so
/// [`read_head`] reads them without the entries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardIndex {
    pub format: String,
    /// The number of samples (`/1` indexes lack it: it is their `samples.len()`).
    #[serde(default)]
    pub count: usize,
    pub teacher: String,
    pub teacher_sha256: String,
    pub input_size: usize,
    pub precision: String,
    pub samples: Vec<ShardEntry>,
}

/// An index's head: its count and teacher, without the entries.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct ShardHead {
    pub format: String,
    pub count: usize,
    pub teacher: String,
    pub teacher_sha256: String,
    pub input_size: usize,
    pub precision: String,
}

/// Where one sample lies in its shard.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardEntry {
    pub key: String,
    /// The image's path relative to the labelled folder.
    pub image: String,
    pub image_sha256: String,
    /// (offset, length) of the image's and the label's bytes in the tar.
    pub image_at: (u64, u64),
    pub label_at: (u64, u64),
}

/// A sample to pack: the image's path (relative and on disk), its hash and the label's bytes.
pub struct ShardSample {
    pub rel: PathBuf,
    pub path: PathBuf,
    pub image_sha256: String,
    pub label: Vec<u8>,
}

/// The shards of a store: the names whose index exists, sorted.
pub fn done_shards(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(names),
        Err(e) => return Err(CoreError::io(dir, e).into()),
    };
    for e in entries.flatten() {
        if let Some(name) = e.file_name().to_str().and_then(|n| n.strip_suffix(INDEX)) {
            names.push(name.to_string());
        }
    }
    names.sort();
    Ok(names)
}

pub fn index_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}{INDEX}"))
}

pub fn tar_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.tar"))
}

pub fn read_index(path: &Path) -> Result<ShardIndex> {
    let text = depth_core::read::text(path)?;
    let index: ShardIndex =
        serde_json::from_str(&text).map_err(|e| CoreError::format(path, "shard index", e.to_string()))?;
    let mut index = index;
    if index.format == SHARD_FORMAT_1 {
        index.count = index.samples.len();
    } else if index.format != SHARD_FORMAT {
        let reason = format!("format {:?}, expected {SHARD_FORMAT:?}", index.format);
        return Err(CoreError::format(path, "shard index", reason).into());
    }
    if index.count != index.samples.len() {
        let reason = format!("count {} but {} samples listed", index.count, index.samples.len());
        return Err(CoreError::format(path, "shard index", reason).into());
    }
    Ok(index)
}

/// The head of an index (count, teacher) from its first bytes: the text before the
/// `"samples"` key, closed as an object. An index not written that way (a `/1` index, one
/// edited by hand) is read whole.
pub fn read_head(path: &Path) -> Result<ShardHead> {
    let mut start = Vec::new();
    let file = std::fs::File::open(path).map_err(|e| CoreError::io(path, e))?;
    file.take(HEAD_LIMIT).read_to_end(&mut start).map_err(|e| CoreError::io(path, e))?;
    let text = String::from_utf8_lossy(&start);
    let head = text.find("\"samples\"").and_then(|at| {
        let fields = text[..at].trim_end().strip_suffix(',')?;
        serde_json::from_str::<ShardHead>(&format!("{fields}}}")).ok()
    });
    match head {
        Some(head) if head.format == SHARD_FORMAT => Ok(head),
        _ => {
            let i = read_index(path)?;
            let (format, count, teacher, teacher_sha256) = (i.format, i.count, i.teacher, i.teacher_sha256);
            Ok(ShardHead {
                format,
                count,
                teacher,
                teacher_sha256,
                input_size: i.input_size,
                precision: i.precision,
            })
        }
    }
}

/// Writes shard `name` in `dir`: the tar (members in key order: sample i is key `{i:06}`),
/// then its index, each atomically. The images are read from their paths.
pub fn write_shard(
    dir: &Path,
    name: &str,
    teacher: &TeacherId,
    samples: &[ShardSample],
) -> Result<ShardIndex> {
    std::fs::create_dir_all(dir).map_err(|e| CoreError::write(dir, e))?;
    let tar = tar_path(dir, name);
    let mut entries = Vec::with_capacity(samples.len());
    depth_core::atomic::write_atomic(&tar, |w| {
        let mut at = 0u64;
        let mut builder = tar::Builder::new(w);
        let member = |builder: &mut tar::Builder<_>, at: &mut u64, name: &str, data: &[u8]| {
            let mut header = tar::Header::new_ustar();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(0); // the same shard from the same labels, whenever
            header.set_cksum();
            builder.append_data(&mut header, name, data)?;
            let start = *at + 512;
            *at = start + (data.len() as u64).div_ceil(512) * 512;
            Ok::<_, std::io::Error>((start, data.len() as u64))
        };
        for (i, s) in samples.iter().enumerate() {
            let key = format!("{i:06}");
            let ext = s.path.extension().and_then(|e| e.to_str()).unwrap_or("img").to_ascii_lowercase();
            let image = std::fs::read(&s.path)?;
            let image_at = member(&mut builder, &mut at, &format!("{key}.{ext}"), &image)?;
            let label_at = member(&mut builder, &mut at, &format!("{key}.disparity.safetensors"), &s.label)?;
            entries.push(ShardEntry {
                key,
                image: s.rel.to_string_lossy().into_owned(),
                image_sha256: s.image_sha256.clone(),
                image_at,
                label_at,
            });
        }
        builder.into_inner()?.flush()
    })?;
    let index = ShardIndex {
        format: SHARD_FORMAT.into(),
        count: entries.len(),
        teacher: teacher.name.clone(),
        teacher_sha256: teacher.sha256.clone(),
        input_size: teacher.input_size,
        precision: teacher.precision.to_string(),
        samples: entries,
    };
    let json = serde_json::to_vec_pretty(&index).expect("an index serialises");
    depth_core::atomic::write_atomic(&index_path(dir, name), |w| w.write_all(&json))?;
    Ok(index)
}

/// Reads `len` bytes at `offset` of `path`.
fn read_at(path: &Path, (offset, len): (u64, u64)) -> Result<Vec<u8>> {
    let mut f = depth_core::read::open(path)?;
    let size = f.metadata().map_err(|e| CoreError::io(path, e))?.len();
    if offset.checked_add(len).is_none_or(|end| end > size) {
        let reason = format!("a member at {offset}+{len} lies beyond the tar's {size} bytes");
        return Err(CoreError::format(path, "shard", reason).into());
    }
    let mut buf = vec![0u8; len as usize];
    f.seek(SeekFrom::Start(offset))
        .and_then(|_| f.read_exact(&mut buf))
        .map_err(|e| CoreError::io(path, e))?;
    Ok(buf)
}

/// The samples of every done shard in a folder, as a dataset: images and labels read through
/// the indexes, labels upsampled to their image as [`super::pseudo::PseudoLabeled`] does.
/// Opening reads each index's head; a shard's entries are read on first use and a few kept.
#[derive(Debug)]
pub struct ShardedPseudo {
    name: String,
    dir: PathBuf,
    shards: Vec<String>,
    /// Where each shard's samples begin in the dataset's numbering, and the total last.
    starts: Vec<usize>,
    /// The entries of the shards read last, the newest at the end.
    cache: Mutex<Vec<(usize, Arc<Vec<ShardEntry>>)>>,
}

impl ShardedPseudo {
    pub fn open(name: impl Into<String>, dir: &Path) -> Result<Self> {
        let shards = done_shards(dir)?;
        let mut starts = vec![0];
        for shard in &shards {
            let count = read_head(&index_path(dir, shard))?.count;
            starts.push(starts.last().unwrap_or(&0) + count);
        }
        Ok(Self { name: name.into(), dir: dir.to_path_buf(), shards, starts, cache: Mutex::new(Vec::new()) })
    }

    /// Sample `index`'s shard and its place there.
    fn locate(&self, index: usize) -> (usize, usize) {
        let k = self.starts.partition_point(|&s| s <= index) - 1;
        (k, index - self.starts[k])
    }

    /// Shard `k`'s entries, from the cache or its index.
    fn entries(&self, k: usize) -> Result<Arc<Vec<ShardEntry>>> {
        let lock = || self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, e)) = lock().iter().find(|(j, _)| *j == k) {
            return Ok(e.clone());
        }
        let path = index_path(&self.dir, &self.shards[k]);
        let index = read_index(&path)?;
        let want = self.starts[k + 1] - self.starts[k];
        if index.count != want {
            let reason = format!("{} samples, but {want} when the store was opened: it changed", index.count);
            return Err(CoreError::format(&path, "shard index", reason).into());
        }
        let entries = Arc::new(index.samples);
        let mut cache = lock();
        if cache.len() >= CACHED_SHARDS {
            cache.remove(0);
        }
        cache.push((k, entries.clone()));
        Ok(entries)
    }
}

impl Dataset for ShardedPseudo {
    fn name(&self) -> &str {
        &self.name
    }

    fn len(&self) -> usize {
        self.starts.last().copied().unwrap_or(0)
    }

    fn groups(&self) -> Option<Vec<usize>> {
        Some(self.starts.windows(2).map(|w| w[1] - w[0]).collect())
    }

    fn id(&self, index: usize) -> String {
        let (k, i) = self.locate(index);
        let tar = tar_path(&self.dir, &self.shards[k]);
        match self.entries(k) {
            Ok(e) => format!("{}#{}", tar.display(), e[i].image),
            Err(_) => format!("{}#{i}", tar.display()),
        }
    }

    fn load(&self, index: usize) -> Result<Sample> {
        let (k, i) = self.locate(index);
        let entries = self.entries(k)?;
        let e = &entries[i];
        let tar = &tar_path(&self.dir, &self.shards[k]);
        let image = depth_core::image_io::decode_image(&read_at(tar, e.image_at)?).map_err(|err| {
            CoreError::ImageDecode { path: tar.clone(), reason: format!("{}: {err}", e.image) }
        })?;
        let (target, meta) = parse_pseudo_label(&read_at(tar, e.label_at)?, &tar.join(&e.key))?;
        let (w, h) = image.dimensions();
        if meta.image_size != (w, h) {
            return Err(DataError::SizeMismatch {
                path: tar.clone(),
                image_w: w,
                image_h: h,
                depth_w: meta.image_size.0,
                depth_h: meta.image_size.1,
            });
        }
        Ok(Sample {
            id: format!("{}#{}", tar.display(), e.image),
            image,
            target: Some(upsample_label(&target, (w, h))?),
            intrinsics: None,
        })
    }
}
