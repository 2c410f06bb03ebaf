//! `cargo xtask serve`: the official Gradio demo (app.py) as one page served by this binary —
//! upload or drop an image, see its depth beside it with a slider between them, pick a colour
//! map, download the coloured PNG, the 16-bit PNG and the float32 `.npy`.
//!
//! Safe by default: it binds to 127.0.0.1; nothing a request says names a file (the page is
//! compiled in, results have random ids). The memory of the whole server is bounded, whatever
//! the clients do (docs/reliability.md has the sum):
//! - uploads: at most `--max-upload-mb` each (a larger `Content-Length` is refused before the
//!   body), `--queue` of them waiting, holding at most `--max-queued-mb` together; a body must
//!   arrive within `--body-timeout`, headers within `--header-timeout`;
//! - one image at a time is decoded and run (its pixels limited from the header, before
//!   decoding: a decompression bomb is refused);
//! - results: the depth alone is kept (`results.rs`), within `--results-mb`, the oldest
//!   dropped first and every one after `--results-minutes`; the reply is a small JSON with an
//!   id whatever the image's size;
//! - downloads are encoded while they are sent, a few rows at a time, at most `--downloads` at
//!   once; a client that stops reading for `--write-timeout` loses its connection (`stream.rs`).

mod api;
mod results;
mod stream;

use crate::error::{Result, XtaskError};
use axum::Router;
use axum::routing::{get, post};
use depth_models::DepthEstimator;
use results::Results;
use std::sync::Arc;
use std::time::Duration;

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
    /// MiB the waiting uploads may hold together; more are answered 503.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..))]
    max_queued_mb: u64,
    /// MiB of results kept for download (4 bytes a pixel); the oldest go first.
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u64).range(1..))]
    results_mb: u64,
    /// Minutes a result stays downloadable.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    results_minutes: u64,
    /// Downloads sent at once; more are answered 503.
    #[arg(long, default_value_t = 4, value_parser = crate::net_input::positive())]
    downloads: usize,
    /// Open connections; more are closed at once.
    #[arg(long, default_value_t = 256, value_parser = crate::net_input::positive())]
    connections: usize,
    /// Seconds a client has to send a request's headers.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    header_timeout: u64,
    /// Seconds a client has to send an upload's body.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    body_timeout: u64,
    /// Seconds a client may stop reading a reply before its connection is closed.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    write_timeout: u64,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: depth_core::DeviceSpec,
}

/// What every request shares.
struct App {
    estimator: DepthEstimator,
    /// The model as the page names it (never where its file is).
    model_name: String,
    max_pixels: u64,
    max_upload: u64,
    body_timeout: Duration,
    /// The waiting uploads: how many may wait, and how many bytes they may hold.
    queue: usize,
    max_queued: u64,
    waiting: std::sync::Mutex<(usize, u64)>,
    /// One request at a time runs the model (and decodes, so queued images hold only bytes).
    turn: Arc<tokio::sync::Mutex<()>>,
    results: Results,
    downloads: Arc<tokio::sync::Semaphore>,
}

pub fn run_server(args: ServeArgs) -> Result<()> {
    let device = args.device.open()?;
    let (source, model) = args.model.load(&device)?;
    let estimator = args.input.estimator(model, device);
    let app = Arc::new(App {
        estimator,
        model_name: source.name(),
        max_pixels: args.max_pixels,
        max_upload: args.max_upload_mb << 20,
        body_timeout: Duration::from_secs(args.body_timeout),
        queue: args.queue,
        max_queued: args.max_queued_mb << 20,
        waiting: std::sync::Mutex::new((0, 0)),
        turn: Arc::new(tokio::sync::Mutex::new(())),
        results: Results::new(args.results_mb << 20, Duration::from_secs(60 * args.results_minutes)),
        downloads: Arc::new(tokio::sync::Semaphore::new(args.downloads)),
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
        println!("serving {} on http://{addr}/ (Ctrl-C stops)", app.model_name);
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        let limits = stream::Limits {
            connections: args.connections,
            header: Duration::from_secs(args.header_timeout),
            write: Duration::from_secs(args.write_timeout),
        };
        tokio::select! {
            r = stream::serve(listener, router(app), limits) => r,
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    })
}

/// The page, the upload, the downloads.
fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(api::page))
        .route("/api/depth", post(api::depth))
        .route("/api/result/{id}/{file}", get(api::download))
        .route("/health", get(|| async { "ok" }))
        .fallback(|| async { api::refuse(axum::http::StatusCode::NOT_FOUND, "no such page") })
        .with_state(app)
}
