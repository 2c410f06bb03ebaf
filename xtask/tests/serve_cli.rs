//! `cargo xtask serve` in a real browser (Debian's headless Chromium through chromedriver,
//! driven by fantoccini): upload a fixture image, wait for the depth, download the 16-bit PNG
//! and compare it with `infer --save-raw png16` of the same image; a colour-map change, a file
//! that is no image and a decompression bomb get their message in the page; a screenshot is
//! kept. And load tests on localhost: 50 concurrent uploads of three images, every answer the
//! right one, the server's peak memory bounded; clients that send slowly, claim huge bodies,
//! make huge results and never read them, with the server's peak memory bounded and the
//! server still answering.

mod common;

use fantoccini::{ClientBuilder, Locator};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn fixtures() -> PathBuf {
    depth_core::fixtures::fixtures_dir().expect("shared fixtures are required")
}

fn weights() -> String {
    fixtures().join("weights/da2_vits_random.pth").to_string_lossy().into_owned()
}

/// A child process killed when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `xtask serve` on a free port; its address ("127.0.0.1:PORT").
fn serve(extra: &[&str]) -> (Killed, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["serve", "--weights", &weights(), "--port", "0", "--input-size", "70"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start xtask serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.split("http://").nth(1).expect("the server prints its address");
    let addr = url.split_whitespace().next().unwrap().trim_end_matches('/').to_string();
    (Killed(child), addr)
}

/// One HTTP/1.1 request on a fresh connection: (status, body).
fn request(addr: &str, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(300))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).unwrap();
    let split = reply.windows(4).position(|w| w == b"\r\n\r\n").expect("a header");
    let head = String::from_utf8_lossy(&reply[..split]).to_ascii_lowercase();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let body = &reply[split + 4..];
    let body = if head.contains("transfer-encoding: chunked") { dechunk(body) } else { body.to_vec() };
    (status, body)
}

/// The data of an HTTP/1.1 chunked body (a download of unknown length comes so).
fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line = body.windows(2).position(|w| w == b"\r\n").expect("a chunk size line");
        let size = usize::from_str_radix(std::str::from_utf8(&body[..line]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&body[line + 2..line + 2 + size]);
        body = &body[line + 2 + size + 2..];
    }
}

fn png16_pixels(path: &Path) -> Vec<u16> {
    image::open(path).unwrap().into_luma16().into_raw()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_see_and_download_in_headless_chromium() {
    let dir = tempfile::tempdir().unwrap();
    // Chrome's file input takes only canonical paths; DEPTH_FIXTURES may be relative (CI: ../shared).
    let img = fixtures().join("images/square04.png").canonicalize().unwrap();
    // what the demo must give: infer's 16-bit PNG of the same image at the same input size
    let expected = dir.path().join("expected");
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["infer", "--weights", &weights(), "--input-size", "70", "--save-raw", "png16", "--pred-only"])
        .args(["--img-path", img.to_str().unwrap(), "--outdir", expected.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let (_server, addr) = serve(&[]);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let _driver = Killed(
        Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (apt-get install chromium chromium-driver)"),
    );
    let downloads = dir.path().join("downloads");
    std::fs::create_dir(&downloads).unwrap();
    let caps = serde_json::json!({ "goog:chromeOptions": {
        "binary": "/usr/bin/chromium",
        "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,1100"],
        "prefs": { "download.default_directory": downloads, "download.prompt_for_download": false },
    }});
    let caps: serde_json::Map<String, serde_json::Value> = caps.as_object().unwrap().clone();
    let started = Instant::now();
    let client = loop {
        match ClientBuilder::rustls()
            .unwrap()
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(c) => break c,
            Err(e) if started.elapsed() < Duration::from_secs(20) => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("no WebDriver session: {e}"),
        }
    };
    let wait = Duration::from_secs(120);
    let state = |s: &'static str| format!("#result[data-state='{s}']");
    client.goto(&format!("http://{addr}/")).await.unwrap();
    client.find(Locator::Css("#file")).await.unwrap().send_keys(img.to_str().unwrap()).await.unwrap();
    client.wait().at_most(wait).for_element(Locator::Css(&state("done"))).await.unwrap();
    let status = client.find(Locator::Id("status")).await.unwrap().text().await.unwrap();
    assert!(
        status.contains("700×700") && status.contains("spectral_r") && status.contains(" ms"),
        "{status}"
    );
    let shot = client.screenshot().await.unwrap();
    let kept = Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve_demo.png");
    std::fs::write(&kept, &shot).unwrap();
    println!("screenshot: {}", kept.display());

    // the 16-bit PNG download equals infer's
    client.find(Locator::Id("dl-depth16")).await.unwrap().click().await.unwrap();
    let got = downloads.join("square04_depth16.png");
    let started = Instant::now();
    while !got.exists() && started.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(got.exists(), "no download in {}", downloads.display());
    assert_eq!(png16_pixels(&got), png16_pixels(&expected.join("square04_depth16.png")));

    // another colour map: the page asks again
    client.find(Locator::Css("#cmap option[value='gray']")).await.unwrap().click().await.unwrap();
    let started = Instant::now();
    loop {
        let s = client.find(Locator::Id("status")).await.unwrap().text().await.unwrap();
        if s.contains("gray") {
            break;
        }
        assert!(started.elapsed() < wait, "the colour map did not change: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // no image, a bomb: a message in the page
    let junk = dir.path().join("junk.png");
    std::fs::write(&junk, b"this is not an image").unwrap();
    let bomb = dir.path().join("bomb.png");
    std::fs::write(&bomb, common::png_claiming(100_000, 100_000)).unwrap();
    for (file, says) in [(&junk, "cannot read this image"), (&bomb, "100000×100000")] {
        client.find(Locator::Css("#file")).await.unwrap().send_keys(file.to_str().unwrap()).await.unwrap();
        client.wait().at_most(wait).for_element(Locator::Css(&state("error"))).await.unwrap();
        let error = client.find(Locator::Id("error")).await.unwrap().text().await.unwrap();
        assert!(error.contains(says), "{}: {error}", file.display());
        client.goto(&format!("http://{addr}/")).await.unwrap();
    }
    client.close().await.unwrap();
}

/// The server's peak resident memory in MiB.
fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    kb / 1024
}

#[test]
fn fifty_concurrent_uploads_are_all_answered_right_in_bounded_memory() {
    let (server, addr) = serve(&[]);
    let images: Vec<Vec<u8>> = ["images/square04.png", "images/demo01.jpg", "images/demo03.jpg"]
        .iter()
        .map(|p| std::fs::read(fixtures().join(p)).unwrap())
        .collect();
    // each image's answer, asked alone
    let expected: Vec<serde_json::Value> = images
        .iter()
        .map(|b| {
            let (status, body) = request(&addr, "POST", "/api/depth", b);
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
            serde_json::from_slice(&body).unwrap()
        })
        .collect();
    let before = peak_rss_mib(server.0.id());
    let answers: Vec<(usize, u16, serde_json::Value)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..50)
            .map(|i| {
                let (addr, body) = (&addr, &images[i % 3]);
                s.spawn(move || {
                    let (status, reply) = request(addr, "POST", "/api/depth", body);
                    (i % 3, status, serde_json::from_slice(&reply).unwrap())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let npy = |reply: &serde_json::Value| {
        let (status, body) =
            request(&addr, "GET", &format!("/api/result/{}/depth.npy", reply["id"].as_str().unwrap()), b"");
        assert_eq!(status, 200);
        body
    };
    let expected_npy: Vec<Vec<u8>> = expected.iter().map(npy).collect();
    for (k, status, reply) in &answers {
        assert_eq!(*status, 200, "{reply}");
        for key in ["width", "height", "min", "max"] {
            assert_eq!(reply[key], expected[*k][key], "image {k}: {key} differs from its answer alone");
        }
        assert_eq!(npy(reply), expected_npy[*k], "image {k}: its depth differs from its answer alone");
    }
    let waited = answers.iter().filter(|(_, _, r)| r["wait_ms"].as_u64() > Some(0)).count();
    let after = peak_rss_mib(server.0.id());
    println!(
        "50 concurrent uploads: all right, {waited} waited for the model; peak RSS {before} → {after} MiB"
    );
    assert!(waited > 0, "the uploads were not concurrent");
    assert!(after < before + 512, "peak memory grew from {before} to {after} MiB under load");

    // a path never reaches the filesystem; a full queue is refused, not buffered
    let (status, _) = request(&addr, "GET", "/../../etc/passwd", b"");
    assert_eq!(status, 404);
    drop(server);
    let (_small, addr) = serve(&["--queue", "1"]);
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let hs: Vec<_> =
            (0..6).map(|_| s.spawn(|| request(&addr, "POST", "/api/depth", &images[1]).0)).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(statuses.contains(&503) && statuses.contains(&200), "{statuses:?}");
}

/// A PNG of `w`×`h` black pixels: a few KB that decode to a large image.
fn black_png(w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::new();
    image::DynamicImage::new_rgb8(w, h)
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

/// Reads until the server closes the connection or `limit` passes; returns what came and
/// whether it was closed.
fn read_until_closed(s: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let (started, mut got, mut buf) = (Instant::now(), Vec::new(), [0u8; 4096]);
    while started.elapsed() < limit {
        match s.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return (got, true),
        }
    }
    (got, false)
}

#[test]
fn slow_greedy_and_silent_clients_cannot_grow_the_server_or_stop_it() {
    let limits = [
        "--header-timeout",
        "2",
        "--body-timeout",
        "2",
        "--write-timeout",
        "3",
        "--results-mb",
        "300",
        "--downloads",
        "2",
        "--max-upload-mb",
        "4",
    ];
    let (server, addr) = serve(&limits);
    // the page names the model, not where its file lives
    let (_, page) = request(&addr, "GET", "/", b"");
    let page = String::from_utf8(page).unwrap();
    let folder = fixtures().join("weights").canonicalize().unwrap();
    assert!(page.contains("da2_vits_random.pth") && !page.contains(folder.to_str().unwrap()));

    // a claimed body over the limit: 413 at once, no body read
    let t0 = Instant::now();
    let mut s = TcpStream::connect(&addr).unwrap();
    write!(s, "POST /api/depth HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n").unwrap();
    let (reply, _) = read_until_closed(&mut s, Duration::from_secs(10));
    assert!(
        String::from_utf8_lossy(&reply).starts_with("HTTP/1.1 413"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    assert!(t0.elapsed() < Duration::from_secs(2), "413 took {:?}", t0.elapsed());

    // headers one line a second: the connection is closed at the header deadline
    let t0 = Instant::now();
    let mut s = TcpStream::connect(&addr).unwrap();
    s.write_all(b"POST /api/depth HTTP/1.1\r\n").unwrap();
    let mut closed = false;
    for i in 0..15 {
        std::thread::sleep(Duration::from_secs(1));
        if write!(s, "X-Slow-{i}: 1\r\n").is_err() {
            closed = true;
            break;
        }
        let (_, shut) = read_until_closed(&mut s, Duration::from_millis(10));
        if shut {
            closed = true;
            break;
        }
    }
    assert!(closed && t0.elapsed() < Duration::from_secs(8), "slow headers kept for {:?}", t0.elapsed());

    // a body one byte a second: 408 at the body deadline
    let t0 = Instant::now();
    let mut s = TcpStream::connect(&addr).unwrap();
    write!(s, "POST /api/depth HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n").unwrap();
    let mut reply = Vec::new();
    for _ in 0..10 {
        if s.write_all(b"x").is_err() {
            break;
        }
        let (got, shut) = read_until_closed(&mut s, Duration::from_secs(1));
        reply.extend(got);
        if shut || !reply.is_empty() {
            break;
        }
    }
    assert!(
        String::from_utf8_lossy(&reply).starts_with("HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    assert!(t0.elapsed() < Duration::from_secs(6), "slow body kept for {:?}", t0.elapsed());

    // large results from small uploads (5000×5000 black: 100 MB of depth each) and downloads
    // nobody reads: the results stay within --results-mb, two downloads at most are sent, and
    // a silent reader loses its connection at the write deadline
    let black = black_png(5000, 5000);
    assert!(black.len() < 1 << 20, "{} bytes", black.len());
    let upload = || {
        let (status, body) = request(&addr, "POST", "/api/depth", &black);
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        assert!(body.len() < 1000, "a reply of {} bytes", body.len());
        let reply: serde_json::Value = serde_json::from_slice(&body).unwrap();
        reply["id"].as_str().unwrap().to_string()
    };
    // one such image costs what it costs (decoding, the network input, its depth) ...
    let mut ids = vec![upload()];
    let one = peak_rss_mib(server.0.id());
    // ... and more of them, with readers that never read, add at most the results' budget
    ids.extend((0..5).map(|_| upload()));
    // 300 MB hold the last two (100 MB each, the third would pass the budget)
    let (status, _) = request(&addr, "GET", &format!("/api/result/{}/depth.npy", ids[0]), b"");
    assert_eq!(status, 404, "the oldest result was not dropped");
    let last = &ids[5];
    let silent: Vec<TcpStream> = (0..8)
        .map(|_| {
            let mut s = TcpStream::connect(&addr).unwrap();
            write!(s, "GET /api/result/{last}/depth.npy HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_secs(6));
    let (status, _) = request(&addr, "GET", "/health", b"");
    assert_eq!(status, 200, "the server stopped answering");
    drop(silent);
    let (status, body) = request(&addr, "GET", &format!("/api/result/{last}/depth.npy"), b"");
    assert_eq!(status, 200);
    assert_eq!(body.len(), 128 + 4 * 5000 * 5000, "a whole .npy after the silent readers");
    let (status, png) = request(&addr, "GET", &format!("/api/result/{last}/depth16.png"), b"");
    assert_eq!(status, 200);
    assert_eq!(image::load_from_memory(&png).unwrap().into_luma16().dimensions(), (5000, 5000));
    let after = peak_rss_mib(server.0.id());
    println!("huge results and silent readers: peak RSS {one} MiB after one, {after} MiB after all");
    assert!(after < one + 300 + 64, "peak memory grew from {one} to {after} MiB with the clients");
}
