//! Load generator of `scripts/bench-serve.sh` (a benchmark, not a test): posts single-image
//! multipart requests to `/v1/score` from C client threads and prints throughput and latency.
//!
//!   load URL PNG_DIR CONCURRENCY REQUESTS PAIRS
//!
//! Prints one line: `concurrency requests seconds images_per_s p50_ms p99_ms errors`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::blocking::{multipart, Client};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, dir, conc, reqs, pairs] = args.as_slice() else {
        return Err("usage: load URL PNG_DIR CONCURRENCY REQUESTS PAIRS".into());
    };
    let (conc, reqs): (usize, usize) = (conc.parse()?, reqs.parse()?);
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    let bodies: Arc<Vec<Vec<u8>>> =
        Arc::new(files.iter().map(std::fs::read).collect::<Result<_, _>>()?);
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
