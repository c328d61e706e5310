//! The container images' entry points, run outside Docker: each Dockerfile's final stage is
//! parsed (ENV, ENTRYPOINT, CMD) and its exact command line is started here with the same
//! environment, paths inside the image mapped to local ones (the binary, ONNX Runtime, a
//! copy of the bundle). The service must become ready, pass its HEALTHCHECK command, score
//! an image, expose every metric the Grafana dashboard plots, and drain on SIGTERM, without
//! writing to its bundle or working directory (the images run with a read-only root).

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Cursor};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use reqwest::blocking::{multipart, Client};
use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// What a Dockerfile's final stage says about how the container starts.
struct Image {
    env: BTreeMap<String, String>,
    argv: Vec<String>,
}

fn parse_dockerfile(name: &str) -> Image {
    let text = std::fs::read_to_string(Path::new(ROOT).join("docker").join(name))
        .expect("read Dockerfile")
        .replace("\\\n", " ");
    let last = text.rsplit("\nFROM ").next().expect("a FROM");
    let mut env = BTreeMap::new();
    let (mut entry, mut cmd) = (Vec::<String>::new(), Vec::<String>::new());
    for line in last.lines() {
        if let Some(rest) = line.strip_prefix("ENV ") {
            for kv in rest.split_whitespace() {
                let (k, v) = kv.split_once('=').expect("ENV KEY=VALUE");
                env.insert(k.to_string(), v.to_string());
            }
        } else if let Some(rest) = line.strip_prefix("ENTRYPOINT ") {
            entry = serde_json::from_str(rest).expect("exec-form ENTRYPOINT");
        } else if let Some(rest) = line.strip_prefix("CMD ") {
            cmd = serde_json::from_str(rest).expect("exec-form CMD");
        }
    }
    assert!(!entry.is_empty(), "{name}: no ENTRYPOINT");
    Image {
        env,
        argv: entry.into_iter().chain(cmd).collect(),
    }
}

/// The local stand-in for a program the image puts on PATH.
fn local_bin(name: &str) -> PathBuf {
    match name {
        "sslmem" => PathBuf::from(env!("CARGO_BIN_EXE_sslmem")),
        #[cfg(feature = "train")]
        "sslmem-train" => PathBuf::from(env!("CARGO_BIN_EXE_sslmem-train")),
        other => panic!("no local binary for {other}"),
    }
}

/// A read-only copy of the default bundle (what the image COPYs to /opt/sslmem/models).
fn bundle_copy(dir: &Path) -> PathBuf {
    let src = Path::new(ROOT)
        .join("models")
        .join("fashion-mnist-canaries");
    let dst = dir.join("models").join("fashion-mnist-canaries");
    std::fs::create_dir_all(&dst).expect("mkdir");
    for e in std::fs::read_dir(&src).expect("bundle") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            // canaries/: for audits, not for serving.
            continue;
        }
        let to = dst.join(p.file_name().expect("name"));
        std::fs::copy(&p, &to).expect("copy");
        let mut perm = std::fs::metadata(&to).expect("meta").permissions();
        perm.set_readonly(true);
        std::fs::set_permissions(&to, perm).expect("chmod");
    }
    dst
}

/// Every file under `dir` with its size and a hash of its contents, to prove nothing was
/// written.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (usize, u64)> {
    use std::hash::{Hash, Hasher};
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let bytes = std::fs::read(&p).expect("read");
                let mut h = std::collections::hash_map::DefaultHasher::new();
                bytes.hash(&mut h);
                out.insert(p.clone(), (bytes.len(), h.finish()));
            }
        }
    }
    out
}

struct Started {
    child: Child,
    port: u16,
    stderr: mpsc::Receiver<String>,
}

enum Outcome {
    Listening(Started),
    Exited(i32, String),
}

/// Starts the image's command with its environment, `map` rewriting values and arguments.
fn start(image: &Image, cwd: &Path, map: &dyn Fn(&str) -> String) -> Outcome {
    let argv: Vec<String> = image.argv.iter().map(|a| map(a)).collect();
    let mut cmd = Command::new(local_bin(&argv[0]));
    cmd.args(&argv[1..])
        .current_dir(cwd)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", cwd)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in &image.env {
        cmd.env(k, map(v));
    }
    // A free port instead of the image's 8080 (the only change besides the mapped paths).
    cmd.env("SSLMEM_PORT", "0");
    let mut child = cmd.spawn().expect("start the entry point");
    let err = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut log = String::new();
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                if let Some(port) = listening_port(&line) {
                    return Outcome::Listening(Started {
                        child,
                        port,
                        stderr: rx,
                    });
                }
                log.push_str(&line);
                log.push('\n');
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = child.wait().expect("wait");
                return Outcome::Exited(status.code().unwrap_or(-1), log);
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the entry point neither listened nor exited: {log}");
}

/// The port from the service's "listening on http://HOST:PORT" line (text or JSON logs).
fn listening_port(line: &str) -> Option<u16> {
    let rest = line.split("listening on http://").nth(1)?;
    let addr: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || ".:[]".contains(*c))
        .collect();
    addr.rsplit(':').next()?.parse().ok()
}

fn png_of_fashion_mnist(i: usize) -> Vec<u8> {
    let data = sslmem::data::inputs::load_dataset("fashion-mnist:test").expect("dataset");
    let img = data.get(i).expect("image");
    let mut out = Vec::new();
    image::GrayImage::from_raw(28, 28, img.data)
        .expect("28x28")
        .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .expect("png");
    out
}

/// The metric names the Grafana dashboard queries (suffixes of histograms stripped).
fn dashboard_metrics() -> Vec<String> {
    let text =
        std::fs::read_to_string(Path::new(ROOT).join("docker/grafana/dashboards/sslmem.json"))
            .expect("dashboard");
    let v: Value = serde_json::from_str(&text).expect("dashboard JSON");
    let mut names = Vec::new();
    for p in v["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().expect("targets") {
            let expr = t["expr"].as_str().expect("expr");
            let mut rest = expr;
            while let Some(i) = rest.find("sslmem_") {
                let name: String = rest[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                rest = &rest[i + name.len()..];
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .unwrap_or(&name)
                    .to_string();
                if !names.contains(&base) {
                    names.push(base);
                }
            }
        }
    }
    names
}

fn health(image: &Image, port: u16, map: &dyn Fn(&str) -> String) -> bool {
    let mut cmd = common::bin();
    cmd.arg("health").env_clear();
    for (k, v) in &image.env {
        cmd.env(k, map(v));
    }
    cmd.env("SSLMEM_PORT", port.to_string())
        .output()
        .expect("health")
        .status
        .success()
}

#[test]
fn cpu_image_entry_point_serves_scores_and_drains() {
    let image = parse_dockerfile("Dockerfile");
    assert_eq!(image.argv, ["sslmem", "serve"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let bundle = bundle_copy(dir.path());
    let cwd = dir.path().join("workdir");
    std::fs::create_dir_all(&cwd).expect("mkdir");
    let ort = sslmem::runtime::library_path(&sslmem::runtime::RuntimeOptions::default());
    let map = |v: &str| -> String {
        if v.starts_with("/opt/sslmem/models/fashion-mnist-canaries") {
            bundle.display().to_string()
        } else if v.starts_with("/opt/sslmem/lib/libonnxruntime") {
            ort.display().to_string()
        } else {
            v.to_string()
        }
    };
    let before = snapshot(dir.path());
    let Outcome::Listening(mut s) = start(&image, &cwd, &map) else {
        panic!("the CPU image's command did not start");
    };
    let base = format!("http://127.0.0.1:{}", s.port);
    let c = Client::new();
    let ready = (0..100).any(|_| {
        let ok = c
            .get(format!("{base}/readyz"))
            .send()
            .is_ok_and(|r| r.status() == 200);
        if !ok {
            std::thread::sleep(Duration::from_millis(100));
        }
        ok
    });
    assert!(ready, "never ready");
    assert!(health(&image, s.port, &map), "HEALTHCHECK command fails");

    let form = multipart::Form::new().part(
        "image",
        multipart::Part::bytes(png_of_fashion_mnist(0)).file_name("0.png"),
    );
    let r = c
        .post(format!("{base}/v1/score?pairs=4"))
        .multipart(form)
        .send()
        .expect("score");
    assert_eq!(r.status(), 200);
    let v: Value = r.json().expect("json");
    let score = &v["results"][0]["score"];
    assert!(score.as_f64().is_some_and(f64::is_finite), "{v}");

    let metrics = c
        .get(format!("{base}/metrics"))
        .send()
        .expect("metrics")
        .text()
        .expect("text");
    let wanted = dashboard_metrics();
    assert!(wanted.len() >= 8, "{wanted:?}");
    for m in &wanted {
        assert!(
            metrics.contains(&format!("\n{m}")) || metrics.contains(&format!("# TYPE {m} ")),
            "the dashboard plots {m}, which /metrics does not expose"
        );
    }
    assert!(metrics.contains("provider=\"cpu\""), "{metrics}");

    // The JSON logs the image asks for.
    let line = s
        .stderr
        .recv_timeout(Duration::from_secs(5))
        .unwrap_or_default();
    assert!(
        line.is_empty() || serde_json::from_str::<Value>(&line).is_ok(),
        "not a JSON log line: {line}"
    );

    // docker stop: SIGTERM, then the drain; exit 0 well within the grace period.
    let pid = s.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill")
        .success());
    let start = Instant::now();
    let status = loop {
        if let Some(st) = s.child.try_wait().expect("wait") {
            break st;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    assert!(
        !health(&image, s.port, &map),
        "HEALTHCHECK passes with no server"
    );
    assert_eq!(
        before,
        snapshot(dir.path()),
        "the service wrote into its bundle or working directory"
    );
}

#[test]
fn cuda_image_entry_point_uses_the_gpu_or_fails_clearly() {
    let image = parse_dockerfile("Dockerfile.cuda");
    assert_eq!(image.argv, ["sslmem", "serve", "--device", "cuda"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let bundle = bundle_copy(dir.path());
    let opts = sslmem::runtime::RuntimeOptions {
        device: "cuda".parse().expect("device"),
        ..Default::default()
    };
    // The GPU build of ONNX Runtime where `scripts/setup.sh --cuda` installed it, else the CPU
    // one (then the failure must be about CUDA, not about a missing file).
    let gpu_lib = Some(sslmem::runtime::library_path(&opts))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| {
            sslmem::runtime::library_path(&sslmem::runtime::RuntimeOptions::default())
        });
    let map = |v: &str| -> String {
        if v.starts_with("/opt/sslmem/models/fashion-mnist-canaries") {
            bundle.display().to_string()
        } else if v.starts_with("/opt/sslmem/lib/libonnxruntime") {
            gpu_lib.display().to_string()
        } else {
            v.to_string()
        }
    };
    match start(&image, dir.path(), &map) {
        Outcome::Listening(mut s) => {
            // A GPU machine with the `cuda` build: the service must really run on CUDA.
            let m = reqwest::blocking::get(format!("http://127.0.0.1:{}/metrics", s.port))
                .expect("metrics")
                .text()
                .expect("text");
            let _ = s.child.kill();
            let _ = s.child.wait();
            assert!(m.contains("provider=\"cuda\""), "{m}");
        }
        Outcome::Exited(code, log) => {
            // No GPU (or a build without `cuda`): a clear error and exit code 2, no panic and
            // no silent fallback to the CPU.
            assert_eq!(code, 2, "{log}");
            assert!(log.to_lowercase().contains("cuda"), "{log}");
            assert!(!log.contains("panicked"), "{log}");
        }
    }
}

#[cfg(feature = "train")]
#[test]
fn train_image_entry_point_trains_a_bundle_and_resumes_as_a_job_would() {
    let image = parse_dockerfile("Dockerfile.train");
    assert_eq!(image.argv, ["sslmem-train", "pair", "--resume"]);
    assert_eq!(
        image.env.get("SSLMEM_TRAIN_OUT").map(String::as_str),
        Some("/bundles/fashion-mnist-simclr")
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("bundles").join("fashion-mnist-simclr");
    let run = || {
        let mut cmd = Command::new(local_bin(&image.argv[0]));
        cmd.args(&image.argv[1..])
            // Only the size: a few hundred images and one epoch instead of the full run.
            .args(["--subset", "200", "--test-subset", "100", "--epochs", "1"])
            .args(["--batch-size", "32"])
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default());
        let ort = sslmem::runtime::library_path(&sslmem::runtime::RuntimeOptions::default());
        for (k, v) in &image.env {
            let v = match k.as_str() {
                "SSLMEM_TRAIN_OUT" => out.display().to_string(),
                "ORT_DYLIB_PATH" => ort.display().to_string(),
                _ => v.clone(),
            };
            cmd.env(k, v);
        }
        cmd.env("SSLMEM_TRAIN_EPOCHS", "1").output().expect("run")
    };
    let o = run();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("sslmem.json")).expect("manifest"))
            .expect("json");
    assert_eq!(m["training"]["dataset"], "fashion-mnist");
    // A restarted pod finds the bundle complete and exits 0 without retraining.
    let before = std::fs::read(out.join("f0.onnx")).expect("f0");
    let o = run();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(before, std::fs::read(out.join("f0.onnx")).expect("f0"));
}

#[test]
fn onnx_runtime_telemetry_is_off_without_being_asked() {
    // ONNX Runtime's PyPI build writes a device id and an event queue under
    // $HOME/.cache/Microsoft when it loads, unless ORT_DISABLE_TELEMETRY is set; the binary
    // sets it itself, so a bare command line leaves nothing behind.
    let dir = tempfile::tempdir().expect("tempdir");
    let bundle = bundle_copy(dir.path());
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).expect("mkdir");
    let ort = sslmem::runtime::library_path(&sslmem::runtime::RuntimeOptions::default());
    let o = common::bin()
        .args(["inspect", "--bundle", bundle.to_str().expect("utf8")])
        .env_clear()
        .env("HOME", &home)
        .env("ORT_DYLIB_PATH", &ort)
        .current_dir(&home)
        .output()
        .expect("inspect");
    assert!(o.status.success(), "{}", common::stderr(&o));
    let left: Vec<_> = std::fs::read_dir(&home)
        .expect("home")
        .map(|e| e.expect("entry").path())
        .collect();
    assert!(left.is_empty(), "written under HOME: {left:?}");
}
