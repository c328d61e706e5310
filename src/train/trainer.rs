//! The training loop of one encoder: seeded shuffles, two augmented views per image made
//! on the CPU pool by one producer thread that stays ahead of training across epochs, the
//! method's loss, the optimiser and schedule, a progress bar, a JSON-lines log with the
//! memorization monitor's measurements ([`super::monitor`]), atomic checkpoints at most
//! every `checkpoint_seconds` (and after measured epochs and the last) from which a killed
//! run resumes exactly, and where the time went ([`super::profile`]).

use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

use super::method::{MethodConfig, SslModel};
use super::monitor::{measure, Monitor};
use super::optim::{lr_at, OptimConfig, Optimizer};
use super::profile::{Lap, Profile};
use crate::arch::ArchSpec;
use crate::augment::{AugmentSpec, Augmenter, Normalize};
use crate::data::ImageArray;
use crate::error::{Error, Result};
use crate::fsutil::write_atomic;
use crate::rng::{splitmix64, Rng};

/// Everything that defines a run (recorded in the bundle's `training` record).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub arch: ArchSpec,
    pub method: MethodConfig,
    pub optim: OptimConfig,
    pub augment: AugmentSpec,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    pub epochs: usize,
    pub batch_size: usize,
    pub warmup_epochs: f64,
    pub seed: u64,
    /// Convolution weights, and so activations and gradients, stored channels-last (NHWC):
    /// about 1.25x faster on CPU than NCHW, with other rounding (so other weights from the
    /// same seed). Records made before it existed trained NCHW.
    #[serde(default)]
    pub channels_last: bool,
}

#[derive(Serialize, Deserialize)]
struct CheckpointMeta {
    epochs_done: usize,
    steps: i64,
    file: String,
    config: TrainConfig,
}

fn tch_err(what: &str) -> impl Fn(tch::TchError) -> Error + '_ {
    move |e| Error::Train(format!("{what}: {e}"))
}

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

impl Trainer<'_> {
    fn checkpoint_meta(&self) -> PathBuf {
        self.workdir.join("checkpoint.json")
    }

    /// Trains (resuming from the last checkpoint when `resume`) and returns the model.
    pub fn run(&self, resume: bool) -> Result<SslModel> {
        self.run_profiled(resume).map(|(m, _)| m)
    }

    /// [`Self::run`], also returning where the epoch loop's time went.
    pub fn run_profiled(&self, resume: bool) -> Result<(SslModel, Profile)> {
        let c = &self.config;
        if c.batch_size < 2 || self.indices.len() < c.batch_size {
            return Err(Error::Param(format!(
                "batch size {} needs at least 2 and at most the {} training examples",
                c.batch_size,
                self.indices.len()
            )));
        }
        if (self.data.channels, self.data.height, self.data.width)
            != (c.arch.in_channels, c.arch.height, c.arch.width)
        {
            return Err(Error::Param(format!(
                "{} images are {}x{}x{}, the architecture takes {}x{}x{}",
                self.data.name,
                self.data.channels,
                self.data.height,
                self.data.width,
                c.arch.in_channels,
                c.arch.height,
                c.arch.width
            )));
        }
        fs::create_dir_all(&self.workdir).map_err(|e| Error::io(&self.workdir, e))?;
        let steps_per_epoch = self.indices.len() / c.batch_size;
        let total = steps_per_epoch * c.epochs;
        let warmup = (c.warmup_epochs * steps_per_epoch as f64).round() as usize;

        tch::manual_seed(splitmix64(c.seed) as i64);
        let mut model = SslModel::new(&c.arch, c.method.clone(), self.device)?;
        if c.channels_last {
            model.to_channels_last();
        }
        let mut opt = Optimizer::new(c.optim.clone(), model.trainable())?;
        let mut start_epoch = 0;
        if resume && self.checkpoint_meta().is_file() {
            start_epoch = self.load(&mut model, &mut opt)?;
            tracing::info!(run = %self.label, epochs_done = start_epoch, "resumed from {}", self.workdir.display());
        } else {
            // A fresh run must not append to an old log.
            let _ = fs::remove_file(self.workdir.join("log.jsonl"));
        }
        let augmenter = Augmenter::new(c.augment.clone(), c.arch.height, c.arch.width)?;
        let norm = Normalize::new(c.mean.clone(), c.std.clone(), c.arch.in_channels)?;
        let view_len = c.arch.in_channels * c.arch.height * c.arch.width;
        let shape = [
            c.batch_size as i64,
            c.arch.in_channels as i64,
            c.arch.height as i64,
            c.arch.width as i64,
        ];

        let pb =
            ProgressBar::new(((c.epochs - start_epoch.min(c.epochs)) * steps_per_epoch) as u64);
        pb.set_style(
            ProgressStyle::with_template("{prefix} [{bar:25}] {pos}/{len} {msg} eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        pb.set_prefix(self.label.clone());
        let mut last_save = Instant::now();
        let mut measured = String::new();
        let mut pending = Vec::new();
        let mut total_profile = Profile::default();
        let run_started = Instant::now();
        let batches = Batches {
            data: self.data,
            examples: with_copies(&self.indices),
            augmenter: &augmenter,
            norm: &norm,
            seed: c.seed,
            batch: c.batch_size,
            epochs: c.epochs,
            view_len,
        };
        std::thread::scope(|scope| -> Result<()> {
            // One producer for the whole run: it goes on into the next epoch while this
            // one's last steps, the monitor and the checkpoint run, so no epoch waits for its
            // first batch. Views depend on seeds only, never on timing.
            let (tx, rx) = mpsc::sync_channel::<Batch>(2);
            let batches = &batches;
            scope.spawn(move || batches.produce(start_epoch..c.epochs, &tx));
            for epoch in start_epoch..c.epochs {
                let started = Instant::now();
                let mut prof = Profile {
                    epochs: 1,
                    ..Profile::default()
                };
                let mut lap = Lap::start();
                let (mut loss_sum, mut n) = (0f64, 0usize);
                let mut lr = 0.0;
                while n < steps_per_epoch {
                    let Ok(Batch { views, augment }) = rx.recv() else {
                        return Err(Error::Train(format!(
                            "{}: the augmentation thread stopped",
                            self.label
                        )));
                    };
                    if n == 0 {
                        prof.first_batch += lap.lap();
                    } else {
                        prof.waiting += lap.lap();
                    }
                    prof.augment += augment;
                    let step = epoch * steps_per_epoch + n;
                    let (a, b) = views.split_at(c.batch_size * view_len);
                    let x1 = Tensor::from_slice(a).reshape(shape).to_device(self.device);
                    let x2 = Tensor::from_slice(b).reshape(shape).to_device(self.device);
                    let loss = model.loss(&x1, &x2);
                    opt.zero_grad();
                    loss.backward();
                    lr = lr_at(step, c.optim.lr, warmup, total);
                    opt.step(lr)?;
                    model.after_step(step, total);
                    let l = loss.double_value(&[]);
                    if !l.is_finite() {
                        return Err(Error::Train(format!(
                            "{}: the loss became {l} at step {step}; lower the learning rate",
                            self.label
                        )));
                    }
                    loss_sum += l;
                    n += 1;
                    prof.step += lap.lap();
                    pb.inc(1);
                    let secs = started.elapsed().as_secs_f64();
                    pb.set_message(format!(
                        "epoch {} loss {:.4} {:.0} img/s{measured}",
                        epoch + 1,
                        loss_sum / n as f64,
                        (n * c.batch_size) as f64 / secs
                    ));
                    prof.bookkeeping += lap.lap();
                }
                let secs = started.elapsed().as_secs_f64();
                let last = epoch + 1 == c.epochs;
                let report = match &self.monitor {
                    Some(m) if m.spec.every > 0 && ((epoch + 1) % m.spec.every == 0 || last) => {
                        let r = measure(
                            &model.encoder,
                            self.data,
                            &m.sets,
                            &m.spec,
                            &augmenter,
                            &norm,
                            self.device,
                        )?;
                        let collapsed = r.collapsed(epoch + 1);
                        measured = format!(
                            " | seen-vs-unseen AUC rep {:.3} proj {:.3}{}{}{}",
                            r.representation.auc,
                            r.projection.auc,
                            r.canaries_projection
                                .map(|g| format!(", canaries proj {:.3}", g.auc))
                                .unwrap_or_default(),
                            r.projection_spread
                                .map(|s| format!(" | effective rank proj {s}"))
                                .unwrap_or_default(),
                            if collapsed.is_empty() {
                                String::new()
                            } else {
                                format!(" | COLLAPSED: {}", collapsed.join(", "))
                            }
                        );
                        if !collapsed.is_empty() {
                            pb.suspend(|| {
                                tracing::warn!(
                                    run = %self.label,
                                    epoch = epoch + 1,
                                    representation = %r.representation_spread.map(|s| s.to_string()).unwrap_or_default(),
                                    projection = %r.projection_spread.map(|s| s.to_string()).unwrap_or_default(),
                                    "COLLAPSED ({}): effective rank below {:.0}% of the \
                                     output's dimension: its audit is unlikely to show \
                                     memorization; change the method's settings \
                                     (docs/train.md)",
                                    collapsed.join(", "),
                                    100.0 * super::collapse::COLLAPSE_FRACTION
                                )
                            });
                        }
                        pb.suspend(|| {
                            tracing::info!(
                                run = %self.label,
                                epoch = epoch + 1,
                                align_seen = r.representation.align_seen,
                                align_unseen = r.representation.align_unseen,
                                auc = r.representation.auc,
                                projection_auc = r.projection.auc,
                                canary_auc = r.canaries_representation.map(|g| g.auc),
                                canary_projection_auc = r.canaries_projection.map(|g| g.auc),
                                projection_effective_rank =
                                    r.projection_spread.map(|s| s.effective_rank),
                                "memorization monitor"
                            )
                        });
                        Some((r, collapsed))
                    }
                    _ => None,
                };
                prof.monitor = lap.lap();
                let mut line = serde_json::json!({
                    "run": self.label, "epoch": epoch + 1, "steps": (epoch + 1) * steps_per_epoch,
                    "loss": loss_sum / n.max(1) as f64, "lr": lr, "seconds": secs,
                    "images_per_second": (n * c.batch_size) as f64 / secs,
                });
                if let Some((r, collapsed)) = &report {
                    line["memorization"] =
                        serde_json::to_value(r).map_err(|e| Error::output("JSON", e))?;
                    if !collapsed.is_empty() {
                        line["collapsed"] = serde_json::json!(collapsed);
                    }
                }
                pending.push(line);
                // Log lines are written with the checkpoint that covers them, so a resumed run
                // neither repeats nor loses a logged epoch.
                if last
                    || report.is_some()
                    || last_save.elapsed().as_secs_f64() >= self.checkpoint_seconds
                {
                    for l in pending.drain(..) {
                        self.append_log(&l)?;
                    }
                    self.save(&model, &opt, epoch + 1)?;
                    last_save = Instant::now();
                }
                prof.save = lap.lap();
                prof.images = n * c.batch_size;
                prof.wall = started.elapsed().as_secs_f64();
                tracing::debug!(run = %self.label, epoch = epoch + 1, "{prof}");
                total_profile.add(&prof);
            }
            Ok(())
        })?;
        total_profile.wall = run_started.elapsed().as_secs_f64();
        pb.finish_and_clear();
        Ok((model, total_profile))
    }

    fn append_log(&self, line: &serde_json::Value) -> Result<()> {
        let path = self.workdir.join("log.jsonl");
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        writeln!(f, "{line}")
            .and_then(|()| f.sync_all())
            .map_err(|e| Error::io(&path, e))
    }

    /// Writes `ckpt-<epoch>.ot` (online, target and optimiser tensors), then points
    /// `checkpoint.json` at it; both writes are atomic, so a crash leaves the previous one.
    fn save(&self, model: &SslModel, opt: &Optimizer, epochs_done: usize) -> Result<()> {
        let mut named: Vec<(String, Tensor)> = model
            .vs
            .variables()
            .into_iter()
            .map(|(n, t)| (format!("online/{n}"), t))
            .collect();
        if let Some(t) = &model.target_vs {
            named.extend(
                t.variables()
                    .into_iter()
                    .map(|(n, t)| (format!("target/{n}"), t)),
            );
        }
        named.extend(
            opt.state_tensors()
                .into_iter()
                .map(|(n, t)| (format!("optim/{n}"), t)),
        );
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let mut bytes = Vec::new();
        Tensor::save_multi_to_stream(&named, &mut bytes)
            .map_err(tch_err("cannot write checkpoint"))?;
        let file = format!("ckpt-{epochs_done}.ot");
        write_atomic(&self.workdir.join(&file), &bytes)?;
        let meta = CheckpointMeta {
            epochs_done,
            steps: opt.steps,
            file: file.clone(),
            config: self.config.clone(),
        };
        let text = serde_json::to_vec_pretty(&meta).map_err(|e| Error::output("JSON", e))?;
        write_atomic(&self.checkpoint_meta(), &text)?;
        // Older checkpoints are no longer needed.
        if let Ok(entries) = fs::read_dir(&self.workdir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with("ckpt-") && name != file {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        Ok(())
    }

    /// Restores model and optimiser; returns the epochs already done.
    fn load(&self, model: &mut SslModel, opt: &mut Optimizer) -> Result<usize> {
        let path = self.checkpoint_meta();
        let text = fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let meta: CheckpointMeta = serde_json::from_slice(&text)
            .map_err(|e| Error::Param(format!("{}: {e}", path.display())))?;
        if meta.config != self.config {
            return Err(Error::Param(format!(
                "{} was made with other settings; resume with the same command, or start afresh without --resume",
                path.display()
            )));
        }
        let file = self.workdir.join(&meta.file);
        let bytes = fs::read(&file).map_err(|e| Error::io(&file, e))?;
        let tensors =
            Tensor::load_multi_from_stream_with_device(std::io::Cursor::new(bytes), self.device)
                .map_err(tch_err("cannot read checkpoint"))?;
        let online = model.vs.variables();
        let target = model
            .target_vs
            .as_ref()
            .map(|t| t.variables())
            .unwrap_or_default();
        let mut optim = Vec::new();
        tch::no_grad(|| -> Result<()> {
            for (name, t) in tensors {
                let (kind, rest) = name
                    .split_once('/')
                    .ok_or_else(|| Error::Param(format!("bad checkpoint entry '{name}'")))?;
                let dst = match kind {
                    "online" => online.get(rest),
                    "target" => target.get(rest),
                    "optim" => {
                        optim.push((rest.to_string(), t));
                        continue;
                    }
                    _ => None,
                };
                let mut dst = dst
                    .ok_or_else(|| {
                        Error::Param(format!("checkpoint entry '{name}' matches no variable"))
                    })?
                    .shallow_clone();
                dst.f_copy_(&t)
                    .map_err(tch_err("cannot restore a variable"))?;
            }
            Ok(())
        })?;
        opt.load_state(optim, meta.steps)?;
        Ok(meta.epochs_done)
    }
}

/// One step's input: views 0 and 1 of every example of the batch, the two batches one after
/// the other, and the seconds it took to make them.
struct Batch {
    views: Vec<f32>,
    augment: f64,
}

/// The training batches of a run: each epoch's seeded shuffle of the examples, cut into
/// batches (the remainder dropped), two augmented views of each example.
struct Batches<'a> {
    data: &'a ImageArray,
    /// (example, copy) pairs, see [`with_copies`].
    examples: Vec<(usize, usize)>,
    augmenter: &'a Augmenter,
    norm: &'a Normalize,
    seed: u64,
    batch: usize,
    epochs: usize,
    view_len: usize,
}

impl Batches<'_> {
    /// The examples of `epoch` in training order.
    fn order(&self, epoch: usize) -> Vec<(usize, usize)> {
        let mut order = self.examples.clone();
        let mut rng = Rng::from_seed(splitmix64(self.seed ^ splitmix64(epoch as u64 + 1)));
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        order
    }

    /// The two views of each of `chunk` at `epoch`: copy k of an example gets views
    /// 2(epoch + k epochs) and the next, so every copy and epoch sees views of its own.
    fn make(&self, epoch: usize, chunk: &[(usize, usize)]) -> Vec<f32> {
        let (len, batch) = (self.view_len, chunk.len());
        let mut buf = vec![0f32; 2 * batch * len];
        let (a, b) = buf.split_at_mut(batch * len);
        a.par_chunks_mut(len)
            .zip(b.par_chunks_mut(len))
            .zip(chunk.par_iter())
            .for_each(|((da, db), &(i, copy))| {
                if let Ok(img) = self.data.get(i) {
                    let planes = img.to_planes();
                    let base = 2 * (epoch + copy * self.epochs) as u64;
                    let view = |v| self.augmenter.view(&planes, self.seed, i as u64, v);
                    self.norm.write(&view(base), da);
                    self.norm.write(&view(base + 1), db);
                }
            });
        buf
    }

    /// Sends every batch of `epochs`, in order, until done or until nobody receives.
    fn produce(&self, epochs: std::ops::Range<usize>, tx: &mpsc::SyncSender<Batch>) {
        for epoch in epochs {
            for chunk in self.order(epoch).chunks_exact(self.batch) {
                let started = Instant::now();
                let views = self.make(epoch, chunk);
                let augment = started.elapsed().as_secs_f64();
                if tx.send(Batch { views, augment }).is_err() {
                    return;
                }
            }
        }
    }
}

/// Pairs each index with its repeat number: the first occurrence of an example is copy 0,
/// the next copy 1, and so on (canaries planted with `--canary-repeats`).
fn with_copies(indices: &[usize]) -> Vec<(usize, usize)> {
    let mut seen = std::collections::HashMap::new();
    indices
        .iter()
        .map(|&i| {
            let k = seen.entry(i).or_insert(0usize);
            *k += 1;
            (i, *k - 1)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    #[test]
    fn the_run_long_producer_sends_each_epochs_batches_in_order() {
        let data = ImageArray {
            name: "test".into(),
            channels: 1,
            height: 8,
            width: 8,
            pixels: (0..10 * 64).map(|v| (v * 7 % 251) as u8).collect(),
            labels: None,
        };
        let augmenter = Augmenter::new(AugmentSpec::simclr(), 8, 8).expect("augmenter");
        let norm = Normalize::new(vec![0.5], vec![0.25], 1).expect("norm");
        let batches = Batches {
            data: &data,
            examples: with_copies(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 3]),
            augmenter: &augmenter,
            norm: &norm,
            seed: 7,
            batch: 4,
            epochs: 5,
            view_len: 64,
        };
        // A run resumed after epoch 2 gets the same batches as one that started at 0.
        let (tx, rx) = mpsc::sync_channel(1);
        std::thread::scope(|s| {
            let batches = &batches;
            s.spawn(move || batches.produce(2..5, &tx));
            let got: Vec<Vec<f32>> = rx.iter().map(|b| b.views).collect();
            let want: Vec<Vec<f32>> = (2..5)
                .flat_map(|e| {
                    batches
                        .order(e)
                        .chunks_exact(4)
                        .map(|c| batches.make(e, c))
                        .collect::<Vec<_>>()
                })
                .collect();
            assert_eq!(got.len(), 3 * 2, "two whole batches of 4 in 11 examples");
            assert_eq!(got, want);
        });
        // Every epoch has an order of its own, and each is a permutation.
        let (o2, o3) = (batches.order(2), batches.order(3));
        assert_ne!(o2, o3);
        let mut sorted = o3.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, with_copies(&[0, 1, 2, 3, 3, 4, 5, 6, 7, 8, 9]));
    }

    #[test]
    fn repeats_are_numbered_in_order() {
        assert_eq!(
            super::with_copies(&[3, 1, 3, 3, 2, 1]),
            [(3, 0), (1, 0), (3, 1), (3, 2), (2, 0), (1, 1)]
        );
    }
}
