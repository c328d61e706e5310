//! A run's checkpoints and the policy that writes them: at most every `seconds` (0: after
//! every epoch), and always after the last epoch and after an epoch the monitor measured.
//! A checkpoint is `ckpt-<epoch>.ot` (online, target and optimiser tensors) and
//! `checkpoint.json` pointing at it, both written atomically, so a crash leaves the previous
//! one; a killed run resumes from it exactly. The log lines of the epochs a checkpoint covers
//! are appended to `log.jsonl` with it, so a resumed run neither repeats nor loses a logged
//! epoch.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

use super::optim::Optimizer;
use super::ssl::SslModel;
use crate::error::{Error, Result};
use crate::fsutil::write_atomic;
use crate::recipe::{EpochLine, TrainConfig};

/// The training log's file name in a run's folder.
pub const LOG: &str = "log.jsonl";

/// Removes the checkpoints of the run in `workdir` (for a run whose record is written, which
/// nothing resumes); a file that cannot be removed is left.
pub fn remove_all(workdir: &Path) {
    let Ok(entries) = fs::read_dir(workdir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("ckpt-") || name == META {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// The file that points at a run's last checkpoint.
const META: &str = "checkpoint.json";

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

/// The checkpoints of one run in `workdir`, and the log lines waiting for the next one.
pub struct Checkpoints {
    workdir: PathBuf,
    /// Seconds between checkpoints (0: after every epoch).
    seconds: f64,
    last_save: Instant,
    pending: Vec<EpochLine>,
}

impl Checkpoints {
    pub fn new(workdir: &Path, seconds: f64) -> Self {
        Self {
            workdir: workdir.to_path_buf(),
            seconds,
            last_save: Instant::now(),
            pending: Vec::new(),
        }
    }

    fn meta_path(&self) -> PathBuf {
        self.workdir.join(META)
    }

    /// Whether the folder holds a checkpoint to resume from.
    pub fn exists(&self) -> bool {
        self.meta_path().is_file()
    }

    /// Starts afresh: a fresh run must not append to an old log.
    pub fn discard_log(&self) {
        let _ = fs::remove_file(self.workdir.join(LOG));
    }

    /// Ends an epoch: keeps its log line, and writes the lines and a checkpoint when the
    /// policy says so (`last` epoch, `measured` by the monitor, or `seconds` elapsed).
    ///
    /// Errors: the log or the checkpoint cannot be written.
    pub fn end_epoch(
        &mut self,
        line: EpochLine,
        model: &SslModel,
        opt: &Optimizer,
        config: &TrainConfig,
        measured: bool,
    ) -> Result<()> {
        let (epochs_done, last) = (line.epoch, line.epoch == config.epochs);
        self.pending.push(line);
        if last || measured || self.last_save.elapsed().as_secs_f64() >= self.seconds {
            for l in std::mem::take(&mut self.pending) {
                self.append_log(&l)?;
            }
            self.save(model, opt, epochs_done, config)?;
            self.last_save = Instant::now();
        }
        Ok(())
    }

    fn append_log(&self, line: &EpochLine) -> Result<()> {
        let path = self.workdir.join(LOG);
        let text = serde_json::to_string(line).map_err(|e| Error::output("JSON", e))?;
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        writeln!(f, "{text}")
            .and_then(|()| f.sync_all())
            .map_err(|e| Error::io(&path, e))
    }

    /// Writes `ckpt-<epoch>.ot`, then points `checkpoint.json` at it and removes older ones.
    fn save(
        &self,
        model: &SslModel,
        opt: &Optimizer,
        epochs_done: usize,
        config: &TrainConfig,
    ) -> Result<()> {
        let prefixed = |prefix: &str, vars: Vec<(String, Tensor)>| {
            vars.into_iter()
                .map(|(n, t)| (format!("{prefix}/{n}"), t))
                .collect::<Vec<_>>()
        };
        let mut named = prefixed("online", model.vs.variables().into_iter().collect());
        if let Some(t) = model.target() {
            named.extend(prefixed("target", t.variables().into_iter().collect()));
        }
        named.extend(prefixed("optim", opt.state_tensors()));
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
            config: config.clone(),
        };
        let text = serde_json::to_vec_pretty(&meta).map_err(|e| Error::output("JSON", e))?;
        write_atomic(&self.meta_path(), &text)?;
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

    /// Restores model and optimiser from the last checkpoint; returns the epochs already
    /// done.
    ///
    /// Errors: the checkpoint cannot be read, was made with another recipe than `config`,
    /// or names tensors the model does not have.
    pub fn load(
        &self,
        model: &mut SslModel,
        opt: &mut Optimizer,
        config: &TrainConfig,
        device: Device,
    ) -> Result<usize> {
        let path = self.meta_path();
        let text = fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let meta: CheckpointMeta = serde_json::from_slice(&text)
            .map_err(|e| Error::Param(format!("{}: {e}", path.display())))?;
        if &meta.config != config {
            return Err(Error::Param(format!(
                "{} was made with other settings; resume with the same command, or start afresh without --resume",
                path.display()
            )));
        }
        let file = self.workdir.join(&meta.file);
        let bytes = fs::read(&file).map_err(|e| Error::io(&file, e))?;
        let tensors =
            Tensor::load_multi_from_stream_with_device(std::io::Cursor::new(bytes), device)
                .map_err(tch_err("cannot read checkpoint"))?;
        let online = model.vs.variables();
        let target = model.target().map(|t| t.variables()).unwrap_or_default();
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
