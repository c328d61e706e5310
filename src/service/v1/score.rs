//! `POST /v1/score`: SSLMem scores of uploaded images, the numbers of `sslmem score`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::Json;
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};

use super::{
    check_count, decode_each, DistanceSchema, OnErrorSchema, ProviderSchema, RepNormSchema,
    ViewModeSchema,
};
use crate::engine::Preprocess;
use crate::error::InputError;
use crate::pixels::SourceImage;
use crate::runtime::Provider;
use crate::score::calibrate::Calibrated;
use crate::score::{
    Distance, ImageScore, OneModelRecord, RepNorm, ScoreOptions, ScoreRecord, ViewAlignment,
    ViewMode,
};
use crate::service::bodies::{pairs_count, BodyErrors, FormBody, JsonBody};
use crate::service::error::{ApiError, ImageErrorType};
use crate::service::request::{read, unknown, Field, Images, Params};
use crate::service::{AppState, Limits};

/// What an image that cannot be decoded or scored does to a `/v1/score` request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnError {
    /// The request fails (422 invalid_input), naming the first such image; nothing is scored.
    #[default]
    Fail,
    /// The image gets an error entry in its slot of `results`; the other images are scored.
    Report,
}

crate::choice!(OnError, "on_error value", {
    Fail = "fail" => "The request fails (422 invalid_input), naming the first such image; nothing is scored.",
    Report = "report" => "The image gets an error entry in its slot of `results`; the other images are scored.",
});

/// Parameters of `/v1/score`; absent ones take the server's defaults.
#[derive(Debug, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ScoreParams {
    /// View pairs per image (K); default `--pairs`, at most `--max-pairs`.
    #[param(schema_with = pairs_count)]
    pub pairs: Option<usize>,
    /// Seed of the augmentations; default `--seed`.
    #[param(minimum = 0, maximum = 18446744073709551615_u64)]
    pub seed: Option<u64>,
    /// How the two views of a pair are made.
    #[param(value_type = Option<ViewModeSchema>)]
    pub mode: Option<ViewMode>,
    /// Distance between two representations.
    #[param(value_type = Option<DistanceSchema>)]
    pub distance: Option<Distance>,
    /// What is done to each representation before the distance.
    #[param(value_type = Option<RepNormSchema>)]
    pub normalize: Option<RepNorm>,
    /// What an image that cannot be decoded or scored does: `fail` (default) the request, or
    /// `report` it in its slot of `results` and score the others.
    #[param(value_type = Option<OnErrorSchema>)]
    pub on_error: Option<OnError>,
}

impl Params for ScoreParams {
    const ROUTE: &'static str = "/v1/score";
    const NAME: &'static str = "Score";
    const NAMES: &'static [&'static str] =
        &["pairs", "seed", "mode", "distance", "normalize", "on_error"];
    const IMAGES: Images = Images::List;

    fn set(&mut self, key: &str, v: Field<'_>, limits: &Limits) -> Result<(), ApiError> {
        match key {
            "pairs" => {
                let n = v.integer(key, "a positive integer")?;
                if n == 0 || n > limits.max_pairs {
                    return Err(ApiError::invalid(format!(
                        "pairs must lie in 1..={} (got {n})",
                        limits.max_pairs
                    )));
                }
                self.pairs = Some(n);
            }
            "seed" => self.seed = Some(v.integer(key, "an unsigned integer")?),
            "mode" => self.mode = Some(v.choice(key)?),
            "distance" => self.distance = Some(v.choice(key)?),
            "normalize" => self.normalize = Some(v.choice(key)?),
            "on_error" => self.on_error = Some(v.choice(key)?),
            _ => return Err(unknown::<Self>(key)),
        }
        Ok(())
    }
}

/// The JSON body of `/v1/score`.
pub type ScoreJson = JsonBody<ScoreParams>;
/// The multipart body of `/v1/score`.
pub type ScoreForm = FormBody<ScoreParams>;

/// The options a score was computed with, defaults filled in.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScoreSettings {
    pub pairs: usize,
    pub seed: u64,
    #[schema(value_type = ViewModeSchema)]
    pub mode: ViewMode,
    #[schema(value_type = DistanceSchema)]
    pub distance: Distance,
    #[schema(value_type = RepNormSchema)]
    pub normalize: RepNorm,
}

/// An image that has no score (`on_error=report`): where it was in the request and why.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImageFailure {
    /// The image's position in the request, from 0 (its slot in `results`).
    pub index: usize,
    /// The image's file name, JSON `name`, or `image#N`.
    pub input: String,
    /// What went wrong, for people (the message `on_error=fail` would answer, without the
    /// name).
    pub error: String,
    /// What kind of failure, for programs.
    pub error_type: ImageErrorType,
}

impl ImageFailure {
    fn new(index: usize, input: String, e: &InputError) -> Self {
        Self {
            index,
            input,
            error: e.to_string(),
            error_type: ImageErrorType::of(e),
        }
    }
}

/// One image's entry in `results`: its SSLMem score, its one-model result (a bundle with `f`
/// only: `estimator` is `one-model`), or (only with `on_error=report`) why it has none. An
/// entry with `error` is a failure, one with `score` an SSLMem result, one with `align_f` and
/// no `score` a one-model result.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum ScoreEntry {
    Scored(ScoreRecord),
    OneModel(OneModelRecord),
    Failed(ImageFailure),
}

/// Which estimator the results come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EstimatorKind {
    /// SSLMem: `align_g - align_f` under the bundle's encoder pair.
    Sslmem,
    /// One-model scores: the bundle holds `f` only (docs/science.md#one-model-scores).
    OneModel,
}

crate::choice!(EstimatorKind, "estimator", {
    Sslmem = "sslmem" => "SSLMem: align_g - align_f under the bundle's encoder pair.",
    OneModel = "one-model" => "One-model scores: the bundle holds f only.",
});

impl super::Choice for EstimatorKind {
    const NAME: &'static str = "Estimator";
    const ABOUT: &'static str = "Which estimator the results come from.";
}

/// The schema of [`EstimatorKind`].
pub type EstimatorSchema = super::ChoiceSchema<EstimatorKind>;

/// The reference population a one-model result is calibrated on.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReferenceInfo {
    /// Reference images scored at start-up.
    pub images: usize,
    /// Neighbours of `knn_gap`.
    pub knn: usize,
    /// Whether this request's results are calibrated: only when its estimator settings
    /// (pairs, seed, mode, distance, normalize) are the server's defaults, which the
    /// reference was scored with.
    pub applied: bool,
}

/// The answer of `/v1/score`: one entry per image, in the order sent.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScoreResponse {
    /// The bundle's name; null when its manifest has none.
    pub bundle: Option<String>,
    /// `sslmem` for a bundle with `f` and `g`; `one-model` for one with `f` only.
    #[schema(value_type = EstimatorSchema)]
    pub estimator: EstimatorKind,
    /// A one-model bundle's reference population (`sslmem serve --reference`); null
    /// without one, and for a pair.
    pub reference: Option<ReferenceInfo>,
    #[schema(value_type = ProviderSchema)]
    pub provider: Provider,
    pub params: ScoreSettings,
    /// One entry per image, in the order sent: a score, or with `on_error=report` an error
    /// entry for an image that could not be decoded or scored.
    pub results: Vec<ScoreEntry>,
}

/// The request's options, defaults filled in (`set` checked the values given).
fn score_options(state: &AppState, p: &ScoreParams) -> ScoreOptions {
    let d = ScoreOptions::default();
    ScoreOptions {
        pairs: p.pairs.unwrap_or(state.defaults.pairs),
        seed: p.seed.unwrap_or(state.defaults.seed),
        mode: p.mode.unwrap_or(d.mode),
        distance: p.distance.unwrap_or(d.distance),
        normalize: p.normalize.unwrap_or(d.normalize),
    }
}

/// SSLMem scores of uploaded images (the numbers of `sslmem score`).
#[utoipa::path(
    post,
    path = "/v1/score",
    params(ScoreParams),
    request_body(
        description = "One or more images, as multipart file parts or base64 in JSON. \
                       Parameters may also go in the query string.",
        content((ScoreJson = "application/json"), (ScoreForm = "multipart/form-data")),
    ),
    responses(
        (status = 200, description = "One entry per image, in the order sent: its score, or \
                                        (on_error=report) why it has none.", body = ScoreResponse),
        BodyErrors,
    ),
)]
pub async fn score(
    State(state): State<Arc<AppState>>,
    req: Request,
) -> Result<Json<ScoreResponse>, ApiError> {
    let (uploads, params) = read::<ScoreParams>(req, &state.limits).await?;
    check_count(&state, uploads.len(), "images")?;
    let opts = score_options(&state, &params);
    let report = params.on_error.unwrap_or_default() == OnError::Report;
    let names: Vec<String> = uploads.iter().map(|u| u.name.clone()).collect();
    // Each slot: None once decoded (its image goes to the engine), else why it failed.
    let mut failed: Vec<Option<InputError>> = Vec::with_capacity(names.len());
    let mut images = Vec::with_capacity(names.len());
    for (name, d) in names.iter().zip(decode_each(&state, uploads).await?) {
        match d {
            Ok(img) => {
                images.push(img);
                failed.push(None);
            }
            Err(e) if report => failed.push(Some(e)),
            Err(e) => return Err(ApiError::invalid(format!("{name}: {e}"))),
        }
    }
    state.metrics.images.inc_by(images.len() as u64);
    let one_model = state.bundle().g.is_empty();
    let scored = if images.is_empty() {
        Vec::new()
    } else if one_model {
        one_model_results(&state, &names, &failed, images, &opts).await?
    } else {
        state
            .engine
            .score_async(images, opts.clone())
            .await?
            .into_iter()
            .map(|r| r.map(Estimate::Pair))
            .collect()
    };
    let mut scored = scored.into_iter();
    let mut results = Vec::with_capacity(names.len());
    for (index, (name, failure)) in names.into_iter().zip(failed).enumerate() {
        let outcome = match failure {
            Some(e) => Err(e),
            None => scored.next().ok_or_else(|| {
                ApiError::internal("the engine returned fewer scores than images")
            })?,
        };
        results.push(match outcome {
            Ok(Estimate::Pair(s)) => ScoreEntry::Scored(ScoreRecord::new(name, &s)),
            Ok(Estimate::OneModel(a, c)) => ScoreEntry::OneModel(OneModelRecord::new(name, &a, c)),
            Err(e) if report => ScoreEntry::Failed(ImageFailure::new(index, name, &e)),
            // One image the encoders cannot score fails the request, naming it (as a bad
            // image does).
            Err(e) => return Err(ApiError::invalid(format!("{name}: {e}"))),
        });
    }
    state.metrics.image_errors.inc_by(
        results
            .iter()
            .filter(|r| matches!(r, ScoreEntry::Failed(_)))
            .count() as u64,
    );
    Ok(Json(ScoreResponse {
        bundle: state.bundle().manifest.name.clone(),
        estimator: if one_model {
            EstimatorKind::OneModel
        } else {
            EstimatorKind::Sslmem
        },
        reference: state.reference.as_ref().map(|r| ReferenceInfo {
            images: r.reference.len(),
            knn: r.knn,
            applied: r.applies(&opts),
        }),
        provider: state.provider,
        params: ScoreSettings {
            pairs: opts.pairs,
            seed: opts.seed,
            mode: opts.mode,
            distance: opts.distance,
            normalize: opts.normalize,
        },
        results,
    }))
}

/// One image's estimate: a pair's SSLMem score, or a one-model bundle's alignment with its
/// calibration (empty without a reference that applies).
enum Estimate {
    Pair(ImageScore),
    OneModel(ViewAlignment, Calibrated),
}

/// A one-model bundle's results for the decoded `images` (named by the slots of `names`
/// whose `failed` entry is `None`, in order): each image's alignment under `f`, calibrated
/// against the server's reference when there is one and the request's settings are its.
async fn one_model_results(
    state: &AppState,
    names: &[String],
    failed: &[Option<InputError>],
    images: Vec<SourceImage>,
    opts: &ScoreOptions,
) -> Result<Vec<Result<Estimate, InputError>>, ApiError> {
    let reference = state.reference.as_ref().filter(|r| r.applies(opts));
    let reps = match reference {
        Some(_) => Some(
            state
                .engine
                .embed_async(images.clone(), Preprocess::Resize)
                .await?,
        ),
        None => None,
    };
    let aligned = state.engine.align_views_async(images, opts.clone()).await?;
    let decoded = names
        .iter()
        .zip(failed)
        .filter(|(_, f)| f.is_none())
        .map(|(n, _)| n);
    Ok(aligned
        .into_iter()
        .zip(decoded)
        .enumerate()
        .map(|(i, (r, name))| {
            r.map(|a| {
                let row = reps.as_ref().and_then(|x| x.f.first()).map(|m| m.row(i));
                let c = match (reference, row) {
                    (Some(re), Some(row)) => re.calibrate(name, a.align_f, &row.to_vec()),
                    _ => Calibrated::default(),
                };
                Estimate::OneModel(a, c)
            })
        })
        .collect())
}
