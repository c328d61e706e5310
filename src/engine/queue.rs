//! The engine's bounded queue and its batching thread: jobs of normalised views from any
//! number of callers are joined into forward passes of at most `max_batch_views` views
//! (waiting at most `max_delay` for company), run through every encoder of the bundle (each
//! session on its own thread, see [`crate::runtime`]), and each job gets its rows back.
//!
//! A job is never split across passes unless it alone is larger than a pass, so a caller
//! that submits jobs of at most `max_batch_views` views gets exactly the forward passes it
//! asked for (scores do not depend on what else is in the queue). Jobs whose caller has gone
//! away are skipped. The thread stops after [`MAX_CONSECUTIVE_FAILURES`] failed passes in a
//! row (or on a panic); then [`Queue::alive`] turns false and every submission fails with
//! [`EngineError::Stopped`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, TrySendError};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use ndarray::{s, Array2, Axis};
use tokio::sync::oneshot;

use super::{EngineError, Observer, Representations};
use crate::bundle::Bundle;
use crate::error::{Error, Result};
use crate::runtime::EncoderSession;

/// How the queue batches.
#[derive(Clone, Copy, Debug)]
pub struct QueueOptions {
    /// Most views in one forward pass (`--max-batch-views`, `--batch-size`).
    pub max_batch_views: usize,
    /// Longest the first job of a pass waits for others to join it.
    pub max_delay: Duration,
    /// Jobs waiting at most; beyond it [`Queue::try_submit`] refuses.
    pub capacity: usize,
}

impl Default for QueueOptions {
    fn default() -> Self {
        Self {
            max_batch_views: 256,
            max_delay: Duration::ZERO,
            capacity: 64,
        }
    }
}

pub(crate) type Reply = oneshot::Receiver<Result<Representations>>;

struct Job {
    data: Vec<f32>,
    views: usize,
    output: Arc<str>,
    enqueued: Instant,
    reply: oneshot::Sender<Result<Representations>>,
}

/// The submitting end; cloning it is cheap.
#[derive(Clone)]
pub(crate) struct Queue {
    tx: mpsc::SyncSender<Job>,
    view_len: usize,
    alive: Arc<AtomicBool>,
}

/// Sets the flag to false when the batching thread ends, however it ends.
struct AliveGuard(Arc<AtomicBool>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

impl Queue {
    pub(crate) fn start(
        bundle: Arc<Bundle>,
        opts: QueueOptions,
        observer: Arc<dyn Observer>,
    ) -> Result<Self> {
        if opts.max_batch_views == 0 {
            return Err(Error::Param(
                "the largest forward pass must hold at least one view".into(),
            ));
        }
        let i = &bundle.manifest.input;
        let view_len = i.channels * i.height * i.width;
        let (tx, rx) = mpsc::sync_channel::<Job>(opts.capacity.max(1));
        let alive = Arc::new(AtomicBool::new(true));
        let guard = AliveGuard(alive.clone());
        thread::Builder::new()
            .name("batcher".into())
            .spawn(move || {
                let _guard = guard;
                run(&bundle, opts, observer.as_ref(), rx)
            })
            .map_err(|e| EngineError::Stopped(format!("cannot start the batching thread: {e}")))?;
        Ok(Self {
            tx,
            view_len,
            alive,
        })
    }

    pub(crate) fn alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    fn job(&self, data: Vec<f32>, output: Arc<str>) -> (Job, Reply) {
        let views = data.len() / self.view_len.max(1);
        let (reply, rx) = oneshot::channel();
        let job = Job {
            data,
            views,
            output,
            enqueued: Instant::now(),
            reply,
        };
        (job, rx)
    }

    /// Queues views (row-major, `views * C*H*W` values) unless the queue is full.
    pub(crate) fn try_submit(&self, data: Vec<f32>, output: Arc<str>) -> Result<Reply> {
        let (job, rx) = self.job(data, output);
        match self.tx.try_send(job) {
            Ok(()) => Ok(rx),
            Err(TrySendError::Full(_)) => Err(EngineError::QueueFull.into()),
            Err(TrySendError::Disconnected(_)) => Err(stopped()),
        }
    }

    /// Queues views, waiting for room (for callers that are not serving requests).
    pub(crate) fn submit(&self, data: Vec<f32>, output: Arc<str>) -> Result<Reply> {
        let (job, rx) = self.job(data, output);
        self.tx.send(job).map_err(|_| stopped())?;
        Ok(rx)
    }
}

fn stopped() -> Error {
    EngineError::Stopped("the batching thread has stopped".into()).into()
}

/// Waits for a reply outside an async runtime.
pub(crate) fn wait(rx: Reply) -> Result<Representations> {
    rx.blocking_recv()
        .map_err(|_| EngineError::Stopped("the batching thread dropped a job".into()))?
}

/// Waits for a reply inside an async runtime.
pub(crate) async fn wait_async(rx: Reply) -> Result<Representations> {
    rx.await
        .map_err(|_| EngineError::Stopped("the batching thread dropped a job".into()))?
}

/// Forward passes that may fail in a row before the engine stops: a model that keeps failing
/// is broken for this traffic, and a stopped engine makes the service unhealthy, so that an
/// orchestrator restarts it (or a person looks).
pub const MAX_CONSECUTIVE_FAILURES: usize = 5;

fn run(bundle: &Bundle, opts: QueueOptions, observer: &dyn Observer, rx: mpsc::Receiver<Job>) {
    let mut failures = 0usize;
    let names: Vec<String> = (0..bundle.f.len())
        .map(|k| format!("f{k}"))
        .chain((0..bundle.g.len()).map(|k| format!("g{k}")))
        .collect();
    let mut carry: Option<Job> = None;
    loop {
        let first = match carry.take() {
            Some(j) => j,
            None => match rx.recv() {
                Ok(j) => j,
                Err(_) => return, // Every submitter has gone: the engine was dropped.
            },
        };
        let deadline = first.enqueued + opts.max_delay;
        let mut total = first.views;
        let mut jobs = vec![first];
        while total < opts.max_batch_views {
            let wait = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(j) if total + j.views <= opts.max_batch_views && j.output == jobs[0].output => {
                    total += j.views;
                    jobs.push(j);
                }
                Ok(j) => {
                    carry = Some(j);
                    break;
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
        jobs.retain(|j| !j.reply.is_closed());
        if jobs.is_empty() {
            continue;
        }
        let now = Instant::now();
        for j in &jobs {
            observer.queue_wait(now.duration_since(j.enqueued));
        }
        let total: usize = jobs.iter().map(|j| j.views).sum();
        let output = jobs[0].output.clone();
        let data: Vec<f32> = if jobs.len() == 1 {
            std::mem::take(&mut jobs[0].data)
        } else {
            jobs.iter().flat_map(|j| j.data.iter().copied()).collect()
        };
        observer.batch(total);
        let result = forward_all(bundle, &names, &data, total, &output, &opts, observer);
        match result {
            Ok(reps) => {
                failures = 0;
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
                failures += 1;
                tracing::error!(failures, "inference failed: {e}");
                let msg = e.to_string();
                for j in jobs {
                    let _ = j
                        .reply
                        .send(Err(EngineError::Inference(msg.clone()).into()));
                }
                if failures >= MAX_CONSECUTIVE_FAILURES {
                    tracing::error!(
                        "{failures} forward passes failed in a row; the engine stops (the \
                         service then reports itself unhealthy and exits)"
                    );
                    return;
                }
            }
        }
    }
}

/// Runs the batch `data` (`total` views of the bundle's input shape) through every encoder,
/// side by side on scoped threads when the bundle says so, and returns their outputs `output`
/// in the order of `names` (`f0`.., then `g0`..).
fn forward_all(
    bundle: &Bundle,
    names: &[String],
    data: &[f32],
    total: usize,
    output: &str,
    opts: &QueueOptions,
    observer: &dyn Observer,
) -> Result<Vec<Array2<f32>>> {
    let i = &bundle.manifest.input;
    let shape = [i.channels, i.height, i.width];
    let one = |enc: &EncoderSession, name: &str| {
        let t = Instant::now();
        let reps = embed_chunked(enc, data, total, shape, opts.max_batch_views, output);
        observer.inference(name, t.elapsed());
        reps
    };
    if bundle.side_by_side {
        thread::scope(|scope| {
            let running: Vec<_> = bundle
                .encoders()
                .zip(names)
                .map(|(enc, name)| scope.spawn(|| one(enc, name)))
                .collect();
            running
                .into_iter()
                .map(|r| {
                    r.join().unwrap_or_else(|_| {
                        Err(EngineError::Inference("an encoder's thread panicked".into()).into())
                    })
                })
                .collect::<Result<Vec<_>>>()
        })
    } else {
        bundle
            .encoders()
            .zip(names)
            .map(|(enc, name)| one(enc, name))
            .collect::<Result<Vec<_>>>()
    }
}

/// Runs `total` views through one encoder, at most `max_batch` at a time, and checks that
/// it returned one row per view.
fn embed_chunked(
    enc: &EncoderSession,
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
        let reps = enc.embed(chunk, [n, shape[0], shape[1], shape[2]], output)?;
        if reps.nrows() != n {
            return Err(Error::Model {
                model: enc.path.display().to_string(),
                reason: format!("returned {} rows for a batch of {n} views", reps.nrows()),
            });
        }
        parts.push(reps);
        start += n;
    }
    if parts.len() <= 1 {
        return Ok(parts.pop().unwrap_or_else(|| Array2::zeros((0, 0))));
    }
    let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
    ndarray::concatenate(Axis(0), &views)
        .map_err(|e| EngineError::Inference(format!("cannot join batch outputs: {e}")).into())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;
    use crate::arch::ArchSpec;
    use crate::augment::AugmentSpec;
    use crate::runtime::RuntimeOptions;

    #[derive(Default)]
    struct Count(AtomicUsize);
    impl Observer for Count {
        fn batch(&self, views: usize) {
            self.0.fetch_add(views, Ordering::SeqCst);
        }
    }

    fn queue(dir: &std::path::Path, opts: QueueOptions, seen: Arc<dyn Observer>) -> Queue {
        let arch = ArchSpec::resnet_mini_28();
        let aug = AugmentSpec::preset("simclr").expect("preset");
        crate::bundle::write_random(dir, &arch, 0, 1, false, false, aug).expect("bundle");
        let bundle = Bundle::load(dir, &RuntimeOptions::default()).expect("load");
        Queue::start(Arc::new(bundle), opts, seen).expect("start")
    }

    /// A job whose caller has gone away is skipped: only the other job's views run.
    #[test]
    fn jobs_whose_caller_left_are_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let seen = Arc::new(Count::default());
        let opts = QueueOptions {
            max_batch_views: 256,
            max_delay: Duration::from_secs(2), // ample time for the submissions below
            capacity: 8,
        };
        let q = queue(dir.path(), opts, seen.clone());
        let out: Arc<str> = "representation".into();
        let kept = q.submit(vec![0.1; 3 * 784], out.clone()).expect("queued");
        let gone = q.submit(vec![0.2; 5 * 784], out).expect("queued");
        drop(gone);
        let reps = wait(kept).expect("representations");
        assert_eq!((reps.f[0].nrows(), reps.g[0].nrows()), (3, 3));
        assert_eq!(
            seen.0.load(Ordering::SeqCst),
            3,
            "the 5 abandoned views did not run"
        );
    }

    /// Jobs are joined only while the pass stays within `max_batch_views`; a job that would
    /// overflow it starts the next pass, so jobs are never split.
    #[test]
    fn passes_never_exceed_the_limit_nor_split_jobs() {
        #[derive(Default)]
        struct Passes(std::sync::Mutex<Vec<usize>>);
        impl Observer for Passes {
            fn batch(&self, views: usize) {
                if let Ok(mut p) = self.0.lock() {
                    p.push(views);
                }
            }
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let passes = Arc::new(Passes::default());
        let opts = QueueOptions {
            max_batch_views: 10,
            max_delay: Duration::from_secs(2), // ample time for the submissions below
            capacity: 8,
        };
        let q = queue(dir.path(), opts, passes.clone());
        let out: Arc<str> = "representation".into();
        let rxs: Vec<_> = [4, 4, 4, 12]
            .iter()
            .map(|&n| q.submit(vec![0.5; n * 784], out.clone()).expect("queued"))
            .collect();
        let rows: Vec<usize> = rxs
            .into_iter()
            .map(|rx| wait(rx).expect("reps").f[0].nrows())
            .collect();
        assert_eq!(rows, [4, 4, 4, 12]);
        let p = passes.0.lock().expect("lock").clone();
        assert_eq!(
            p,
            [8, 4, 12],
            "4+4 join, the third 4 waits, 12 runs alone (in chunks)"
        );
    }
}
