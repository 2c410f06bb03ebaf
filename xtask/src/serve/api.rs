//! The demo's requests: the page, an upload answered with a small JSON that names its result,
//! and the downloads of a result, encoded while they are sent.

use super::App;
use super::results::Stored;
use super::stream::{Chunks, Download};
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use depth_models::{Colormap, DepthMap};
use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

pub(super) fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message.into() }))).into_response()
}

pub(super) async fn page(State(app): State<Arc<App>>) -> Html<String> {
    Html(include_str!("index.html").replace("{{MODEL}}", &html_escape(&app.model_name)))
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[derive(serde::Deserialize)]
pub(super) struct DepthQuery {
    cmap: Option<String>,
}

/// What an upload gets: its result's id and numbers, never the result itself.
#[derive(serde::Serialize)]
struct DepthReply {
    id: String,
    width: u32,
    height: u32,
    min: f32,
    max: f32,
    cmap: &'static str,
    /// Milliseconds waiting for the model, and decoding + inference.
    wait_ms: u64,
    run_ms: u64,
}

/// A place among the waiting uploads (`bytes` of them), given back however the request ends
/// (a client that hangs up while waiting drops its request future, and with it this).
struct Waiting<'a> {
    app: &'a App,
    bytes: u64,
}

impl<'a> Waiting<'a> {
    fn take(app: &'a App, bytes: u64) -> Option<Self> {
        let mut w = app.waiting.lock().expect("the queue lock");
        if w.0 >= app.queue || w.1 + bytes > app.max_queued {
            return None;
        }
        *w = (w.0 + 1, w.1 + bytes);
        Some(Self { app, bytes })
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut w = self.app.waiting.lock().expect("the queue lock");
        *w = (w.0 - 1, w.1 - self.bytes);
    }
}

/// The query's colour map (the official Spectral_r by default), or why not.
fn colormap(q: &DepthQuery) -> std::result::Result<Colormap, String> {
    q.cmap.as_deref().unwrap_or("spectral_r").parse().map_err(|e: depth_core::CoreError| e.to_string())
}

/// `POST /api/depth?cmap=…` with the image as the body.
pub(super) async fn depth(
    State(app): State<Arc<App>>,
    Query(q): Query<DepthQuery>,
    req: Request,
) -> Response {
    let cmap = match colormap(&q) {
        Ok(c) => c,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e),
    };
    // a size over the limit is refused from the header, before a byte of the body is read
    let claimed = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if claimed.is_some_and(|n| n > app.max_upload) {
        return too_large();
    }
    let Some(place) = Waiting::take(&app, claimed.unwrap_or(app.max_upload)) else {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "the demo is busy: too many images are waiting; retry soon",
        );
    };
    let read = axum::body::to_bytes(req.into_body(), app.max_upload as usize);
    let body = match tokio::time::timeout(app.body_timeout, read).await {
        Err(_) => return refuse(StatusCode::REQUEST_TIMEOUT, "the upload was too slow; send it again"),
        Ok(Err(_)) => return too_large(),
        Ok(Ok(b)) if b.is_empty() => return refuse(StatusCode::BAD_REQUEST, "no image in the request"),
        Ok(Ok(b)) => b,
    };
    let queued = Instant::now();
    let turn = app.turn.clone().lock_owned().await;
    drop(place);
    let wait_ms = queued.elapsed().as_millis() as u64;
    let started = Instant::now();
    let worker = app.clone();
    // the turn goes with the work: if the client hangs up, the model stays busy until it is done
    let result = tokio::task::spawn_blocking(move || {
        let _turn = turn;
        let img = depth_core::image_io::decode_image_within(&body, worker.max_pixels)
            .map_err(|e| format!("cannot read this image: {e}"))?;
        drop(body);
        worker.estimator.estimate(&img).map_err(|e| e.to_string())
    })
    .await;
    let depth = match result {
        Ok(Ok(depth)) => depth,
        Ok(Err(e)) => return refuse(StatusCode::UNPROCESSABLE_ENTITY, e),
        Err(e) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, format!("the model failed: {e}")),
    };
    let (width, height) = (depth.width, depth.height);
    let (min, max) = depth.min_max();
    let Some(id) = app.results.insert(depth) else {
        let reason = "its depth alone is larger than this demo keeps (--results-mb); try a smaller image";
        return refuse(StatusCode::PAYLOAD_TOO_LARGE, reason);
    };
    let run_ms = started.elapsed().as_millis() as u64;
    tracing::info!("{width}×{height} in {run_ms} ms (waited {wait_ms} ms)");
    axum::Json(DepthReply { id, width, height, min, max, cmap: cmap.name(), wait_ms, run_ms }).into_response()
}

fn too_large() -> Response {
    refuse(StatusCode::PAYLOAD_TOO_LARGE, "the file is larger than the upload limit of this demo")
}

/// `GET /api/result/{id}/{file}`: `color.png?cmap=…`, `depth16.png` or `depth.npy`.
pub(super) async fn download(
    State(app): State<Arc<App>>,
    Path((id, file)): Path<(String, String)>,
    Query(q): Query<DepthQuery>,
) -> Response {
    let cmap = match colormap(&q) {
        Ok(c) => c,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e),
    };
    let kind = match file.as_str() {
        "color.png" => Kind::Color(cmap),
        "depth16.png" => Kind::Depth16,
        "depth.npy" => Kind::Npy,
        _ => return refuse(StatusCode::NOT_FOUND, "no such file of a result"),
    };
    let Some(stored) = app.results.get(&id) else {
        return refuse(
            StatusCode::NOT_FOUND,
            "no such result (results are kept a while); upload the image again",
        );
    };
    let Ok(permit) = app.downloads.clone().try_acquire_owned() else {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "too many downloads at once; retry soon");
    };
    let (content_type, size) = match kind {
        Kind::Color(_) | Kind::Depth16 => ("image/png", None),
        Kind::Npy => ("application/octet-stream", Some(npy_size(&stored))),
    };
    let body = Download::spawn(permit, move |w| kind.write(&stored, w));
    let mut r = Response::builder().header(header::CONTENT_TYPE, content_type);
    if let Some(n) = size {
        r = r.header(header::CONTENT_LENGTH, n);
    }
    r.body(Body::from_stream(Chunks(body)))
        .unwrap_or_else(|e| refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// A result's downloads.
#[derive(Clone, Copy)]
enum Kind {
    Color(Colormap),
    Depth16,
    Npy,
}

impl Kind {
    /// Writes the file row by row: memory does not grow with the image.
    fn write(self, stored: &Stored, w: &mut dyn Write) -> std::io::Result<()> {
        let d = &stored.depth;
        let png = match self {
            Kind::Npy => return d.write_npy(w),
            Kind::Color(cmap) => {
                let color = d.colorizer(cmap);
                png_rows(w, d, png::ColorType::Rgb, png::BitDepth::Eight, |r, out| {
                    out.extend(r.iter().flat_map(|&v| color(v)))
                })
            }
            Kind::Depth16 => {
                let q = depth_core::png16::quantizer(&d.data, depth_core::png16::Png16Scale::MinMax);
                png_rows(w, d, png::ColorType::Grayscale, png::BitDepth::Sixteen, |r, out| {
                    out.extend(r.iter().flat_map(|&v| q(v).to_be_bytes()))
                })
            }
        };
        png.map_err(std::io::Error::other)
    }
}

/// A PNG of `d` written one row at a time (`row` turns a row of values into its bytes).
fn png_rows(
    w: &mut dyn Write,
    d: &DepthMap,
    color: png::ColorType,
    depth: png::BitDepth,
    row: impl Fn(&[f32], &mut Vec<u8>),
) -> std::result::Result<(), png::EncodingError> {
    let mut enc = png::Encoder::new(w, d.width, d.height);
    enc.set_color(color);
    enc.set_depth(depth);
    let mut writer = enc.write_header()?;
    let mut stream = writer.stream_writer()?;
    let mut bytes = Vec::new();
    for r in d.data.chunks(d.width as usize) {
        bytes.clear();
        row(r, &mut bytes);
        stream.write_all(&bytes)?;
    }
    stream.finish()?;
    writer.finish()
}

/// The bytes of a result's `.npy` (the header is padded to 64 bytes, as NumPy writes it).
fn npy_size(stored: &Stored) -> u64 {
    let mut header = Vec::new();
    let d = &stored.depth;
    let _ = depth_core::npy::write_f32(&mut header, &[d.height as u64, d.width as u64], &[]);
    header.len() as u64 + 4 * d.data.len() as u64
}
