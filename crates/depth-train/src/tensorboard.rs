//! TensorBoard event files: TFRecord framing (length, masked CRC-32C, payload, masked CRC-32C)
//! around `tensorflow.Event` protobufs. The messages are declared here with prost's derive (the
//! few fields we write, with TensorBoard's tag numbers), so no protoc and no generated code; the
//! bytes equal those of `torch.utils.tensorboard.SummaryWriter` for the same events (tested
//! against a file it wrote). Scalars, PNG images and the "session start" marker that makes
//! TensorBoard drop events a resumed run writes again.

use crate::error::Result;
use depth_core::CoreError;
use prost::Message;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    #[prost(int64, tag = "2")]
    pub step: i64,
    #[prost(oneof = "What", tags = "3, 5, 7")]
    pub what: Option<What>,
    #[prost(message, optional, tag = "10")]
    pub source_metadata: Option<SourceMetadata>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum What {
    #[prost(string, tag = "3")]
    FileVersion(String),
    #[prost(message, tag = "5")]
    Summary(Summary),
    #[prost(message, tag = "7")]
    SessionLog(SessionLog),
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SourceMetadata {
    #[prost(string, tag = "1")]
    pub writer: String,
}

/// `SessionLog.status`: 1 = START (TensorBoard then discards later-step events seen before).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SessionLog {
    #[prost(int32, tag = "1")]
    pub status: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<Value>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Value {
    #[prost(string, tag = "1")]
    pub tag: String,
    #[prost(oneof = "Data", tags = "2, 4")]
    pub data: Option<Data>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Data {
    #[prost(float, tag = "2")]
    SimpleValue(f32),
    #[prost(message, tag = "4")]
    Image(Image),
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Image {
    #[prost(int32, tag = "1")]
    pub height: i32,
    #[prost(int32, tag = "2")]
    pub width: i32,
    /// 3 = RGB
    #[prost(int32, tag = "3")]
    pub colorspace: i32,
    #[prost(bytes = "vec", tag = "4")]
    pub encoded_image_string: Vec<u8>,
}

const SESSION_START: i32 = 1;

fn masked_crc(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    (crc.rotate_right(15)).wrapping_add(0xa282_ead8)
}

/// One TFRecord around `payload`.
pub fn record(payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(payload.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(&masked_crc(payload).to_le_bytes());
    out
}

/// Appends events to `events.out.tfevents.<secs>.<host>.<pid>` in a run folder.
pub struct EventWriter {
    path: PathBuf,
    out: BufWriter<std::fs::File>,
}

pub fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

impl EventWriter {
    /// A new event file in `dir`. `resumed_at`: the step a resumed run continues from; events of
    /// the interrupted run at later steps are then hidden by TensorBoard.
    pub fn create(dir: &Path, resumed_at: Option<u64>) -> Result<Self> {
        let host =
            std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_else(|_| "localhost".into());
        let t = now();
        let name = format!("events.out.tfevents.{}.{}.{}", t as u64, host.trim(), std::process::id());
        let path = dir.join(name);
        let file = std::fs::File::create(&path).map_err(|e| CoreError::write(&path, e))?;
        let mut w = Self { path, out: BufWriter::new(file) };
        w.write(&Event {
            wall_time: t,
            step: 0,
            what: Some(What::FileVersion("brain.Event:2".into())),
            source_metadata: Some(SourceMetadata { writer: "depth-anything-rs".into() }),
        })?;
        if let Some(step) = resumed_at {
            let log = SessionLog { status: SESSION_START };
            w.write(&Event {
                wall_time: t,
                step: step as i64,
                what: Some(What::SessionLog(log)),
                source_metadata: None,
            })?;
        }
        w.flush()?;
        Ok(w)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn write(&mut self, event: &Event) -> Result<()> {
        self.out
            .write_all(&record(&event.encode_to_vec()))
            .map_err(|e| CoreError::write(&self.path, e).into())
    }

    pub fn scalar(&mut self, tag: &str, value: f64, step: u64, wall_time: f64) -> Result<()> {
        let v = Value { tag: tag.into(), data: Some(Data::SimpleValue(value as f32)) };
        self.summary(v, step, wall_time)
    }

    /// An RGB image, PNG-encoded.
    pub fn image(&mut self, tag: &str, img: &image::RgbImage, step: u64, wall_time: f64) -> Result<()> {
        let mut png = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .map_err(|e| CoreError::bad_input("tensorboard image", e.to_string()))?;
        let data = Image {
            height: img.height() as i32,
            width: img.width() as i32,
            colorspace: 3,
            encoded_image_string: png,
        };
        self.summary(Value { tag: tag.into(), data: Some(Data::Image(data)) }, step, wall_time)
    }

    fn summary(&mut self, v: Value, step: u64, wall_time: f64) -> Result<()> {
        let what = Some(What::Summary(Summary { value: vec![v] }));
        self.write(&Event { wall_time, step: step as i64, what, source_metadata: None })
    }

    pub fn flush(&mut self) -> Result<()> {
        self.out.flush().map_err(|e| CoreError::write(&self.path, e).into())
    }
}

/// Reads every event of a file, checking both CRCs of every record.
pub fn read_events(path: &Path) -> Result<Vec<Event>> {
    let bytes = depth_core::read::bytes(path, depth_core::read::ARRAY_LIMIT)?;
    let bad = |reason: String| CoreError::bad_input("event file", format!("{}: {reason}", path.display()));
    let mut events = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let head = bytes.get(at..at + 12).ok_or_else(|| bad(format!("truncated header at byte {at}")))?;
        let len = u64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
        if masked_crc(&head[..8]).to_le_bytes() != head[8..12] {
            return Err(bad(format!("length CRC mismatch at byte {at}")).into());
        }
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| (at + 12).checked_add(l))
            .filter(|&e| e + 4 <= bytes.len());
        let end = end.ok_or_else(|| bad(format!("record at byte {at} claims {len} bytes past the end")))?;
        let payload = &bytes[at + 12..end];
        if masked_crc(payload).to_le_bytes() != bytes[end..end + 4] {
            return Err(bad(format!("payload CRC mismatch at byte {at}")).into());
        }
        events.push(Event::decode(payload).map_err(|e| bad(format!("record at byte {at}: {e}")))?);
        at = end + 4;
    }
    Ok(events)
}
