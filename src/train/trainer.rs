//! The training loop of one encoder: seeded shuffles and the method's views of each image
//! made by one producer thread that stays ahead of training across epochs ([`super::batches`]),
//! the method's loss ([`super::ssl`]), the optimiser and schedule, a progress bar, a
//! JSON-lines log with the memorization monitor's measurements ([`super::monitor`]),
//! checkpoints from which a killed run resumes exactly ([`super::checkpoint`]), and where the
//! time went ([`super::profile`]).

use std::fs;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use tch::{Device, Tensor};

use super::batches::{with_copies, Batch, Batches};
use super::checkpoint::Checkpoints;
use super::methods::ViewKind;
use super::monitor::{measure, Measured, Monitor};
use super::optim::{lr_at, Optimizer};
use super::profile::{Lap, Profile};
use super::ssl::SslModel;
use crate::augment::{Augmenter, Normalize};
use crate::data::ImageArray;
use crate::error::{Error, Result};
use crate::recipe::EpochLine;
use crate::rng::splitmix64;

pub use crate::recipe::TrainConfig;

/// One training run in `workdir` (checkpoints and `log.jsonl`).
pub struct Trainer<'a> {
    pub config: TrainConfig,
    pub data: &'a ImageArray,
    pub indices: Vec<usize>,
    pub workdir: PathBuf,
    pub device: Device,
    /// Label of the progress bar (e.g. `f0`).
    pub label: String,
    /// Seen-versus-unseen alignment measured during training (`None`: off).
    pub monitor: Option<Monitor>,
    /// Seconds between checkpoints (0: after every epoch). A checkpoint is always written
    /// after the last epoch and after any epoch that was measured.
    pub checkpoint_seconds: f64,
}

/// Steps of a run: per epoch (the remainder of the examples dropped), in all, and of the
/// learning rate's linear warm-up.
#[derive(Clone, Copy)]
struct Schedule {
    steps_per_epoch: usize,
    total: usize,
    warmup: usize,
}

/// What the loop of a run shares between its epochs.
struct Loop<'r> {
    trainer: &'r Trainer<'r>,
    schedule: Schedule,
    /// The run's augmentations at the architecture's size (global views and the monitor).
    augmenter: Augmenter,
    /// The local crops' augmenter, when the method takes local views.
    local: Option<Augmenter>,
    norm: Normalize,
    /// Shape of each view of a batch, `[batch, channels, height, width]`, in the method's
    /// order.
    shapes: Vec<[i64; 4]>,
    pb: ProgressBar,
}

/// One epoch's steps, as the log reports them.
struct EpochSteps {
    loss_sum: f64,
    steps: usize,
    lr: f64,
    seconds: f64,
}

impl Trainer<'_> {
    /// Trains (resuming from the last checkpoint when `resume`) and returns the model.
    pub fn run(&self, resume: bool) -> Result<SslModel> {
        self.run_profiled(resume).map(|(m, _)| m)
    }

    /// [`Self::run`], also returning where the epoch loop's time went.
    pub fn run_profiled(&self, resume: bool) -> Result<(SslModel, Profile)> {
        let c = &self.config;
        let schedule = self.schedule()?;
        fs::create_dir_all(&self.workdir).map_err(|e| Error::io(&self.workdir, e))?;
        tch::manual_seed(splitmix64(c.seed) as i64);
        let mut model = SslModel::new(&c.arch, &c.method, self.device)?;
        if c.channels_last {
            model.to_channels_last();
        }
        let mut opt = Optimizer::new(c.optim.clone(), model.trainable())?;
        let mut checkpoints = Checkpoints::new(&self.workdir, self.checkpoint_seconds);
        let mut start_epoch = 0;
        if resume && checkpoints.exists() {
            start_epoch = checkpoints.load(&mut model, &mut opt, c, self.device)?;
            tracing::info!(run = %self.label, epochs_done = start_epoch, "resumed from {}", self.workdir.display());
        } else {
            checkpoints.discard_log();
        }
        let augmenter = Augmenter::new(c.augment.clone(), c.arch.height, c.arch.width)?;
        let local = if model.views().contains(&ViewKind::Local) {
            Some(local_augmenter(c, model.local_crop_scale())?)
        } else {
            None
        };
        let shapes = model
            .views()
            .iter()
            .map(|kind| {
                let a = match kind {
                    ViewKind::Local => local.as_ref().unwrap_or(&augmenter),
                    ViewKind::Global => &augmenter,
                };
                [c.batch_size, c.arch.in_channels, a.height, a.width].map(|s| s as i64)
            })
            .collect();
        let lp = Loop {
            trainer: self,
            schedule,
            augmenter,
            local,
            norm: Normalize::new(c.mean.clone(), c.std.clone(), c.arch.in_channels)?,
            shapes,
            pb: progress_bar(
                &self.label,
                (c.epochs - start_epoch.min(c.epochs)) * schedule.steps_per_epoch,
            ),
        };
        let batches = Batches {
            data: self.data,
            examples: with_copies(&self.indices),
            norm: &lp.norm,
            seed: c.seed,
            batch: c.batch_size,
            epochs: c.epochs,
            views: model
                .views()
                .iter()
                .map(|kind| match (kind, &lp.local) {
                    (ViewKind::Local, Some(local)) => local,
                    _ => &lp.augmenter,
                })
                .collect(),
        };
        let run_started = Instant::now();
        let mut total_profile = Profile::default();
        std::thread::scope(|scope| -> Result<()> {
            // One producer for the whole run: it goes on into the next epoch while this
            // one's last steps, the monitor and the checkpoint run, so no epoch waits for its
            // first batch.
            let (tx, rx) = mpsc::sync_channel::<Batch>(2);
            let batches = &batches;
            scope.spawn(move || batches.produce(start_epoch..c.epochs, &tx));
            let mut note = String::new();
            for epoch in start_epoch..c.epochs {
                let prof = lp.epoch(
                    epoch,
                    &mut model,
                    &mut opt,
                    &rx,
                    &mut checkpoints,
                    &mut note,
                )?;
                total_profile.add(&prof);
            }
            Ok(())
        })?;
        total_profile.wall = run_started.elapsed().as_secs_f64();
        lp.pb.finish_and_clear();
        Ok((model, total_profile))
    }

    /// The run's [`Schedule`], once the batch size and the images fit the run.
    ///
    /// Errors: [`Error::Param`] for a batch size below 2 or above the examples, or images of
    /// another shape than the architecture's.
    fn schedule(&self) -> Result<Schedule> {
        let c = &self.config;
        if c.batch_size < 2 || self.indices.len() < c.batch_size {
            return Err(Error::Param(format!(
                "batch size {} needs at least 2 and at most the {} training examples",
                c.batch_size,
                self.indices.len()
            )));
        }
        let (d, a) = (self.data, &c.arch);
        if (d.channels, d.height, d.width) != (a.in_channels, a.height, a.width) {
            return Err(Error::Param(format!(
                "{} images are {}x{}x{}, the architecture takes {}x{}x{}",
                d.name, d.channels, d.height, d.width, a.in_channels, a.height, a.width
            )));
        }
        let steps_per_epoch = self.indices.len() / c.batch_size;
        Ok(Schedule {
            steps_per_epoch,
            total: steps_per_epoch * c.epochs,
            warmup: (c.warmup_epochs * steps_per_epoch as f64).round() as usize,
        })
    }
}

/// The augmenter of local views: the run's augmentations with every crop's scale set to
/// `scale` (DINO's 0.05 to 0.4), at [`local_size`](super::methods::local_size).
///
/// Errors: [`Error::Param`] when the pipeline has no crop or the scale is out of range.
fn local_augmenter(c: &TrainConfig, scale: [f64; 2]) -> Result<Augmenter> {
    let mut spec = c.augment.clone();
    let mut crops = 0;
    for crop in spec.crops_mut() {
        crop.scale = scale;
        crops += 1;
    }
    if crops == 0 {
        return Err(Error::Param(
            "the method's local views need a random resized crop in --augment (e.g. byol or \
             simclr)"
                .into(),
        ));
    }
    let (h, w) = super::methods::local_size(&c.arch);
    Augmenter::new(spec, h, w)
}

fn progress_bar(label: &str, steps: usize) -> ProgressBar {
    let pb = ProgressBar::new(steps as u64);
    pb.set_style(
        ProgressStyle::with_template("{prefix} [{bar:25}] {pos}/{len} {msg} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_prefix(label.to_string());
    pb
}

impl Loop<'_> {
    /// Epoch `epoch` (0-based): its steps, the monitor when due, its log line and the
    /// checkpoint when due; `note` is the monitor's last word on the progress bar.
    fn epoch(
        &self,
        epoch: usize,
        model: &mut SslModel,
        opt: &mut Optimizer,
        rx: &mpsc::Receiver<Batch>,
        checkpoints: &mut Checkpoints,
        note: &mut String,
    ) -> Result<Profile> {
        let (t, c) = (self.trainer, &self.trainer.config);
        let started = Instant::now();
        let mut prof = Profile {
            epochs: 1,
            ..Profile::default()
        };
        let mut lap = Lap::start();
        let steps = self.steps(epoch, model, opt, rx, note, &mut prof, &mut lap)?;
        let done = epoch + 1;
        let measured = match &t.monitor {
            Some(m) if m.due(done, c.epochs) => {
                let r = measure(
                    &model.encoder,
                    t.data,
                    &m.sets,
                    &m.spec,
                    &self.augmenter,
                    &self.norm,
                    t.device,
                )?;
                let measured = Measured::new(r, done);
                *note = measured.progress();
                self.pb.suspend(|| measured.log(&t.label, done));
                Some(measured)
            }
            _ => None,
        };
        prof.monitor = lap.lap();
        let images = steps.steps * c.batch_size;
        let line = EpochLine {
            run: t.label.clone(),
            epoch: done,
            steps: done * self.schedule.steps_per_epoch,
            loss: steps.loss_sum / steps.steps.max(1) as f64,
            lr: steps.lr,
            seconds: steps.seconds,
            images_per_second: images as f64 / steps.seconds,
            collapsed: measured
                .as_ref()
                .map(|m| m.collapsed.iter().map(|s| s.to_string()).collect())
                .unwrap_or_default(),
            memorization: measured.map(|m| m.report),
        };
        let was_measured = line.memorization.is_some();
        checkpoints.end_epoch(line, model, opt, c, was_measured)?;
        prof.save = lap.lap();
        prof.images = images;
        prof.wall = started.elapsed().as_secs_f64();
        tracing::debug!(run = %t.label, epoch = done, "{prof}");
        Ok(prof)
    }

    /// The optimiser steps of `epoch`, each on the next batch from `rx`.
    #[allow(clippy::too_many_arguments)]
    fn steps(
        &self,
        epoch: usize,
        model: &mut SslModel,
        opt: &mut Optimizer,
        rx: &mpsc::Receiver<Batch>,
        note: &str,
        prof: &mut Profile,
        lap: &mut Lap,
    ) -> Result<EpochSteps> {
        let (t, c, s) = (self.trainer, &self.trainer.config, self.schedule);
        let started = Instant::now();
        let mut out = EpochSteps {
            loss_sum: 0.0,
            steps: 0,
            lr: 0.0,
            seconds: 0.0,
        };
        while out.steps < s.steps_per_epoch {
            let Ok(Batch { views, augment }) = rx.recv() else {
                return Err(Error::Train(format!(
                    "{}: the augmentation thread stopped",
                    t.label
                )));
            };
            if out.steps == 0 {
                prof.first_batch += lap.lap();
            } else {
                prof.waiting += lap.lap();
            }
            prof.augment += augment;
            let step = epoch * s.steps_per_epoch + out.steps;
            let mut rest = views.as_slice();
            let x: Vec<Tensor> = self
                .shapes
                .iter()
                .map(|shape| {
                    let (v, tail) = rest.split_at(shape.iter().product::<i64>() as usize);
                    rest = tail;
                    Tensor::from_slice(v).reshape(shape).to_device(t.device)
                })
                .collect();
            debug_assert!(rest.is_empty(), "the batch holds more than its views");
            let loss = model.loss(&x)?;
            opt.zero_grad();
            loss.backward();
            out.lr = lr_at(step, c.optim.lr, s.warmup, s.total);
            opt.step(out.lr)?;
            model.after_step(step, s.total);
            let l = loss.double_value(&[]);
            if !l.is_finite() {
                return Err(Error::Train(format!(
                    "{}: the loss became {l} at step {step}; lower the learning rate",
                    t.label
                )));
            }
            out.loss_sum += l;
            out.steps += 1;
            prof.step += lap.lap();
            self.pb.inc(1);
            let secs = started.elapsed().as_secs_f64();
            self.pb.set_message(format!(
                "epoch {} loss {:.4} {:.0} img/s{note}",
                epoch + 1,
                out.loss_sum / out.steps as f64,
                (out.steps * c.batch_size) as f64 / secs
            ));
            prof.bookkeeping += lap.lap();
        }
        out.seconds = started.elapsed().as_secs_f64();
        Ok(out)
    }
}
