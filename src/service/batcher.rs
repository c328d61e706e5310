//! The inference handle: a bounded queue of view jobs and a batching thread that joins jobs
//! from concurrent requests into batches (up to a maximum number of views, waiting at most a
//! maximum delay), runs them through every encoder (each session on its own thread), and
//! fans the representations back. Jobs whose requester has gone away are skipped.

use std::sync::mpsc::{self, RecvTimeoutError, TrySendError};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use ndarray::{s, Array2};
use tokio::sync::oneshot;

use super::metrics::Metrics;
use crate::bundle::Bundle;
use crate::error::{Error, Result};

/// Representations of one job's views: one matrix per encoder, `f` then `g`.
pub struct Representations {
    pub f: Vec<Array2<f32>>,
    pub g: Vec<Array2<f32>>,
}

struct Job {
    data: Vec<f32>,
    views: usize,
    enqueued: Instant,
    reply: oneshot::Sender<Result<Representations>>,
}

#[derive(Clone, Copy, Debug)]
pub struct BatchOptions {
    /// Most views in one forward pass.
    pub max_batch: usize,
    /// Longest a job waits for others to join its batch.
    pub max_delay: Duration,
    /// Jobs waiting at most; beyond it submissions are refused.
    pub queue: usize,
}

#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::SyncSender<Job>,
    view_len: usize,
}

/// Why a job was not queued.
#[derive(Debug)]
pub enum SubmitError {
    QueueFull,
    Stopped,
}

impl Batcher {
    pub fn start(bundle: Arc<Bundle>, opts: BatchOptions, metrics: Arc<Metrics>) -> Result<Self> {
        let i = &bundle.manifest.input;
        let view_len = i.channels * i.height * i.width;
        let (tx, rx) = mpsc::sync_channel::<Job>(opts.queue.max(1));
        thread::Builder::new()
            .name("batcher".into())
            .spawn(move || run(&bundle, opts, &metrics, rx))
            .map_err(|e| Error::Runtime(format!("cannot start the batching thread: {e}")))?;
        Ok(Self { tx, view_len })
    }

    /// Queues `views` normalised views (row-major); the receiver gets their representations.
    pub fn submit(
        &self,
        data: Vec<f32>,
    ) -> std::result::Result<oneshot::Receiver<Result<Representations>>, SubmitError> {
        let views = data.len() / self.view_len.max(1);
        let (reply, rx) = oneshot::channel();
        let job = Job {
            data,
            views,
            enqueued: Instant::now(),
            reply,
        };
        match self.tx.try_send(job) {
            Ok(()) => Ok(rx),
            Err(TrySendError::Full(_)) => Err(SubmitError::QueueFull),
            Err(TrySendError::Disconnected(_)) => Err(SubmitError::Stopped),
        }
    }
}

fn run(bundle: &Bundle, opts: BatchOptions, metrics: &Metrics, rx: mpsc::Receiver<Job>) {
    let i = &bundle.manifest.input;
    let shape = [i.channels, i.height, i.width];
    let view_len = shape.iter().product::<usize>();
    let output = bundle.manifest.representation.output.clone();
    let names: Vec<String> = (0..bundle.f.len())
        .map(|k| format!("f{k}"))
        .chain((0..bundle.g.len()).map(|k| format!("g{k}")))
        .collect();
    while let Ok(first) = rx.recv() {
        let deadline = first.enqueued + opts.max_delay;
        let mut total = first.views;
        let mut jobs = vec![first];
        while total < opts.max_batch {
            let wait = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(j) => {
                    total += j.views;
                    jobs.push(j);
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
        // Work for requests whose client has gone away is skipped.
        jobs.retain(|j| !j.reply.is_closed());
        if jobs.is_empty() {
            continue;
        }
        let now = Instant::now();
        for j in &jobs {
            metrics
                .queue_wait
                .observe(now.duration_since(j.enqueued).as_secs_f64());
        }
        let total: usize = jobs.iter().map(|j| j.views).sum();
        let mut data = Vec::with_capacity(total * view_len);
        for j in &jobs {
            data.extend_from_slice(&j.data);
        }
        metrics.batch_views.observe(total as f64);
        let result = bundle
            .encoders()
            .zip(&names)
            .map(|(enc, name)| {
                let t = Instant::now();
                let reps = embed_chunked(enc, &data, total, shape, opts.max_batch, &output);
                metrics
                    .inference_duration
                    .with_label_values(&[name])
                    .observe(t.elapsed().as_secs_f64());
                reps
            })
            .collect::<Result<Vec<_>>>();
        metrics.views.inc_by(total as u64);
        match result {
            Ok(reps) => {
                let nf = bundle.f.len();
                let mut start = 0;
                for j in jobs {
                    let take = |r: &Array2<f32>| r.slice(s![start..start + j.views, ..]).to_owned();
                    let f = reps[..nf].iter().map(take).collect();
                    let g = reps[nf..].iter().map(take).collect();
                    start += j.views;
                    let _ = j.reply.send(Ok(Representations { f, g }));
                }
            }
            Err(e) => {
                tracing::error!("inference failed: {e}");
                let msg = e.to_string();
                for j in jobs {
                    let _ = j.reply.send(Err(Error::Runtime(msg.clone())));
                }
            }
        }
    }
}

/// Runs `total` views through one encoder, at most `max_batch` at a time (one job larger
/// than a batch runs in chunks).
fn embed_chunked(
    enc: &crate::runtime::Encoder,
    data: &[f32],
    total: usize,
    shape: [usize; 3],
    max_batch: usize,
    output: &str,
) -> Result<Array2<f32>> {
    let view_len = shape.iter().product::<usize>();
    let mut parts = Vec::new();
    let mut start = 0;
    while start < total {
        let n = max_batch.min(total - start);
        let chunk = data[start * view_len..(start + n) * view_len].to_vec();
        parts.push(enc.embed(chunk, [n, shape[0], shape[1], shape[2]], output)?);
        start += n;
    }
    let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
    ndarray::concatenate(ndarray::Axis(0), &views)
        .map_err(|e| Error::Runtime(format!("cannot join batch outputs: {e}")))
}
