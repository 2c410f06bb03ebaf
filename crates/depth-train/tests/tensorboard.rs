//! Event files: the bytes of scalar events equal those `torch.utils.tensorboard.SummaryWriter`
//! wrote for the same events (tests/golden/events.tfevents), images and the resume marker read
//! back, and damage is detected by the CRCs.

use depth_train::tensorboard::{Data, EventWriter, What, read_events, record};
use prost::Message;
use std::path::Path;

fn golden_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// The golden file's records as (payload) byte strings.
fn records(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let len = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize;
        out.push(bytes[at + 12..at + 12 + len].to_vec());
        at += 16 + len;
    }
    out
}

#[test]
fn scalar_events_are_byte_identical_to_pytorch() {
    let golden = std::fs::read(golden_dir().join("events.tfevents")).unwrap();
    let spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(golden_dir().join("events.json")).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut w = EventWriter::create(dir.path(), None).unwrap();
    for s in spec["scalars"].as_array().unwrap() {
        let (tag, value, step, t) =
            (s[0].as_str().unwrap(), s[1].as_f64().unwrap(), s[2].as_u64().unwrap(), s[3].as_f64().unwrap());
        w.scalar(tag, value, step, t).unwrap();
    }
    w.flush().unwrap();
    let ours = std::fs::read(w.path()).unwrap();
    let (theirs, mine) = (records(&golden), records(&ours));
    assert_eq!(theirs.len(), mine.len());
    // the first event carries the file version and each writer's wall time and name
    let first = depth_train::tensorboard::Event::decode(theirs[0].as_slice()).unwrap();
    assert_eq!(first.what, Some(What::FileVersion("brain.Event:2".into())));
    assert_eq!(depth_train::tensorboard::Event::decode(mine[0].as_slice()).unwrap().what, first.what);
    for (i, (a, b)) in theirs.iter().zip(&mine).enumerate().skip(1) {
        assert_eq!(a, b, "event {i} differs from PyTorch's");
    }
    // and the framing of every record equals (length and both CRCs)
    let framed: Vec<u8> = mine.iter().skip(1).flat_map(|p| record(p)).collect();
    let golden_tail: Vec<u8> = theirs.iter().skip(1).flat_map(|p| record(p)).collect();
    assert_eq!(framed, golden_tail);
}

#[test]
fn images_and_the_resume_marker_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = EventWriter::create(dir.path(), Some(40)).unwrap();
    let img = image::RgbImage::from_fn(7, 5, |x, y| image::Rgb([x as u8 * 30, y as u8 * 40, 9]));
    w.image("val/synth/0", &img, 41, 1.5).unwrap();
    w.scalar("train/loss", 0.25, 41, 1.5).unwrap();
    w.flush().unwrap();
    let events = read_events(w.path()).unwrap();
    assert_eq!(events.len(), 4);
    match &events[1].what {
        Some(What::SessionLog(s)) => assert_eq!((s.status, events[1].step), (1, 40)),
        other => panic!("expected the session start marker, got {other:?}"),
    }
    let Some(What::Summary(s)) = &events[2].what else { panic!("an image summary") };
    let Some(Data::Image(im)) = &s.value[0].data else { panic!("image data") };
    assert_eq!((im.width, im.height, im.colorspace), (7, 5, 3));
    let back = image::load_from_memory(&im.encoded_image_string).unwrap().to_rgb8();
    assert_eq!(back, img);
    let Some(What::Summary(s)) = &events[3].what else { panic!("a scalar summary") };
    assert_eq!(s.value[0].data, Some(Data::SimpleValue(0.25)));

    // a flipped byte fails its CRC, naming the file
    let mut bytes = std::fs::read(w.path()).unwrap();
    let n = bytes.len();
    bytes[n - 10] ^= 1;
    let bad = dir.path().join("damaged.tfevents");
    std::fs::write(&bad, &bytes).unwrap();
    let err = read_events(&bad).unwrap_err().to_string();
    assert!(err.contains("damaged.tfevents") && err.contains("CRC"), "{err}");
}
