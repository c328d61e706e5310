//! Load generator of `scripts/bench-serve.sh` (a benchmark, not a test): posts multipart
//! requests to `/v1/score` from C client threads.
//!
//!   load URL PNG_DIR CONCURRENCY REQUESTS PAIRS
//!       single-image requests at K = PAIRS; prints one line:
//!       `concurrency requests seconds images_per_s p50_ms p99_ms errors`
//!   load mixed URL PNG_DIR CONCURRENCY SECONDS SERVER_PID
//!       requests of mixed sizes for SECONDS seconds (1 to 8 images each, K from 1 to 16,
//!       so 2 to 256 views: forward passes of every size), sampling the server's resident
//!       memory (VmRSS) every 0.5 s; prints one line:
//!       `requests images errors rss_after_warmup_mib rss_end_mib rss_max_mib` where
//!       "after warm-up" is the first sample after a sixth of the run.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::blocking::{multipart, Client};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let ["mixed", url, dir, conc, secs, pid] = args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        return mixed(url, dir, conc.parse()?, secs.parse()?, pid);
    }
    let [url, dir, conc, reqs, pairs] = args.as_slice() else {
        return Err("usage: load URL PNG_DIR CONCURRENCY REQUESTS PAIRS".into());
    };
    let (conc, reqs): (usize, usize) = (conc.parse()?, reqs.parse()?);
    let bodies = read_bodies(dir)?;
    let endpoint = format!("{url}/v1/score?pairs={pairs}");
    let next = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(reqs)));
    let client = Client::builder()
        .timeout(Duration::from_secs(300))
        .build()?;
    let start = Instant::now();
    let workers: Vec<_> = (0..conc)
        .map(|_| {
            let (client, endpoint, bodies) = (client.clone(), endpoint.clone(), bodies.clone());
            let (next, errors, latencies) = (next.clone(), errors.clone(), latencies.clone());
            std::thread::spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= reqs {
                    break;
                }
                let body = bodies[i % bodies.len()].clone();
                let form = multipart::Form::new().part(
                    "image",
                    multipart::Part::bytes(body).file_name(format!("{i}.png")),
                );
                let t = Instant::now();
                let ok = client
                    .post(&endpoint)
                    .multipart(form)
                    .send()
                    .map(|r| r.status().is_success())
                    .unwrap_or(false);
                let ms = t.elapsed().as_secs_f64() * 1e3;
                if ok {
                    latencies.lock().map(|mut l| l.push(ms)).ok();
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().map_err(|_| "client thread panicked")?;
    }
    let secs = start.elapsed().as_secs_f64();
    let mut l = latencies.lock().map_err(|_| "poisoned")?.clone();
    l.sort_by(f64::total_cmp);
    let q = |p: f64| {
        l.get(((l.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    println!(
        "{conc} {reqs} {secs:.3} {:.1} {:.1} {:.1} {}",
        l.len() as f64 / secs,
        q(0.5),
        q(0.99),
        errors.load(Ordering::Relaxed)
    );
    Ok(())
}

/// The bytes of every file in `dir`, in name order.
fn read_bodies(dir: &str) -> Result<Arc<Vec<Vec<u8>>>, Box<dyn std::error::Error>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    Ok(Arc::new(
        files.iter().map(std::fs::read).collect::<Result<_, _>>()?,
    ))
}

/// The server's resident memory in MiB (VmRSS from /proc).
fn rss_mib(pid: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

fn mixed(
    url: &str,
    dir: &str,
    conc: usize,
    secs: f64,
    pid: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let bodies = read_bodies(dir)?;
    let client = Client::builder()
        .timeout(Duration::from_secs(300))
        .build()?;
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let (requests, images, errors) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let workers: Vec<_> = (0..conc)
        .map(|w| {
            let (client, bodies) = (client.clone(), bodies.clone());
            let (requests, images, errors) = (requests.clone(), images.clone(), errors.clone());
            let url = url.to_string();
            std::thread::spawn(move || {
                let mut rng = sslmem::rng::Rng::from_seed(w as u64 + 1);
                while Instant::now() < deadline {
                    let n = 1 + rng.below(8) as usize;
                    let pairs = 1 + rng.below(16);
                    let mut form = multipart::Form::new();
                    for j in 0..n {
                        let body = bodies[rng.below(bodies.len() as u64) as usize].clone();
                        form = form.part(
                            "image",
                            multipart::Part::bytes(body).file_name(format!("{j}.png")),
                        );
                    }
                    let ok = client
                        .post(format!("{url}/v1/score?pairs={pairs}"))
                        .multipart(form)
                        .send()
                        .map(|r| r.status().is_success())
                        .unwrap_or(false);
                    requests.fetch_add(1, Ordering::Relaxed);
                    if ok {
                        images.fetch_add(n, Ordering::Relaxed);
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let start = Instant::now();
    let (mut warm, mut max, mut last) = (None, 0f64, 0f64);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        let rss = rss_mib(pid).ok_or("cannot read the server's VmRSS")?;
        if warm.is_none() && start.elapsed().as_secs_f64() >= secs / 6.0 {
            warm = Some(rss);
        }
        max = max.max(rss);
        last = rss;
    }
    for w in workers {
        w.join().map_err(|_| "client thread panicked")?;
    }
    let end = rss_mib(pid).unwrap_or(last);
    println!(
        "{} {} {} {:.1} {:.1} {:.1}",
        requests.load(Ordering::Relaxed),
        images.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed),
        warm.unwrap_or(last),
        end,
        max.max(end)
    );
    Ok(())
}
