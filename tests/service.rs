//! The HTTP service, started for real on a free loopback port: every endpoint and error
//! path, parity with the command line under concurrency, back-pressure and draining.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use common::{random_bundle, run, stderr, stdout};
use reqwest::blocking::{multipart, Client};
use serde_json::{json, Value};

struct Server {
    child: Child,
    base: String,
    log: Arc<Mutex<String>>,
}

impl Server {
    fn start(bundle: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sslmem"))
            .args([
                "serve",
                "--bundle",
                bundle.to_str().expect("utf8"),
                "--port",
                "0",
            ])
            .args(extra)
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start sslmem serve");
        let err = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if let Some(addr) = line.split("listening on ").nth(1) {
                    let _ = tx.send(addr.trim().to_string());
                }
                log2.lock().expect("log").push_str(&(line + "\n"));
            }
        });
        let base = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                let _ = child.kill();
                panic!("server did not start: {}", log.lock().expect("log"))
            });
        Server { child, base, log }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client")
}

fn pngs(dir: &Path, n: usize, size: u32) -> Vec<PathBuf> {
    (0..n)
        .map(|i| {
            let p = dir.join(format!("img{i:02}.png"));
            image::GrayImage::from_fn(size, size, |x, y| {
                image::Luma([((x * (3 + i as u32) + y * 7 + i as u32 * 11) % 256) as u8])
            })
            .save(&p)
            .expect("png");
            p
        })
        .collect()
}

fn form(files: &[PathBuf]) -> multipart::Form {
    files.iter().fold(multipart::Form::new(), |f, p| {
        let bytes = std::fs::read(p).expect("read");
        let name = p.file_name().expect("name").to_string_lossy().into_owned();
        f.part("image", multipart::Part::bytes(bytes).file_name(name))
    })
}

fn cli_scores(bundle: &Path, files: &[PathBuf], pairs: &str, seed: &str) -> Vec<Value> {
    let mut args = vec![
        "score",
        "--bundle",
        bundle.to_str().expect("utf8"),
        "--pairs",
        pairs,
        "--seed",
        seed,
    ];
    args.extend(files.iter().map(|p| p.to_str().expect("utf8")));
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect()
}

/// The service's result fields equal the command line's, to the last bit.
fn assert_same(service: &Value, cli: &Value) {
    for k in [
        "align_f",
        "align_g",
        "score",
        "score_ratio",
        "stderr",
        "ci95",
        "pairs",
    ] {
        assert_eq!(
            service[k], cli[k],
            "field {k}: service {service} vs cli {cli}"
        );
    }
}

fn error_of(resp: reqwest::blocking::Response, status: u16) -> Value {
    assert_eq!(resp.status().as_u16(), status, "unexpected status");
    let v: Value = resp.json().expect("JSON error body");
    assert!(v["error"].is_string() && v["error_type"].is_string(), "{v}");
    v
}

#[test]
fn endpoints_answer_and_scores_equal_the_command_line_under_concurrency() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bundle = random_bundle(dir.path(), "b", &["--models", "2"]);
    let files = pngs(dir.path(), 8, 32);
    let server = Server::start(&bundle, &[]);
    let c = client();

    assert_eq!(
        c.get(server.url("/healthz"))
            .send()
            .expect("healthz")
            .status(),
        200
    );
    assert_eq!(
        c.get(server.url("/readyz"))
            .send()
            .expect("readyz")
            .status(),
        200
    );
    let b: Value = c
        .get(server.url("/v1/bundle"))
        .send()
        .expect("bundle")
        .json()
        .expect("json");
    assert_eq!(b["provider"], "cpu");
    // The folder's name and the manifest's hash, never the path on the server's disk.
    assert_eq!(b["bundle"], "b");
    let manifest = std::fs::read(bundle.join("sslmem.json")).expect("manifest");
    assert_eq!(
        b["sha256"],
        format!("{:x}", <sha2::Sha256 as sha2::Digest>::digest(&manifest))
    );
    assert!(
        !b.to_string().contains(&*dir.path().to_string_lossy()),
        "/v1/bundle shows the server's path: {b}"
    );
    assert_eq!(b["encoders"], json!({"f": 2, "g": 2}));
    assert_eq!(b["manifest"]["format"], "sslmem-bundle/1");
    assert!(b["limits"]["max_images"].as_u64().is_some());
    let doc: Value = c
        .get(server.url("/openapi.json"))
        .send()
        .expect("openapi")
        .json()
        .expect("json");
    assert_eq!(doc["openapi"], "3.1.0");
    let html = c
        .get(server.url("/docs"))
        .send()
        .expect("docs")
        .text()
        .expect("html");
    assert!(html.contains("SwaggerUIBundle") && html.contains("/openapi.json"));
    // With a trailing slash, as links and hands often write it: the same page.
    let slash = c.get(server.url("/docs/")).send().expect("docs/");
    assert_eq!(slash.status(), 200);
    assert_eq!(slash.text().expect("html"), html);
    let js = c
        .get(server.url("/docs/swagger-ui-bundle.js"))
        .send()
        .expect("js");
    assert_eq!(js.status(), 200);
    assert!(
        js.bytes().expect("bytes").len() > 1_000_000,
        "the vendored Swagger UI is served"
    );

    // Multipart, parameters in the query string.
    let want = cli_scores(&bundle, &files, "4", "5");
    let r: Value = c
        .post(server.url("/v1/score?pairs=4&seed=5"))
        .multipart(form(&files))
        .send()
        .expect("score")
        .json()
        .expect("json");
    assert_eq!(r["provider"], "cpu");
    assert_eq!(r["params"]["pairs"], 4);
    let results = r["results"].as_array().expect("results");
    assert_eq!(results.len(), files.len());
    for (s, w) in results.iter().zip(&want) {
        assert_same(s, w);
    }
    assert_eq!(results[0]["input"], "img00.png");

    // JSON with base64 images, parameters in the body.
    let images: Vec<Value> = files
        .iter()
        .map(|p| json!({"name": p.file_name().expect("n").to_string_lossy(), "data": base64::engine::general_purpose::STANDARD.encode(std::fs::read(p).expect("read"))}))
        .collect();
    let r: Value = c
        .post(server.url("/v1/score"))
        .json(&json!({"images": images, "pairs": 4, "seed": 5}))
        .send()
        .expect("score")
        .json()
        .expect("json");
    for (s, w) in r["results"].as_array().expect("results").iter().zip(&want) {
        assert_same(s, w);
    }

    // Many concurrent clients, each with its own subset, batched together by the server.
    let handles: Vec<_> = (0..16)
        .map(|t| {
            let (c, url, files, want) = (
                c.clone(),
                server.url("/v1/score?pairs=4&seed=5"),
                files.clone(),
                want.clone(),
            );
            std::thread::spawn(move || {
                let pick: Vec<usize> = (0..files.len()).filter(|i| (i + t) % 3 != 0).collect();
                let sub: Vec<PathBuf> = pick.iter().map(|&i| files[i].clone()).collect();
                let r: Value = c
                    .post(url)
                    .multipart(form(&sub))
                    .send()
                    .expect("score")
                    .json()
                    .expect("json");
                for (s, &i) in r["results"].as_array().expect("results").iter().zip(&pick) {
                    assert_same(s, &want[i]);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("client thread");
    }

    // align: multipart parts a1 b1 a2 b2, and JSON pairs; same as the command line.
    let sized: Vec<PathBuf> = (0..3)
        .map(|i| {
            let p = dir.path().join(format!("m{i}.png"));
            image::GrayImage::from_fn(28, 28, |x, y| {
                image::Luma([((x * 5 + y * (i + 2)) % 256) as u8])
            })
            .save(&p)
            .expect("png");
            p
        })
        .collect();
    let o = run(&[
        "align",
        "--bundle",
        bundle.to_str().expect("utf8"),
        sized[0].to_str().expect("u"),
        sized[1].to_str().expect("u"),
        sized[2].to_str().expect("u"),
        sized[2].to_str().expect("u"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let cli: Vec<Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let parts = [
        sized[0].clone(),
        sized[1].clone(),
        sized[2].clone(),
        sized[2].clone(),
    ];
    let r: Value = c
        .post(server.url("/v1/align"))
        .multipart(form(&parts))
        .send()
        .expect("align")
        .json()
        .expect("json");
    let res = r["results"].as_array().expect("results");
    assert_eq!(res.len(), 2);
    for (s, w) in res.iter().zip(&cli) {
        assert_eq!(
            (s["d_f"].clone(), s["d_g"].clone()),
            (w["d_f"].clone(), w["d_g"].clone())
        );
    }
    let b64 = |p: &PathBuf| {
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(p).expect("read"))
    };
    let r: Value = c
        .post(server.url("/v1/align"))
        .json(&json!({"pairs": [{"a": b64(&sized[0]), "b": b64(&sized[1])}]}))
        .send()
        .expect("align")
        .json()
        .expect("json");
    assert_eq!(r["results"][0]["d_f"], cli[0]["d_f"]);

    // embed: one vector per encoder of the chosen side.
    let r: Value = c
        .post(server.url("/v1/embed?side=g"))
        .multipart(form(&files[..2]))
        .send()
        .expect("embed")
        .json()
        .expect("json");
    let first = &r["results"][0];
    assert!(first.get("f").is_none());
    assert_eq!(first["g"].as_array().expect("g").len(), 2);
    assert_eq!(first["g"][0].as_array().expect("vector").len(), 128);

    let m = c
        .get(server.url("/metrics"))
        .send()
        .expect("metrics")
        .text()
        .expect("text");
    for name in [
        "sslmem_http_requests_total{route=\"/v1/score\",status=\"200\"}",
        "sslmem_http_request_duration_seconds_bucket",
        "sslmem_http_requests_in_flight",
        "sslmem_queue_wait_seconds_count",
        "sslmem_inference_duration_seconds_count{encoder=\"g1\"}",
        "sslmem_batch_size_views_bucket",
        "sslmem_images_processed_total",
        "sslmem_views_processed_total",
        "sslmem_info{bundle=",
        "provider=\"cpu\"",
    ] {
        assert!(m.contains(name), "metrics lack {name}");
    }
    assert!(
        !m.contains("align_f") && !m.contains("score_ratio"),
        "no per-image scores in metrics"
    );
}

#[test]
fn error_paths_get_json_errors_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bundle = random_bundle(dir.path(), "b", &[]);
    let server = Server::start(
        &bundle,
        &[
            "--max-pixels",
            "2000",
            "--max-body-bytes",
            "40000",
            "--max-images",
            "3",
            "--max-pairs",
            "20",
        ],
    );
    let c = client();
    let good = pngs(dir.path(), 1, 28).remove(0);
    let bytes = std::fs::read(&good).expect("read");
    let part = |b: Vec<u8>, n: &str| {
        multipart::Form::new().part("image", multipart::Part::bytes(b).file_name(n.to_string()))
    };
    let score = server.url("/v1/score");

    let e = error_of(
        c.post(&score)
            .multipart(part(b"not an image".to_vec(), "bad.png"))
            .send()
            .expect("req"),
        422,
    );
    assert!(e["error"].as_str().expect("msg").contains("bad.png"), "{e}");
    error_of(
        c.post(&score)
            .multipart(part(bytes[..bytes.len() / 2].to_vec(), "half.png"))
            .send()
            .expect("req"),
        422,
    );
    let sub = |name: &str| {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).expect("mkdir");
        d
    };
    let big = pngs(&sub("big"), 1, 50).remove(0);
    let e = error_of(
        c.post(&score)
            .multipart(part(std::fs::read(&big).expect("read"), "big.png"))
            .send()
            .expect("req"),
        422,
    );
    assert!(
        e["error"]
            .as_str()
            .expect("msg")
            .contains("more than the limit"),
        "{e}"
    );
    let noise: Vec<u8> = (0..60_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    error_of(
        c.post(&score)
            .multipart(part(noise.clone(), "huge.bin"))
            .send()
            .expect("req"),
        413,
    );
    error_of(
        c.post(&score)
            .header("content-type", "application/json")
            .body(vec![b' '; 50_000])
            .send()
            .expect("req"),
        413,
    );
    for q in [
        "?pairs=0",
        "?pairs=21",
        "?mode=sideways",
        "?distance=l3",
        "?colour=red",
        "?seed=-1",
    ] {
        error_of(
            c.post(format!("{score}{q}"))
                .multipart(part(bytes.clone(), "a.png"))
                .send()
                .expect("req"),
            422,
        );
    }
    let e = error_of(
        c.post(&score)
            .header("content-type", "application/json")
            .body("{ nope")
            .send()
            .expect("req"),
        400,
    );
    assert_eq!(e["error_type"], "bad_request");
    error_of(
        c.post(&score)
            .json(&json!({"images": ["%%%"]}))
            .send()
            .expect("req"),
        422,
    );
    error_of(
        c.post(&score)
            .json(&json!({"images": []}))
            .send()
            .expect("req"),
        422,
    );
    let four = (0..4).fold(multipart::Form::new(), |f, i| {
        f.part(
            "image",
            multipart::Part::bytes(bytes.clone()).file_name(format!("{i}.png")),
        )
    });
    let e = error_of(c.post(&score).multipart(four).send().expect("req"), 422);
    assert!(
        e["error"].as_str().expect("msg").contains("limit is 3"),
        "{e}"
    );
    let e = error_of(
        c.post(&score)
            .header("content-type", "text/plain")
            .body("hello")
            .send()
            .expect("req"),
        415,
    );
    assert_eq!(e["error_type"], "unsupported_media_type");
    error_of(
        c.post(&score)
            .header("content-type", "multipart/form-data")
            .body("x")
            .send()
            .expect("req"),
        400,
    );
    error_of(c.get(server.url("/v1/nothing")).send().expect("req"), 404);
    error_of(c.get(&score).send().expect("req"), 405);
    let e = error_of(
        c.post(server.url("/v1/align"))
            .multipart(part(bytes.clone(), "a.png"))
            .send()
            .expect("req"),
        422,
    );
    assert!(e["error"].as_str().expect("msg").contains("pairs"), "{e}");
    let wrong_size = [good.clone(), pngs(&sub("odd"), 1, 30).remove(0)];
    let e = error_of(
        c.post(server.url("/v1/align"))
            .multipart(form(&wrong_size))
            .send()
            .expect("req"),
        422,
    );
    assert!(
        e["error"]
            .as_str()
            .expect("msg")
            .contains("does not resize"),
        "{e}"
    );
    error_of(
        c.post(server.url("/v1/embed?side=h"))
            .multipart(part(bytes.clone(), "a.png"))
            .send()
            .expect("req"),
        422,
    );

    // Still alive and still correct.
    assert_eq!(
        c.get(server.url("/healthz"))
            .send()
            .expect("healthz")
            .status(),
        200
    );
    let ok = c
        .post(&score)
        .multipart(part(bytes, "a.png"))
        .send()
        .expect("req");
    assert_eq!(ok.status(), 200);
    assert!(!server.log.lock().expect("log").contains("panicked"));
}

#[test]
fn on_error_report_gives_failed_images_an_entry_and_scores_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bundle = random_bundle(dir.path(), "b", &[]);
    let server = Server::start(&bundle, &["--max-pixels", "2000", "--pairs", "3"]);
    let c = client();
    let good = pngs(dir.path(), 2, 28);
    let big_dir = dir.path().join("big");
    std::fs::create_dir(&big_dir).expect("mkdir");
    let big = pngs(&big_dir, 1, 50).remove(0);
    let part = |f: multipart::Form, bytes: Vec<u8>, name: &str| {
        f.part(
            "image",
            multipart::Part::bytes(bytes).file_name(name.to_string()),
        )
    };
    let read = |p: &Path| std::fs::read(p).expect("read");
    let mixed = || {
        let f = part(multipart::Form::new(), read(&good[0]), "a.png");
        let f = part(f, b"not an image".to_vec(), "thumbs.db");
        let f = part(f, read(&good[1]), "b.png");
        let f = part(f, read(&big), "big.png");
        part(f, Vec::new(), "empty.png")
    };
    let score = server.url("/v1/score");
    let alone: Value = c
        .post(&score)
        .multipart(form(&good))
        .send()
        .expect("req")
        .json()
        .expect("json");

    let r = c
        .post(format!("{score}?on_error=report"))
        .multipart(mixed())
        .send()
        .expect("req");
    assert_eq!(r.status(), 200);
    let v: Value = r.json().expect("json");
    let results = v["results"].as_array().expect("results");
    assert_eq!(results.len(), 5, "{v}");
    // The good images score exactly as they do alone, in their own slots.
    assert_eq!(results[0]["input"], "a.png");
    assert_same(&results[0], &alone["results"][0]);
    assert_eq!(results[2]["input"], "b.png");
    assert_same(&results[2], &alone["results"][1]);
    for (i, name, kind, words) in [
        (1, "thumbs.db", "undecodable", "cannot decode image"),
        (3, "big.png", "too_large", "raise --max-pixels"),
        (4, "empty.png", "undecodable", "cannot decode image"),
    ] {
        let e = &results[i];
        assert_eq!(e["index"], i, "{e}");
        assert_eq!(e["input"], name, "{e}");
        assert_eq!(e["error_type"], kind, "{e}");
        assert!(e["error"].as_str().expect("error").contains(words), "{e}");
        assert!(e.get("score").is_none(), "{e}");
    }

    // The default, and `fail` said out loud: the whole request fails, naming the first.
    for q in ["", "?on_error=fail", "?on_error=FAIL"] {
        let e = error_of(
            c.post(format!("{score}{q}"))
                .multipart(mixed())
                .send()
                .expect("req"),
            422,
        );
        assert!(
            e["error"].as_str().expect("msg").starts_with("thumbs.db: "),
            "{q}: {e}"
        );
    }
    // In a JSON body, and when every image fails (an answer, not an error).
    let b64 = base64::engine::general_purpose::STANDARD;
    let v: Value = c
        .post(&score)
        .json(&json!({
            "images": [{"name": "x", "data": b64.encode(b"GIF89a broken")}],
            "on_error": "report",
        }))
        .send()
        .expect("req")
        .json()
        .expect("json");
    assert_eq!(v["results"][0]["error_type"], "undecodable", "{v}");
    assert_eq!(v["results"][0]["index"], 0, "{v}");
    // A bad value, and invalid base64 (the request's fault, not an image's), still fail.
    let e = error_of(
        c.post(format!("{score}?on_error=skip"))
            .multipart(form(&good))
            .send()
            .expect("req"),
        422,
    );
    assert!(
        e["error"].as_str().expect("msg").contains("fail, report"),
        "{e}"
    );
    error_of(
        c.post(&score)
            .json(&json!({"images": ["%%%"], "on_error": "report"}))
            .send()
            .expect("req"),
        422,
    );
    let m = c
        .get(server.url("/metrics"))
        .send()
        .expect("metrics")
        .text()
        .expect("text");
    assert!(m.contains("sslmem_image_errors_total 4"), "{m}");
    assert!(!server.log.lock().expect("log").contains("panicked"));
}

#[test]
fn api_key_guards_v1_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bundle = random_bundle(dir.path(), "b", &[]);
    let server = Server::start(&bundle, &["--api-key", "s3cret"]);
    let c = client();
    let e = error_of(c.get(server.url("/v1/bundle")).send().expect("req"), 401);
    assert_eq!(e["error_type"], "unauthorized");
    error_of(
        c.get(server.url("/v1/bundle"))
            .bearer_auth("wrong")
            .send()
            .expect("req"),
        401,
    );
    error_of(
        c.get(server.url("/v1/bundle"))
            .header("authorization", "s3cret")
            .send()
            .expect("req"),
        401,
    );
    assert_eq!(
        c.get(server.url("/v1/bundle"))
            .bearer_auth("s3cret")
            .send()
            .expect("req")
            .status(),
        200
    );
    for open in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/docs",
        "/docs/",
    ] {
        assert_eq!(
            c.get(server.url(open)).send().expect("req").status(),
            200,
            "{open}"
        );
    }
}

/// A request slow enough to overlap others: many images, many pairs.
fn slow_form(dir: &Path) -> (Vec<PathBuf>, &'static str) {
    (pngs(dir, 48, 28), "?pairs=100")
}

/// Posts the slow request on its own thread; joins to (status, JSON body).
fn spawn_slow(c: &Client, url: String, files: &[PathBuf]) -> std::thread::JoinHandle<(u16, Value)> {
    let (c, files) = (c.clone(), files.to_vec());
    std::thread::spawn(move || {
        let r = c.post(url).multipart(form(&files)).send().expect("slow");
        (r.status().as_u16(), r.json::<Value>().expect("json"))
    })
}

/// Waits until the server has `n` requests in flight (counting the metrics request itself).
fn wait_in_flight(c: &Client, server: &Server, n: u32) {
    let start = Instant::now();
    let want = format!(" {n}");
    loop {
        let m = c
            .get(server.url("/metrics"))
            .send()
            .expect("metrics")
            .text()
            .expect("text");
        if m.lines()
            .any(|l| l.starts_with("sslmem_http_requests_in_flight") && l.ends_with(&want))
        {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the slow request never started"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn over_concurrency_gets_429_and_slow_requests_time_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bundle = random_bundle(dir.path(), "b", &[]);
    let server = Server::start(
        &bundle,
        &[
            "--max-concurrent",
            "1",
            "--max-images",
            "64",
            "--max-pairs",
            "100",
        ],
    );
    let c = client();
    let (files, q) = slow_form(dir.path());
    let url = server.url(&format!("/v1/score{q}"));
    let slow = spawn_slow(&c, url, &files);
    wait_in_flight(&c, &server, 2);
    let small = files[..1].to_vec();
    let mut saw_429 = false;
    let start = Instant::now();
    while !slow.is_finished() && start.elapsed() < Duration::from_secs(60) {
        let r = c
            .post(server.url("/v1/score?pairs=1"))
            .multipart(form(&small))
            .send()
            .expect("req");
        if r.status() == 429 {
            assert_eq!(
                r.headers().get("retry-after").and_then(|v| v.to_str().ok()),
                Some("1")
            );
            let e: Value = r.json().expect("json");
            assert_eq!(e["error_type"], "overloaded");
            saw_429 = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        saw_429,
        "a second request while the first runs must be refused"
    );
    assert_eq!(slow.join().expect("slow thread").0, 200);
    drop(server);

    let server = Server::start(
        &bundle,
        &[
            "--request-timeout",
            "0.3",
            "--max-images",
            "64",
            "--max-pairs",
            "100",
        ],
    );
    let r = c
        .post(server.url(&format!("/v1/score{q}")))
        .multipart(form(&files))
        .send()
        .expect("req");
    let e = error_of(r, 503);
    assert_eq!(e["error_type"], "timeout");
    assert_eq!(
        c.get(server.url("/healthz"))
            .send()
            .expect("healthz")
            .status(),
        200
    );
}

#[test]
fn sigterm_drains_in_flight_requests_then_exits_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bundle = random_bundle(dir.path(), "b", &[]);
    let mut server = Server::start(
        &bundle,
        &[
            "--max-images",
            "64",
            "--max-pairs",
            "100",
            "--drain-timeout",
            "60",
        ],
    );
    let c = client();
    let (files, q) = slow_form(dir.path());
    let url = server.url(&format!("/v1/score{q}"));
    let slow = spawn_slow(&c, url, &files);
    wait_in_flight(&c, &server, 2);
    let pid = server.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill")
        .success());
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !slow.is_finished(),
        "the slow request should still be running"
    );
    error_of(c.get(server.url("/readyz")).send().expect("readyz"), 503);
    let e = error_of(
        c.post(server.url("/v1/score"))
            .multipart(form(&files[..1]))
            .send()
            .expect("req"),
        503,
    );
    assert_eq!(e["error_type"], "draining");
    let (status, body) = slow.join().expect("slow thread");
    assert_eq!(status, 200, "the in-flight request finishes: {body}");
    assert_eq!(
        body["results"].as_array().expect("results").len(),
        files.len()
    );
    let exit = server.child.wait().expect("wait");
    assert_eq!(exit.code(), Some(0), "{}", server.log.lock().expect("log"));
    assert!(server.log.lock().expect("log").contains("draining"));
}

/// The bundle the schemathesis run scores with (28x28 grayscale, as its hooks' images).
const CANARIES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/fashion-mnist-canaries");

/// Each (method, path) of a served OpenAPI document.
fn operations(doc: &Value) -> Vec<(String, String)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            ops.push((method.to_uppercase(), path.clone()));
        }
    }
    ops
}

#[test]
fn every_documented_route_is_served_and_the_document_has_the_servers_limits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bundle = random_bundle(dir.path(), "b", &[]);
    let server = Server::start(
        &bundle,
        &["--max-images", "5", "--max-pairs", "7", "--pairs", "2"],
    );
    let c = client();
    let doc: Value = c
        .get(server.url("/openapi.json"))
        .send()
        .expect("openapi")
        .json()
        .expect("json");
    let ops = operations(&doc);
    assert!(ops.len() >= 11, "{ops:?}");
    // The router is built from the same route table as the document; this walks the other
    // way: nothing documented falls through to the router's 404 or 405.
    for (method, path) in &ops {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let r = c.request(m, server.url(path)).send().expect("req");
        let status = r.status().as_u16();
        let body = r.text().unwrap_or_default();
        assert!(
            status != 404 && status != 405,
            "{method} {path} is documented but not served: {status} {body}"
        );
    }
    let query = doc["paths"]["/v1/score"]["post"]["parameters"]
        .as_array()
        .expect("parameters");
    let pairs = query.iter().find(|p| p["name"] == "pairs").expect("pairs");
    assert_eq!(pairs["schema"]["maximum"], 7);
    assert_eq!(
        doc["components"]["schemas"]["ScoreJson"]["properties"]["images"]["maxItems"],
        5
    );
    assert!(
        doc["components"].get("securitySchemes").is_none(),
        "no --api-key, no security"
    );

    let keyed = Server::start(&bundle, &["--api-key", "k"]);
    let doc: Value = c
        .get(keyed.url("/openapi.json"))
        .send()
        .expect("openapi")
        .json()
        .expect("json");
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert_eq!(
        doc["paths"]["/v1/bundle"]["get"]["security"],
        json!([{"bearer": []}])
    );
    assert!(doc["paths"]["/healthz"]["get"].get("security").is_none());
}

/// schemathesis from `scripts/setup.sh --python`, if installed.
fn schemathesis() -> Option<PathBuf> {
    let p = sslmem::runtime::sslmem_home()
        .join("py")
        .join("bin")
        .join("schemathesis");
    p.is_file().then_some(p)
}

/// Runs schemathesis with every check against `server`; panics with its output on any failure.
fn run_schemathesis(bin: &Path, server: &Server, examples: &str, extra: &[&str]) {
    let hooks = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/schemathesis");
    // Its own folder: schemathesis keeps a Hypothesis database in the working directory.
    let cwd = tempfile::tempdir().expect("tempdir");
    let o = Command::new(bin)
        .arg("run")
        .arg(server.url("/openapi.json"))
        .args(["--checks", "all", "--max-examples", examples, "--seed", "1"])
        .args(["--workers", "1", "--no-color"])
        .args(extra)
        .env("PYTHONPATH", hooks)
        .env("SCHEMATHESIS_HOOKS", "sslmem_hooks")
        .current_dir(cwd.path())
        .output()
        .expect("run schemathesis");
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        o.status.success(),
        "schemathesis found failures ({}):\n{out}",
        o.status
    );
    // "N generated, N passed" and the closing "No issues found in ...".
    for line in out
        .lines()
        .filter(|l| l.contains(" generated, ") || l.contains("No issues found"))
    {
        eprintln!("schemathesis: {}", line.trim());
    }
}

#[test]
fn schemathesis_finds_nothing_against_the_document() {
    let Some(bin) = schemathesis() else {
        if std::env::var_os("SSLMEM_REQUIRE_SCHEMATHESIS").is_some() {
            panic!(
                "schemathesis required but not in $SSLMEM_HOME/py: run scripts/setup.sh --python"
            );
        }
        eprintln!("skipped: schemathesis is not installed (scripts/setup.sh --python)");
        return;
    };
    // Small limits keep the largest generated request (4 images x 3 view pairs) quick.
    let limits = ["--max-images", "4", "--max-pairs", "3", "--pairs", "2"];
    let server = Server::start(Path::new(CANARIES), &limits);
    run_schemathesis(&bin, &server, "40", &[]);
    assert!(!server.log.lock().expect("log").contains("panicked"));
    drop(server);

    // With a key: the document declares bearer security, and requests without it get 401.
    let keyed = Server::start(
        Path::new(CANARIES),
        &[&limits[..], &["--api-key", "k"]].concat(),
    );
    run_schemathesis(&bin, &keyed, "10", &["--header", "Authorization: Bearer k"]);
}

/// An encoder that passes the contract check (a batch of 2 views gives 2 rows) but breaks on
/// larger batches: a Reshape to `[2, -1]`, as exporters bake a traced batch size into a graph.
fn write_breaks_above_two(path: &Path) {
    use onnx_protobuf::{
        tensor_proto::DataType, tensor_shape_proto, type_proto, Message, ModelProto, NodeProto,
        OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
    };
    let info = |name: &str, dims: &[Option<i64>]| {
        let mut shape = TensorShapeProto::new();
        shape.dim = dims
            .iter()
            .map(|d| {
                let mut dim = tensor_shape_proto::Dimension::new();
                dim.value = Some(match d {
                    Some(n) => tensor_shape_proto::dimension::Value::DimValue(*n),
                    None => tensor_shape_proto::dimension::Value::DimParam("batch".into()),
                });
                dim
            })
            .collect();
        let mut tt = type_proto::Tensor::new();
        tt.elem_type = DataType::FLOAT as i32;
        tt.shape = Some(shape).into();
        let mut ty = TypeProto::new();
        ty.value = Some(type_proto::Value::TensorType(tt));
        let mut vi = ValueInfoProto::new();
        vi.name = name.into();
        vi.type_ = Some(ty).into();
        vi
    };
    let mut shape = TensorProto::new();
    shape.name = "shape".into();
    shape.dims = vec![2];
    shape.data_type = DataType::INT64 as i32;
    shape.int64_data = vec![2, -1];
    let mut node = NodeProto::new();
    node.op_type = "Reshape".into();
    node.input = vec!["input".into(), "shape".into()];
    node.output = vec!["representation".into()];
    let mut graph = onnx_protobuf::GraphProto::new();
    graph.name = "breaks-above-two".into();
    graph.node = vec![node];
    graph.initializer = vec![shape];
    graph.input = vec![info("input", &[None, Some(1), Some(28), Some(28)])];
    graph.output = vec![info("representation", &[None, None])];
    let mut opset = OperatorSetIdProto::new();
    opset.version = 17;
    let mut m = ModelProto::new();
    m.ir_version = 8;
    m.opset_import = vec![opset];
    m.graph = Some(graph).into();
    std::fs::write(path, m.write_to_bytes().expect("encode")).expect("write model");
}

/// When inference keeps failing the engine stops; then health, readiness and `sslmem_ready`
/// say so, requests get 503 `engine_stopped` (JSON), and the process exits non-zero so that an
/// orchestrator restarts it.
#[test]
fn a_service_whose_engine_stops_says_so_and_exits_non_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("m.onnx");
    write_breaks_above_two(&model);
    let bundle = dir.path().join("b");
    let m = model.to_str().expect("utf8");
    let o = run(&[
        "bundle",
        "create",
        "--out",
        bundle.to_str().expect("utf8"),
        "--f",
        m,
        "--g",
        m,
        // One broken model on both sides is all this test needs.
        "--allow-identical-encoders",
        "--mean",
        "0.5",
        "--std",
        "0.5",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // K = 1: the warm-up's 2 views pass; requests with K = 2 (4 views) break the model.
    let mut server = Server::start(&bundle, &["--pairs", "1", "--drain-timeout", "3"]);
    let c = client();
    let png = pngs(dir.path(), 1, 28).remove(0);
    let send = || {
        let form = multipart::Form::new()
            .file("image", &png)
            .expect("file")
            .text("pairs", "2");
        c.post(server.url("/v1/score"))
            .multipart(form)
            .send()
            .expect("response")
    };
    assert_eq!(
        c.get(server.url("/readyz")).send().expect("ready").status(),
        200
    );
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let r = send();
        let status = r.status().as_u16();
        let body: Value = r.json().expect("a JSON error");
        statuses.push((
            status,
            body["error_type"].as_str().unwrap_or("").to_string(),
        ));
        if status == 503 {
            break;
        }
    }
    assert_eq!(statuses.len(), 6, "5 failures, then the stop: {statuses:?}");
    assert!(
        statuses
            .iter()
            .take(5)
            .all(|(s, t)| *s == 500 && t == "internal"),
        "{statuses:?}"
    );
    assert_eq!(
        statuses.last().map(|(s, t)| (*s, t.as_str())),
        Some((503, "engine_stopped")),
        "{statuses:?}"
    );
    for path in ["/healthz", "/readyz"] {
        let r = c.get(server.url(path)).send().expect(path);
        assert_eq!(r.status(), 503, "{path}");
    }
    let metrics = c
        .get(server.url("/metrics"))
        .send()
        .expect("metrics")
        .text()
        .expect("text");
    assert!(metrics.contains("sslmem_ready 0"), "{metrics}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let code = loop {
        if let Some(s) = server.child.try_wait().expect("wait") {
            break s.code();
        }
        assert!(Instant::now() < deadline, "the service did not exit");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(code, Some(2), "{}", server.log.lock().expect("log"));
    assert!(server
        .log
        .lock()
        .expect("log")
        .contains("engine has stopped"));
}

/// Base64 as clients send it (line breaks, the URL-safe alphabet, no padding) is accepted; a
/// multipart text field that is not a parameter is named as such.
#[test]
fn inputs_arrive_as_clients_really_send_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bundle = random_bundle(dir.path(), "b", &[]);
    let server = Server::start(&bundle, &[]);
    let c = client();
    let png = std::fs::read(pngs(dir.path(), 1, 28).remove(0)).expect("png");
    let std_b64 = base64::engine::general_purpose::STANDARD.encode(&png);
    let wrapped: String = std_b64
        .as_bytes()
        .chunks(76)
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect::<Vec<_>>()
        .join("\r\n");
    let url_safe = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&png);
    let unpadded = std_b64.trim_end_matches('=').to_string();
    let mut scores = Vec::new();
    for data in [&std_b64, &wrapped, &url_safe, &unpadded] {
        let r = c
            .post(server.url("/v1/score"))
            .json(&json!({"images": [data], "pairs": 2}))
            .send()
            .expect("score");
        assert_eq!(r.status(), 200, "{}", r.text().unwrap_or_default());
        let v: Value = r.json().expect("json");
        scores.push(v["results"][0]["score"].clone());
    }
    assert!(scores.windows(2).all(|w| w[0] == w[1]), "{scores:?}");

    let form = multipart::Form::new()
        .part("image", multipart::Part::bytes(png).file_name("a.png"))
        .text("pairz", "3");
    let r = c
        .post(server.url("/v1/score"))
        .multipart(form)
        .send()
        .expect("score");
    assert_eq!(r.status(), 422);
    let v: Value = r.json().expect("json");
    let msg = v["error"].as_str().unwrap_or_default();
    assert!(msg.contains("unknown parameter 'pairz'"), "{msg}");
}

/// The server's resident memory in KiB (VmRSS).
fn rss_kib(server: &Server) -> f64 {
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Memory under requests of every size: a first round sends one request of each size (one
/// image at K = 1..=16, so forward passes of 2 to 32 views: every shape the batcher can
/// make with --max-batch-views 32 from these requests), then eight more rounds of the same
/// sizes in shuffled order from four clients at once (so passes also join requests). The
/// server's resident memory after the later rounds stays within 10% (plus 4 MiB for the
/// allocator's slack) of what it was after the first: whatever memory a shape needs is
/// paid once, never again per request.
#[test]
fn resident_memory_stops_growing_after_the_first_round_of_shapes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bundle = random_bundle(dir.path(), "b", &[]);
    let files = pngs(dir.path(), 4, 28);
    let server = Server::start(&bundle, &["--max-batch-views", "32", "--max-delay-ms", "1"]);
    let c = client();
    let send = |c: &Client, pairs: u64, file: &PathBuf| {
        let r = c
            .post(server.url(&format!("/v1/score?pairs={pairs}")))
            .multipart(form(std::slice::from_ref(file)))
            .send()
            .expect("score");
        assert_eq!(r.status(), 200, "K = {pairs}");
    };
    for pairs in 1..=16 {
        send(&c, pairs, &files[0]);
    }
    let first = rss_kib(&server);
    std::thread::scope(|s| {
        for w in 0..4u64 {
            let (c, files, send) = (c.clone(), &files, &send);
            s.spawn(move || {
                let mut rng = sslmem::rng::Rng::from_seed(w + 1);
                for _ in 0..8 {
                    let mut sizes: Vec<u64> = (1..=16).collect();
                    for i in (1..sizes.len()).rev() {
                        sizes.swap(i, rng.below(i as u64 + 1) as usize);
                    }
                    for pairs in sizes {
                        send(&c, pairs, &files[rng.below(files.len() as u64) as usize]);
                    }
                }
            });
        }
    });
    let last = rss_kib(&server);
    assert!(
        last <= first * 1.10 + 4096.0,
        "resident memory grew from {first} KiB after the first round to {last} KiB"
    );
}

/// The default bundle's f alone, as a one-model bundle, in `dir`.
fn one_model_bundle(dir: &Path) -> PathBuf {
    let b = dir.join("one-model");
    std::fs::create_dir_all(&b).expect("mkdir");
    let src = Path::new(CANARIES);
    std::fs::copy(src.join("f0.onnx"), b.join("f0.onnx")).expect("copy");
    let mut m: Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("sslmem.json")).expect("read"))
            .expect("manifest");
    let o = m.as_object_mut().expect("object");
    // Its split names canary files this copy does not carry: a deployed encoder has none.
    for k in ["g", "split"] {
        o.remove(k);
    }
    std::fs::write(b.join("sslmem.json"), m.to_string()).expect("write");
    b
}

fn unit(v: &Value) -> Vec<f64> {
    let x: Vec<f64> = v
        .as_array()
        .expect("vector")
        .iter()
        .map(|x| x.as_f64().expect("f64"))
        .collect();
    let n = x.iter().map(|a| a * a).sum::<f64>().sqrt().max(1e-12);
    x.iter().map(|a| a / n).collect()
}

/// A one-model bundle's `/v1/score` gives one-model results: f's alignment (the pair's
/// `align_f` for the same image and views) and, with the request at the reference's settings,
/// the percentile and kNN gap computed here by hand from the reference images' alignments and
/// representations, fetched through the service's own routes; other settings leave them null.
#[test]
fn a_one_model_bundle_scores_against_its_reference_population() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bundle = one_model_bundle(dir.path());
    let refdir = dir.path().join("reference");
    std::fs::create_dir_all(&refdir).expect("mkdir");
    let refs = pngs(&refdir, 8, 28);
    // A different image from the reference ones: a flipped gradient.
    let query = vec![dir.path().join("query.png")];
    image::GrayImage::from_fn(28, 28, |x, y| image::Luma([((27 - x) * 9 + y) as u8]))
        .save(&query[0])
        .expect("png");
    let server = Server::start(
        &bundle,
        &[
            "--reference",
            refdir.to_str().expect("utf8"),
            "--knn",
            "3",
            "--pairs",
            "4",
            "--max-images",
            "16",
        ],
    );
    let c = client();
    let post = |path: &str, files: &[PathBuf]| -> Value {
        let r = c
            .post(server.url(path))
            .multipart(form(files))
            .send()
            .expect("post");
        assert_eq!(r.status().as_u16(), 200);
        r.json().expect("json")
    };
    let q = post("/v1/score", &query);
    assert_eq!(q["estimator"], "one-model");
    assert_eq!(
        q["reference"],
        json!({"images": 8, "knn": 3, "applied": true})
    );
    let r = &q["results"][0];
    assert!(
        r.get("score").is_none() && r.get("align_g").is_none(),
        "{r}"
    );

    // f's alignment is the pair's align_f: the same encoder, the same views.
    let pair = cli_scores(Path::new(CANARIES), &query, "4", "0");
    let (a, want) = (
        r["align_f"].as_f64().expect("a"),
        pair[0]["align_f"].as_f64().expect("a"),
    );
    assert!((a - want).abs() < 1e-6, "{a} vs the pair's {want}");

    // The calibration by hand, from the service's own alignments and representations.
    let ref_align: Vec<f64> = post("/v1/score", &refs)["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|x| x["align_f"].as_f64().expect("align"))
        .collect();
    let below = ref_align.iter().filter(|&&x| x < a).count() as f64
        + 0.5 * ref_align.iter().filter(|&&x| x == a).count() as f64;
    let pct = r["align_f_percentile"].as_f64().expect("percentile");
    assert!(
        (pct - below / 8.0).abs() < 1e-12,
        "{pct} vs {}",
        below / 8.0
    );
    let embed = |files: &[PathBuf]| -> Vec<Vec<f64>> {
        let r = c
            .post(server.url("/v1/embed?side=f"))
            .multipart(form(files))
            .send()
            .expect("post");
        let v: Value = r.json().expect("json");
        v["results"]
            .as_array()
            .expect("results")
            .iter()
            .map(|x| unit(&x["f"][0]))
            .collect()
    };
    let (ref_reps, q_rep) = (embed(&refs), embed(&query).remove(0));
    let mut by_distance: Vec<(f64, usize)> = ref_reps
        .iter()
        .enumerate()
        .map(|(i, v)| {
            (
                v.iter().zip(&q_rep).map(|(x, y)| (x - y) * (x - y)).sum(),
                i,
            )
        })
        .collect();
    by_distance.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
    let gap = by_distance[..3]
        .iter()
        .map(|&(_, i)| ref_align[i])
        .sum::<f64>()
        / 3.0
        - a;
    let got = r["knn_gap"].as_f64().expect("gap");
    assert!((got - gap).abs() < 1e-6, "knn_gap {got} vs {gap} by hand");

    // Other settings than the reference's: no calibration, said so.
    let r = c
        .post(server.url("/v1/score?pairs=3"))
        .multipart(form(&query))
        .send()
        .expect("post");
    let v: Value = r.json().expect("json");
    assert_eq!(v["reference"]["applied"], false);
    assert!(v["results"][0]["align_f_percentile"].is_null());
    assert!(v["results"][0]["knn_gap"].is_null());
    // /v1/align has no g distance for a one-model bundle.
    let mut pair_form = form(&query);
    pair_form = pair_form.part(
        "image",
        multipart::Part::bytes(std::fs::read(&refs[0]).expect("read")).file_name("r.png"),
    );
    let r = c
        .post(server.url("/v1/align"))
        .multipart(pair_form)
        .send()
        .expect("post");
    let v: Value = r.json().expect("json");
    assert!(
        v["results"][0]["d_f"].is_f64() && v["results"][0]["d_g"].is_null(),
        "{v}"
    );
    if let Some(bin) = schemathesis() {
        run_schemathesis(&bin, &server, "10", &[]);
    }
    assert!(!server.log.lock().expect("log").contains("panicked"));
    drop(server);

    // A pair with a reference: refused at start-up, with the reason.
    let o = run(&[
        "serve",
        "--bundle",
        CANARIES,
        "--port",
        "0",
        "--reference",
        refdir.to_str().expect("utf8"),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("--reference calibrates one-model bundles"),
        "{}",
        stderr(&o)
    );
}
