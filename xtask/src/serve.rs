//! `cargo xtask serve`: the official Gradio demo (app.py) as one page served by this binary —
//! upload or drop an image, see its depth beside it with a slider between them, pick a colour
//! map, download the coloured PNG, the 16-bit PNG and the float32 `.npy`.
//!
//! Safe by default: it binds to 127.0.0.1; uploads are limited in bytes (before they are read)
//! and in pixels (from the header, before decoding: a decompression bomb is refused); images
//! are decoded and run one at a time behind one model, the others wait in a bounded queue
//! (a full queue answers 503). Nothing a request says names a file: the page is compiled in and
//! every result travels back in its own response, so concurrent requests cannot mix.

use crate::error::{Result, XtaskError};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use depth_models::{Colormap, DepthEstimator};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    model: crate::net_input::ModelArgs,
    #[command(flatten)]
    input: crate::net_input::NetInput,
    /// Address to listen on; 127.0.0.1 keeps the demo on this machine (0.0.0.0 opens it to the
    /// network).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port (0: any free one; the address is printed).
    #[arg(long, default_value_t = 7860)]
    port: u16,
    /// Largest upload in MiB.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=1024))]
    max_upload_mb: u64,
    /// Most pixels an uploaded image may have (checked from its header before decoding).
    #[arg(long, default_value_t = 25_000_000, value_parser = clap::value_parser!(u64).range(1..=depth_core::image_io::MAX_IMAGE_PIXELS))]
    max_pixels: u64,
    /// Requests that may wait for the model; more are answered 503.
    #[arg(long, default_value_t = 64, value_parser = crate::net_input::positive())]
    queue: usize,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: depth_core::DeviceSpec,
}

struct App {
    estimator: DepthEstimator,
    model_name: String,
    max_pixels: u64,
    queue: usize,
    waiting: AtomicUsize,
    /// One request at a time runs the model (and decodes, so queued images hold only bytes).
    turn: Arc<tokio::sync::Mutex<()>>,
}

/// A place in the queue, given back however the request ends (a client that hangs up while
/// waiting drops its request future, and with it this).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(serde::Deserialize)]
struct DepthQuery {
    cmap: Option<String>,
}

#[derive(serde::Serialize)]
struct DepthReply {
    width: u32,
    height: u32,
    min: f32,
    max: f32,
    cmap: &'static str,
    /// Milliseconds waiting for the model, and decoding + inference + encoding.
    wait_ms: u64,
    run_ms: u64,
    /// base64: the coloured PNG, the 16-bit PNG (min–max normalised), the float32 `.npy`.
    color_png: String,
    depth16_png: String,
    npy: String,
}

fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message.into() }))).into_response()
}

async fn depth(State(app): State<Arc<App>>, Query(q): Query<DepthQuery>, body: Bytes) -> Response {
    let cmap = match q.cmap.as_deref().unwrap_or("spectral_r").parse::<Colormap>() {
        Ok(c) => c,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e.to_string()),
    };
    if body.is_empty() {
        return refuse(StatusCode::BAD_REQUEST, "no image in the request");
    }
    let place = Waiting(&app.waiting);
    if app.waiting.fetch_add(1, Ordering::SeqCst) >= app.queue {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "the demo is busy: too many images are waiting; retry soon",
        );
    }
    let queued = Instant::now();
    let turn = app.turn.clone().lock_owned().await;
    drop(place);
    let wait_ms = queued.elapsed().as_millis() as u64;
    let started = Instant::now();
    let worker = app.clone();
    // the turn goes with the work: if the client hangs up, the model stays busy until it is done
    let result = tokio::task::spawn_blocking(move || {
        let _turn = turn;
        run(&worker, &body, cmap)
    })
    .await;
    match result {
        Ok(Ok(mut reply)) => {
            reply.wait_ms = wait_ms;
            reply.run_ms = started.elapsed().as_millis() as u64;
            tracing::info!("{}×{} in {} ms (waited {wait_ms} ms)", reply.width, reply.height, reply.run_ms);
            axum::Json(reply).into_response()
        }
        Ok(Err(e)) => refuse(StatusCode::UNPROCESSABLE_ENTITY, e),
        Err(e) => refuse(StatusCode::INTERNAL_SERVER_ERROR, format!("the model failed: {e}")),
    }
}

/// Decode, estimate, encode the three results.
fn run(app: &App, bytes: &[u8], cmap: Colormap) -> std::result::Result<DepthReply, String> {
    let img = depth_core::image_io::decode_image_within(bytes, app.max_pixels)
        .map_err(|e| format!("cannot read this image: {e}"))?;
    let depth = app.estimator.estimate(&img).map_err(|e| e.to_string())?;
    let mut color = std::io::Cursor::new(Vec::new());
    depth.colorize(cmap).write_to(&mut color, image::ImageFormat::Png).map_err(|e| e.to_string())?;
    let mut npy = Vec::new();
    depth.write_npy(&mut npy).map_err(|e| e.to_string())?;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let (min, max) = depth.min_max();
    Ok(DepthReply {
        width: depth.width,
        height: depth.height,
        min,
        max,
        cmap: cmap.name(),
        wait_ms: 0,
        run_ms: 0,
        color_png: b64(color.get_ref()),
        depth16_png: b64(&depth.png16_bytes().map_err(|e| e.to_string())?),
        npy: b64(&npy),
    })
}

async fn page(State(app): State<Arc<App>>) -> Html<String> {
    Html(include_str!("serve/index.html").replace("{{MODEL}}", &html_escape(&app.model_name)))
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The router of the demo (the page and `POST /api/depth?cmap=…` with the image as the body).
fn router(app: Arc<App>, max_upload: usize) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/api/depth", post(depth))
        .route("/health", get(|| async { "ok" }))
        .fallback(|| async { refuse(StatusCode::NOT_FOUND, "no such page") })
        .layer(DefaultBodyLimit::max(max_upload))
        .layer(axum::middleware::map_response(too_large))
        .with_state(app)
}

/// The body limit answers 413 with plain text; the page wants a sentence it can show.
async fn too_large(r: Response) -> Response {
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE
        && r.headers().get(header::CONTENT_TYPE).is_none_or(|t| t != "application/json")
    {
        return refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the file is larger than the upload limit of this demo",
        );
    }
    r
}

pub fn run_server(args: ServeArgs) -> Result<()> {
    let device = args.device.open()?;
    let (source, model) = args.model.load(&device)?;
    let estimator = args.input.estimator(model, device);
    let app = Arc::new(App {
        estimator,
        model_name: source.to_string(),
        max_pixels: args.max_pixels,
        queue: args.queue,
        waiting: AtomicUsize::new(0),
        turn: Arc::new(tokio::sync::Mutex::new(())),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| XtaskError::Server { reason: format!("cannot start its runtime: {e}") })?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port)).await.map_err(|e| {
            XtaskError::Server { reason: format!("cannot listen on {}:{}: {e}", args.host, args.port) }
        })?;
        let addr = listener.local_addr().map_err(|e| XtaskError::Server { reason: e.to_string() })?;
        println!("serving {source} on http://{addr}/ (Ctrl-C stops)");
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        let max_upload = (args.max_upload_mb * 1024 * 1024) as usize;
        axum::serve(listener, router(app, max_upload))
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .map_err(|e| XtaskError::Server { reason: format!("stopped: {e}") })
    })
}
