//! Encoder sessions: each ONNX Runtime session lives on its own OS thread and is fed batches
//! over a channel (`Session::run` needs `&mut self`); callers on any thread send a batch and
//! wait for its outputs.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;

use ndarray::{Array2, ArrayD};
use ort::session::Session;
use ort::value::TensorRef;
use serde::Serialize;

use super::boundary::{
    element_name, output_f32, pool, to_channels_last, to_f16, to_u8, Boundary, ElementType, Layout,
};
use super::builder::{build_session, specialise, Source};
use super::device::{Provider, RuntimeOptions};
use super::environment::environment;
use crate::error::{Error, Result};

/// Shape of one model input or output; `None` for a dynamic dimension.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TensorInfo {
    pub name: String,
    pub shape: Vec<Option<usize>>,
    /// Element type in ONNX's lower-case spelling (`float32`, `float16`, `uint8`, `int64`, ...).
    pub element: String,
}

impl TensorInfo {
    /// The element type, when it is one an encoder's input may have.
    pub fn element_type(&self) -> Option<ElementType> {
        match self.element.as_str() {
            "float32" => Some(ElementType::Float32),
            "float16" => Some(ElementType::Float16),
            "uint8" => Some(ElementType::Uint8),
            _ => None,
        }
    }
}

fn outlet_info(o: &ort::value::Outlet) -> TensorInfo {
    let shape = o
        .dtype()
        .tensor_shape()
        .map(|s| s.iter().map(|&d| usize::try_from(d).ok()).collect())
        .unwrap_or_default();
    let element = o
        .dtype()
        .tensor_type()
        .map_or_else(|| "not a tensor".to_string(), element_name);
    TensorInfo {
        name: o.name().to_string(),
        shape,
        element,
    }
}

type Reply = mpsc::SyncSender<Result<Vec<ArrayD<f32>>>>;

struct Job {
    input: Vec<f32>,
    shape: [usize; 4],
    outputs: Vec<String>,
    reply: Reply,
}

/// One encoder: an ONNX Runtime session owned by its own thread.
pub struct EncoderSession {
    pub path: PathBuf,
    pub input: TensorInfo,
    pub outputs: Vec<TensorInfo>,
    pub provider: Provider,
    pub boundary: Boundary,
    /// The output the bundle scores (`primary` of [`Self::load_with`]); any other output it
    /// is asked for is a layer's.
    pub scored: Option<String>,
    tx: mpsc::Sender<Job>,
}

impl EncoderSession {
    /// Loads the model and starts its thread; inputs are fed channels first and token
    /// outputs are refused (see [`EncoderSession::load_with`]).
    pub fn load(path: &Path, opts: &RuntimeOptions) -> Result<Self> {
        Self::load_with(path, opts, Boundary::default(), None)
    }

    /// Loads the model with the bundle's layout and pooling, and starts its thread. Inputs
    /// are always given as float32 `[N, C, H, W]`; the session transposes them to its layout
    /// and casts them to its input's element type.
    ///
    /// With `primary` (the output nearly every call asks for: the bundle's representation)
    /// and a model that has other outputs too (per-layer feature maps, a projection head),
    /// the session runs a representation-only graph ([`crate::runtime::representation_only`]): ONNX Runtime
    /// then neither computes nor copies out the rest. A call for another output loads the
    /// whole model on first use and keeps it.
    ///
    /// # Errors
    /// [`Error::Model`] when the model cannot be loaded, has other than one input, or its
    /// input's element type is not float32, float16 or uint8.
    pub fn load_with(
        path: &Path,
        opts: &RuntimeOptions,
        boundary: Boundary,
        primary: Option<&str>,
    ) -> Result<Self> {
        let env = environment(opts)?;
        let model = path.display().to_string();
        let (session, provider) = build_session(env, path, Source::File(path), opts)?;
        let inputs: Vec<TensorInfo> = session.inputs().iter().map(outlet_info).collect();
        let outputs: Vec<TensorInfo> = session.outputs().iter().map(outlet_info).collect();
        let input = match inputs.as_slice() {
            [one] => one.clone(),
            _ => {
                return Err(Error::Model {
                    model,
                    reason: format!(
                        "has {} inputs; an encoder takes exactly one image tensor",
                        inputs.len()
                    ),
                })
            }
        };
        let Some(element) = input.element_type() else {
            return Err(Error::Model {
                model,
                reason: format!(
                    "input '{}' is {}; an encoder takes float32, float16 or uint8 images",
                    input.name, input.element
                ),
            });
        };
        let scored = primary.map(str::to_string);
        let primary = primary.filter(|p| outputs.len() > 1 && outputs.iter().any(|o| o.name == *p));
        let sessions = match primary.map(|p| specialise(env, path, opts, p, provider)) {
            Some(Some(fast)) => Sessions {
                main: fast,
                main_outputs: primary.iter().map(|p| p.to_string()).collect(),
                whole: None,
            },
            _ => Sessions {
                main: session,
                main_outputs: outputs.iter().map(|o| o.name.clone()).collect(),
                whole: None,
            },
        };
        let (tx, rx) = mpsc::channel::<Job>();
        let feed = Feed {
            name: input.name.clone(),
            element,
            boundary,
            path: path.to_path_buf(),
            opts: opts.clone(),
        };
        thread::Builder::new()
            .name(format!(
                "encoder:{}",
                path.file_name()
                    .map(|f| f.to_string_lossy())
                    .unwrap_or_default()
            ))
            .spawn(move || serve(sessions, &feed, rx))
            .map_err(|e| Error::Runtime(format!("cannot start encoder thread: {e}")))?;
        Ok(Self {
            path: path.to_path_buf(),
            input,
            outputs,
            provider,
            boundary,
            scored,
            tx,
        })
    }

    /// Runs a batch `[n, c, h, w]` (a flat row-major buffer) and returns the named outputs, in order.
    pub fn run_owned(
        &self,
        input: Vec<f32>,
        shape: [usize; 4],
        outputs: &[String],
    ) -> Result<Vec<ArrayD<f32>>> {
        let (reply, rx) = mpsc::sync_channel(1);
        self.tx
            .send(Job {
                input,
                shape,
                outputs: outputs.to_vec(),
                reply,
            })
            .map_err(|_| Error::Runtime(format!("encoder {} has stopped", self.path.display())))?;
        rx.recv().map_err(|_| {
            Error::Runtime(format!("encoder {} stopped mid-batch", self.path.display()))
        })?
    }

    /// One representation per row: a matrix output as is, the scored token output `[batch,
    /// tokens, dim]` pooled as the bundle says, a layer's output (a feature map `[batch, c, h,
    /// w]` or a ViT block's tokens `[batch, tokens, dim]`, any output but [`Self::scored`])
    /// flattened per image, as LayerMem's reference code flattens a layer's output before its
    /// one l2 norm (Wang et al. 2024, `layer_mem.py`).
    ///
    /// # Errors
    /// [`Error::Model`] for an output of another rank, or a token output with no pooling.
    pub fn embed(&self, input: Vec<f32>, shape: [usize; 4], output: &str) -> Result<Array2<f32>> {
        let out = self.run_owned(input, shape, &[output.to_string()])?;
        let first = out
            .into_iter()
            .next()
            .ok_or_else(|| Error::Runtime("no output returned".into()))?;
        let model = || self.path.display().to_string();
        let layer = self.scored.as_deref().is_some_and(|s| s != output);
        match (first.ndim(), self.boundary.pooling) {
            (2, _) => first.into_dimensionality().map_err(|e| Error::Model {
                model: model(),
                reason: e.to_string(),
            }),
            (3, Some(p)) if !layer => {
                let t = first
                    .into_dimensionality::<ndarray::Ix3>()
                    .map_err(|e| Error::Model {
                        model: model(),
                        reason: e.to_string(),
                    })?;
                if t.dim().1 == 0 {
                    return Err(Error::Model {
                        model: model(),
                        reason: format!("output '{output}' has no tokens to pool"),
                    });
                }
                Ok(pool(&t, p))
            }
            (4, _) | (3, _) if first.ndim() == 4 || layer => {
                let n = first.shape()[0];
                let per: usize = first.shape()[1..].iter().product();
                let flat: Vec<f32> = first.iter().copied().collect();
                Array2::from_shape_vec((n, per), flat).map_err(|e| Error::Model {
                    model: model(),
                    reason: e.to_string(),
                })
            }
            (3, None) => Err(Error::Model {
                model: model(),
                reason: format!(
                    "output '{output}' has shape [batch, tokens, dim] {:?}: choose how tokens \
                     become one representation (`--pooling cls`, `mean` or `flatten`)",
                    first.shape()
                ),
            }),
            (d, _) => Err(Error::Model {
                model: model(),
                reason: format!(
                    "output '{output}' has {d} dimensions {:?}; a representation is [batch, dim], \
                     pooled [batch, tokens, dim] or a flattened feature map [batch, c, h, w]",
                    first.shape()
                ),
            }),
        }
    }
}

/// What the session's thread needs to feed its model (and to load the whole model when a
/// call asks for an output the representation-only graph lacks).
struct Feed {
    name: String,
    element: ElementType,
    boundary: Boundary,
    path: PathBuf,
    opts: RuntimeOptions,
}

/// The sessions of one encoder's thread.
struct Sessions {
    /// The representation-only graph, or the whole model when there is nothing to remove.
    main: Session,
    /// The outputs `main` has.
    main_outputs: Vec<String>,
    /// The whole model, loaded on the first call for an output `main` lacks.
    whole: Option<Session>,
}

impl Sessions {
    fn for_job(&mut self, feed: &Feed, job: &Job) -> Result<&mut Session> {
        if job.outputs.iter().all(|o| self.main_outputs.contains(o)) {
            return Ok(&mut self.main);
        }
        if self.whole.is_none() {
            let env = environment(&feed.opts)?;
            let (session, _) =
                build_session(env, &feed.path, Source::File(&feed.path), &feed.opts)?;
            tracing::debug!(model = %feed.path.display(), outputs = ?job.outputs, "loaded the whole model for outputs outside the representation");
            self.whole = Some(session);
        }
        self.whole
            .as_mut()
            .ok_or_else(|| Error::Runtime("the whole model is not loaded".into()))
    }
}

fn serve(mut sessions: Sessions, feed: &Feed, rx: mpsc::Receiver<Job>) {
    while let Ok(job) = rx.recv() {
        let result = sessions
            .for_job(feed, &job)
            .and_then(|session| run_one(session, feed, &job));
        // The caller may have gone away; nothing to do then.
        let _ = job.reply.send(result);
    }
}

fn run_one(session: &mut Session, feed: &Feed, job: &Job) -> Result<Vec<ArrayD<f32>>> {
    let [n, c, h, w] = job.shape;
    let (data, dims): (std::borrow::Cow<[f32]>, [usize; 4]) = match feed.boundary.layout {
        Layout::Nchw => (job.input.as_slice().into(), [n, c, h, w]),
        Layout::Nhwc => (to_channels_last(&job.input, job.shape).into(), [n, h, w, c]),
    };
    let shape: Vec<i64> = dims.iter().map(|&d| d as i64).collect();
    let input = feed.name.as_str();
    let out = match feed.element {
        ElementType::Float32 => {
            let t = TensorRef::from_array_view((shape, &*data))?;
            session.run(ort::inputs![input => t])?
        }
        ElementType::Float16 => {
            let v = to_f16(&data);
            let t = TensorRef::from_array_view((shape, v.as_slice()))?;
            session.run(ort::inputs![input => t])?
        }
        ElementType::Uint8 => {
            let v = to_u8(&data);
            let t = TensorRef::from_array_view((shape, v.as_slice()))?;
            session.run(ort::inputs![input => t])?
        }
    };
    job.outputs
        .iter()
        .map(|name| {
            let v = out
                .get(name)
                .ok_or_else(|| Error::Runtime(format!("model has no output '{name}'")))?;
            output_f32(name, v)
        })
        .collect()
}
