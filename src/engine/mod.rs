//! The scoring engine, in the shape of text-embeddings-inference's `Infer`: a handle that owns
//! the loaded bundle, the one bounded queue with its batching thread ([`queue`]) and, through
//! the bundle, the encoder sessions on their own threads. It is the only code that feeds
//! encoders: the command line, the audit, the HTTP routes, the service's warm-up and the
//! trainer's evaluation and export check all call it.
//!
//! Typed calls: [`Engine::score`] (images -> views -> every `f` and `g` -> the estimator),
//! [`Engine::align`] (image pairs, no augmentation -> distances under `f` and `g`) and
//! [`Engine::embed`] (images -> representations), each blocking (for the command line and
//! the trainer) and `async` (for the service: CPU work on the rayon pool, never on the async
//! runtime's threads). How images become views is one documented policy: see [`views`].

pub mod queue;
pub mod views;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ndarray::Array2;

pub use queue::QueueOptions;
pub use views::{originals, Preprocess, ViewMaker};

use crate::bundle::{Bundle, InputSpec, Manifest, RepresentationSpec};
pub use crate::error::EngineError;
use crate::error::{Error, InputError, Result};
use crate::pixels::SourceImage;
use crate::runtime::{EncoderSession, Provider, RuntimeOptions};
use crate::score::{
    alignments_from_representations, alignments_of_views, scores_from_representations,
    subsample_scores, Distance, ImageScore, PairAlignment, RepNorm, ScoreOptions, SubsampleScore,
    ViewAlignment,
};

use self::queue::{wait, wait_async, Queue};

/// How a whole job scores its images: the estimator's options, the largest forward pass and
/// the largest image accepted. Shared by `sslmem score` and `sslmem audit`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EstimatorOptions {
    pub score: ScoreOptions,
    /// Most views in one forward pass.
    pub batch_size: usize,
    /// Largest image accepted, in pixels (width * height).
    pub max_pixels: u64,
}

impl EstimatorOptions {
    /// The engine's queue for a job that runs alone: passes of at most `batch_size` views,
    /// no waiting for company.
    pub fn queue(&self) -> QueueOptions {
        QueueOptions {
            max_batch_views: self.batch_size,
            ..Default::default()
        }
    }

    pub fn limits(&self) -> crate::pixels::DecodeLimits {
        crate::pixels::DecodeLimits {
            max_pixels: self.max_pixels,
        }
    }
}

/// Where the batching thread reports what it does (the service's Prometheus metrics; the
/// command line ignores it). Every method has an empty default.
pub trait Observer: Send + Sync {
    /// How long a job waited in the queue before its forward pass started.
    fn queue_wait(&self, _waited: Duration) {}
    /// Views in one forward pass.
    fn batch(&self, _views: usize) {}
    /// How long one encoder (`f0`, `g1`, ...) took for one forward pass.
    fn inference(&self, _encoder: &str, _took: Duration) {}
}

/// An observer that ignores everything.
pub struct Quiet;
impl Observer for Quiet {}

impl Quiet {
    /// A shared `Quiet`, ready to pass to [`Engine::start`].
    pub fn shared() -> Arc<dyn Observer> {
        Arc::new(Quiet)
    }
}

/// Representations of a job's rows: one matrix `[rows, dim]` per encoder, `f` then `g`.
#[derive(Clone, Debug, Default)]
pub struct Representations {
    pub f: Vec<Array2<f32>>,
    pub g: Vec<Array2<f32>>,
}

/// One image's score, or why the encoders could not give it one.
pub type Scored = std::result::Result<ImageScore, InputError>;

/// One image's alignment under `f` alone, or why the encoders could not give it one.
pub type Aligned = std::result::Result<ViewAlignment, InputError>;

/// The engine handle; cloning it is cheap (all clones share one queue).
#[derive(Clone)]
pub struct Engine {
    bundle: Arc<Bundle>,
    queue: Queue,
    max_batch_views: usize,
    output: Arc<str>,
    /// `f0`, `f1`, ..., `g0`, ...: how errors name the encoders.
    names: Arc<[String]>,
}

impl Engine {
    /// Starts the batching thread over a loaded bundle.
    ///
    /// # Errors
    /// [`Error::Param`] when `max_batch_views` is 0; [`EngineError::Stopped`] when the thread
    /// cannot start.
    pub fn start(bundle: Bundle, opts: QueueOptions, observer: Arc<dyn Observer>) -> Result<Self> {
        let bundle = Arc::new(bundle);
        let output: Arc<str> = bundle.manifest.representation.output.as_str().into();
        let queue = Queue::start(bundle.clone(), opts, observer)?;
        let names = (0..bundle.f.len())
            .map(|k| format!("f{k}"))
            .chain((0..bundle.g.len()).map(|k| format!("g{k}")))
            .collect();
        Ok(Self {
            bundle,
            queue,
            max_batch_views: opts.max_batch_views,
            output,
            names,
        })
    }

    /// Loads a bundle (files, hashes, sessions) and starts an engine over it, with no observer.
    pub fn load(dir: &Path, rt: &RuntimeOptions, opts: QueueOptions) -> Result<Self> {
        Self::start(Bundle::load(dir, rt)?, opts, Arc::new(Quiet))
    }

    /// An engine over one ONNX encoder outside any bundle (as `f`; there is no `g`): the
    /// trainer evaluates and checks each exported encoder through it before the bundle exists.
    /// Its views come from `augment` (`None`: the manifest default's).
    pub fn for_model(
        path: &Path,
        input: InputSpec,
        output: &str,
        augment: Option<crate::augment::AugmentSpec>,
    ) -> Result<Self> {
        let session = EncoderSession::load(path, &RuntimeOptions::default())?;
        let manifest = Manifest {
            format: crate::bundle::FORMAT.into(),
            name: None,
            input,
            representation: RepresentationSpec {
                output: output.into(),
                ..Default::default()
            },
            augment,
            f: Vec::new(),
            g: Vec::new(),
            architecture: None,
            split: None,
            training: None,
            subsample: None,
        };
        let bundle = Bundle {
            dir: path.parent().unwrap_or(Path::new(".")).to_path_buf(),
            manifest,
            manifest_sha256: None,
            f: vec![session],
            g: Vec::new(),
            side_by_side: false,
        };
        Self::start(bundle, QueueOptions::default(), Arc::new(Quiet))
    }

    /// The same engine (queue, sessions) scoring another output of the encoders: the
    /// manifest's representation or one of its `layers` (a feature map is flattened per image,
    /// [`crate::runtime::EncoderSession::embed`]). What LayerMem scores each layer with.
    ///
    /// # Errors
    /// [`Error::Param`] for an output the manifest does not list.
    pub fn with_output(&self, output: &str) -> Result<Self> {
        let r = &self.bundle.manifest.representation;
        if output != r.output && !r.layers.iter().any(|l| l == output) {
            return Err(Error::Param(format!(
                "output '{output}' is not one the bundle lists (representation '{}', layers: {})",
                r.output,
                if r.layers.is_empty() {
                    "none".to_string()
                } else {
                    r.layers.join(", ")
                }
            )));
        }
        Ok(Self {
            output: output.into(),
            ..self.clone()
        })
    }

    /// The output this engine scores.
    pub fn output(&self) -> &str {
        &self.output
    }

    /// The bundle: its folder, manifest and sessions.
    pub fn bundle(&self) -> &Bundle {
        &self.bundle
    }

    /// The input every encoder takes.
    pub fn input(&self) -> &InputSpec {
        &self.bundle.manifest.input
    }

    /// The execution provider the sessions really run on.
    pub fn provider(&self) -> Provider {
        self.bundle
            .encoders()
            .next()
            .map_or(Provider::Cpu, |e| e.provider)
    }

    /// Whether the batching thread is still running.
    pub fn alive(&self) -> bool {
        self.queue.alive()
    }

    fn view_maker(&self, opts: &ScoreOptions) -> Result<ViewMaker> {
        ViewMaker::new(self.input(), self.bundle.manifest.augment(), opts)
    }

    /// SSLMem of each image: its views through every encoder, then the estimator. Views are
    /// made for the next group of images while the current one runs, and groups are sized so
    /// that each forward pass holds at most `max_batch_views` views. `progress(n)` is called
    /// after each group of `n` images. An image whose representation under some encoder is
    /// not finite gets [`InputError::NotFinite`] naming the encoder, never a number.
    ///
    /// # Errors
    /// [`Error::Param`] for an image with the wrong channel count or K = 0; an
    /// [`EngineError`] or [`Error::Model`] when inference fails.
    pub fn score_each(
        &self,
        images: &[SourceImage],
        opts: &ScoreOptions,
        progress: &(dyn Fn(usize) + Sync),
    ) -> Result<Vec<Scored>> {
        self.needs_g()?;
        self.through_views(images, opts, progress, |_, reps| {
            self.checked(
                opts,
                reps,
                scores_from_representations(opts, &reps.f, &reps.g),
            )
        })
    }

    /// The alignment under the `f` encoders alone of each image ([`ViewAlignment`]): what a
    /// one-model bundle gives (and what a pair gives as `align_f`). Views, batching,
    /// progress and errors as in [`Engine::score_each`]; the `g` encoders, if any, are run
    /// but not used.
    ///
    /// # Errors
    /// As [`Engine::score_each`].
    pub fn align_views_each(
        &self,
        images: &[SourceImage],
        opts: &ScoreOptions,
        progress: &(dyn Fn(usize) + Sync),
    ) -> Result<Vec<Aligned>> {
        self.through_views(images, opts, progress, |_, reps| {
            self.checked(opts, reps, alignments_of_views(opts, &reps.f))
        })
    }

    /// Many-model estimates of a bundle whose `f` encoders each trained on part of a pool
    /// (docs/science.md#the-many-model-estimator): `member[i][e]` says whether encoder `e`
    /// trained on image `i`. `Ok(None)` for an image with no encoder on one side. Views,
    /// batching, progress and errors as in [`Engine::score_each`].
    ///
    /// # Errors
    /// [`Error::Param`] when `member` does not have a row of one flag per `f` encoder for
    /// each image; otherwise as [`Engine::score_each`].
    pub fn subsample_each(
        &self,
        images: &[SourceImage],
        member: &[Vec<bool>],
        opts: &ScoreOptions,
        progress: &(dyn Fn(usize) + Sync),
    ) -> Result<Vec<std::result::Result<Option<SubsampleScore>, InputError>>> {
        let m = self.bundle.f.len();
        if member.len() != images.len() || member.iter().any(|r| r.len() != m) {
            return Err(Error::Param(format!(
                "the membership table needs one row of {m} flags per image ({} images)",
                images.len()
            )));
        }
        self.through_views(images, opts, progress, |start, reps| {
            let rows = reps.f.first().map_or(0, |r| r.nrows()) / opts.views_per_image();
            let est = subsample_scores(opts, &reps.f, &member[start..start + rows]);
            self.checked(opts, reps, est)
        })
    }

    /// [`Error::Param`] for a one-model bundle, which has no SSLMem score.
    fn needs_g(&self) -> Result<()> {
        if self.bundle.g.is_empty() {
            return Err(Error::Param(
                "the bundle holds `f` only, so there is no SSLMem score (it needs an encoder g \
                 trained without the images); audit it with `sslmem audit --reference ...` for \
                 one-model scores"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Images -> views -> every encoder, a pass of at most `max_batch_views` views at a time
    /// (the next group's views made while the current one runs) -> `per_job` on each pass's
    /// representations. `progress(n)` after each group of `n` images.
    fn through_views<T>(
        &self,
        images: &[SourceImage],
        opts: &ScoreOptions,
        progress: &(dyn Fn(usize) + Sync),
        per_job: impl Fn(usize, &Representations) -> Vec<T>,
    ) -> Result<Vec<T>> {
        views::check_channels(self.input(), images)?;
        let maker = self.view_maker(opts)?;
        let per_pass = (self.max_batch_views / maker.views_per_image()).max(1);
        let mut out = Vec::with_capacity(images.len());
        // (first image, images, reply) of the pass in flight.
        let mut in_flight: Option<(usize, usize, queue::Reply)> = None;
        for (c, chunk) in images.chunks(per_pass).enumerate() {
            let data = maker.views(chunk);
            let rx = self.queue.submit(data, self.output.clone())?;
            if let Some((start, n, prev)) = in_flight.replace((c * per_pass, chunk.len(), rx)) {
                out.extend(per_job(start, &wait(prev)?));
                progress(n);
            }
        }
        if let Some((start, n, prev)) = in_flight {
            out.extend(per_job(start, &wait(prev)?));
            progress(n);
        }
        Ok(out)
    }

    /// [`Engine::score_each`] where any image that cannot be scored fails the call, naming
    /// the image by its position.
    pub fn score(
        &self,
        images: &[SourceImage],
        opts: &ScoreOptions,
        progress: &(dyn Fn(usize) + Sync),
    ) -> Result<Vec<ImageScore>> {
        self.score_each(images, opts, progress)?
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                s.map_err(|source| Error::Input {
                    input: format!("image {i}"),
                    source,
                })
            })
            .collect()
    }

    /// [`Engine::score_each`] for a service: views made on the rayon pool, the job refused
    /// with [`EngineError::QueueFull`] when the queue is full.
    pub async fn score_async(
        &self,
        images: Vec<SourceImage>,
        opts: ScoreOptions,
    ) -> Result<Vec<Scored>> {
        self.needs_g()?;
        self.through_views_async(images, &opts, |_, reps| {
            self.checked(
                &opts,
                reps,
                scores_from_representations(&opts, &reps.f, &reps.g),
            )
        })
        .await
    }

    /// [`Engine::align_views_each`] for a service.
    pub async fn align_views_async(
        &self,
        images: Vec<SourceImage>,
        opts: ScoreOptions,
    ) -> Result<Vec<Aligned>> {
        self.through_views_async(images, &opts, |_, reps| {
            self.checked(&opts, reps, alignments_of_views(&opts, &reps.f))
        })
        .await
    }

    /// [`Engine::through_views`] for a service: views made on the rayon pool, the job refused
    /// with [`EngineError::QueueFull`] when the queue is full.
    async fn through_views_async<T>(
        &self,
        images: Vec<SourceImage>,
        opts: &ScoreOptions,
        per_job: impl Fn(usize, &Representations) -> Vec<T>,
    ) -> Result<Vec<T>> {
        views::check_channels(self.input(), &images)?;
        let maker = Arc::new(self.view_maker(opts)?);
        // One pass's worth of images at a time: a request's views never all sit in memory at
        // once, whatever its size (64 images x 200 views of 3x224x224 would be 7.7 GB).
        let per_pass = (self.max_batch_views / maker.views_per_image()).max(1);
        let images = Arc::new(images);
        let mut out = Vec::with_capacity(images.len());
        for start in (0..images.len()).step_by(per_pass) {
            let end = (start + per_pass).min(images.len());
            let (m, imgs) = (maker.clone(), images.clone());
            let data = on_pool(move || m.views(&imgs[start..end])).await?;
            let reps = wait_async(self.queue.try_submit(data, self.output.clone())?).await?;
            out.extend(per_job(start, &reps));
        }
        Ok(out)
    }

    /// One job's per-image estimates, checked: an image with a non-finite row under any
    /// encoder fails with that encoder's name.
    fn checked<T>(
        &self,
        opts: &ScoreOptions,
        reps: &Representations,
        estimates: Vec<T>,
    ) -> Vec<std::result::Result<T, InputError>> {
        let vpi = opts.views_per_image();
        estimates
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                let rows = i * vpi..(i + 1) * vpi;
                let bad = reps.f.iter().chain(&reps.g).position(|m| {
                    m.slice(ndarray::s![rows.clone(), ..])
                        .iter()
                        .any(|v| !v.is_finite())
                });
                match bad {
                    Some(e) => Err(InputError::NotFinite {
                        encoder: self.names.get(e).cloned().unwrap_or_default(),
                    }),
                    None => Ok(s),
                }
            })
            .collect()
    }

    /// Distances of image pairs `(a, b)` under `f` and `g`, with no augmentation; every
    /// image must already be the model's size ([`Preprocess::Exact`]).
    pub fn align(
        &self,
        pairs: &[(SourceImage, SourceImage)],
        norm: RepNorm,
        dist: Distance,
    ) -> Result<Vec<PairAlignment>> {
        let images = flatten_pairs(pairs);
        let reps = self.embed(&images, Preprocess::Exact)?;
        Ok(alignments_from_representations(
            &reps.f, &reps.g, norm, dist,
        ))
    }

    /// [`Engine::align`] for a service.
    pub async fn align_async(
        &self,
        pairs: Vec<(SourceImage, SourceImage)>,
        norm: RepNorm,
        dist: Distance,
    ) -> Result<Vec<PairAlignment>> {
        let images = flatten_pairs(&pairs);
        let reps = self.embed_async(images, Preprocess::Exact).await?;
        Ok(alignments_from_representations(
            &reps.f, &reps.g, norm, dist,
        ))
    }

    /// The representation (`[n, dim]` per encoder) of each un-augmented image.
    pub fn embed(&self, images: &[SourceImage], how: Preprocess) -> Result<Representations> {
        self.finite(self.embed_unchecked(images, how)?)
    }

    /// [`Engine::embed`] without the finiteness check: rows may be NaN or infinite, and the
    /// caller decides per image (the audit's typicality leaves such an image out).
    pub fn embed_unchecked(
        &self,
        images: &[SourceImage],
        how: Preprocess,
    ) -> Result<Representations> {
        views::check_channels(self.input(), images)?;
        let rxs = images
            .chunks(self.max_batch_views.max(1))
            .map(|chunk| {
                let data = originals(self.input(), chunk, how)?;
                self.queue.submit(data, self.output.clone())
            })
            .collect::<Result<Vec<_>>>()?;
        join(rxs.into_iter().map(wait).collect::<Result<Vec<_>>>()?)
    }

    /// [`Engine::embed`] for a service.
    pub async fn embed_async(
        &self,
        images: Vec<SourceImage>,
        how: Preprocess,
    ) -> Result<Representations> {
        views::check_channels(self.input(), &images)?;
        let input = self.input().clone();
        let data = on_pool(move || originals(&input, &images, how)).await??;
        self.finite(wait_async(self.queue.try_submit(data, self.output.clone())?).await?)
    }

    /// Representations of inputs that are already normalised tensors (`n * C*H*W` values,
    /// row-major): the trainer's evaluation and its export check feed the exact tensors it
    /// trained on.
    pub fn embed_normalized(&self, data: Vec<f32>) -> Result<Representations> {
        let i = self.input();
        let len = i.channels * i.height * i.width;
        if len == 0 || !data.len().is_multiple_of(len) {
            return Err(Error::Param(format!(
                "{} values are not a whole number of {}x{}x{} inputs",
                data.len(),
                i.channels,
                i.height,
                i.width
            )));
        }
        let per_job = self.max_batch_views.max(1) * len;
        let rxs = data
            .chunks(per_job)
            .map(|c| self.queue.submit(c.to_vec(), self.output.clone()))
            .collect::<Result<Vec<_>>>()?;
        let parts = rxs.into_iter().map(wait).collect::<Result<Vec<_>>>()?;
        self.finite(join(parts)?)
    }

    /// The representations, unless some row is NaN or infinite: then the first such row fails
    /// the call, naming the image (by position) and the encoder.
    fn finite(&self, reps: Representations) -> Result<Representations> {
        for (e, m) in reps.f.iter().chain(&reps.g).enumerate() {
            if let Some(row) = m
                .rows()
                .into_iter()
                .position(|r| r.iter().any(|v| !v.is_finite()))
            {
                return Err(Error::Input {
                    input: format!("image {row}"),
                    source: InputError::NotFinite {
                        encoder: self.names.get(e).cloned().unwrap_or_default(),
                    },
                });
            }
        }
        Ok(reps)
    }

    /// Runs a full batch of real augmented views of `image` through every encoder (the
    /// service calls this before it opens its listener).
    pub fn warm_up(&self, image: &SourceImage, opts: &ScoreOptions) -> Result<()> {
        // Every encoder runs for an alignment too, and a one-model bundle has no score.
        let scores = self.align_views_each(std::slice::from_ref(image), opts, &|_| {})?;
        if scores.len() != 1 {
            return Err(EngineError::Inference(format!(
                "warm-up returned {} scores for one image",
                scores.len()
            ))
            .into());
        }
        Ok(())
    }
}

/// a1, b1, a2, b2, ...
fn flatten_pairs(pairs: &[(SourceImage, SourceImage)]) -> Vec<SourceImage> {
    pairs
        .iter()
        .flat_map(|(a, b)| [a.clone(), b.clone()])
        .collect()
}

/// Stacks the rows of several jobs' representations, encoder by encoder.
///
/// # Errors
/// [`EngineError::Inference`] when the jobs' representations differ in width.
fn join(mut parts: Vec<Representations>) -> Result<Representations> {
    if parts.len() <= 1 {
        return Ok(parts.pop().unwrap_or_default());
    }
    let stack = |side: fn(&Representations) -> &Vec<Array2<f32>>| -> Result<Vec<Array2<f32>>> {
        let encoders = parts.first().map_or(0, |p| side(p).len());
        (0..encoders)
            .map(|e| {
                let views: Vec<_> = parts.iter().map(|p| side(p)[e].view()).collect();
                ndarray::concatenate(ndarray::Axis(0), &views).map_err(|err| {
                    EngineError::Inference(format!("cannot stack the representations: {err}"))
                        .into()
                })
            })
            .collect()
    };
    Ok(Representations {
        f: stack(|p| &p.f)?,
        g: stack(|p| &p.g)?,
    })
}

/// Runs CPU work (decoding, augmentation) on the rayon pool and awaits it, off the async
/// runtime's threads.
///
/// # Errors
/// [`EngineError::Stopped`] when the worker went away without an answer (it panicked).
pub async fn on_pool<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    rayon::spawn(move || {
        let _ = tx.send(f());
    });
    rx.await
        .map_err(|_| EngineError::Stopped("a preprocessing worker stopped".into()).into())
}
