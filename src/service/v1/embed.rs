//! `POST /v1/embed`: representations of images (resized to the model's input and
//! normalised) from the f and/or g encoders.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::Json;
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};

use super::{check_count, decode_uploads, Choice, ChoiceSchema, ProviderSchema};
use crate::engine::Preprocess;
use crate::runtime::Provider;
use crate::service::bodies::{BodyErrors, FormBody, JsonBody};
use crate::service::error::ApiError;
use crate::service::request::{read, unknown, Field, Images, Params};
use crate::service::{AppState, Limits};

/// Which encoders' representations to return.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Side {
    /// The `f` encoders (trained with the data).
    F,
    /// The `g` encoders (trained without it).
    G,
    /// Both.
    #[default]
    Both,
}

crate::choice!(Side, "side", {
    F = "f" => "The `f` encoders (trained with the data).",
    G = "g" => "The `g` encoders (trained without it).",
    Both = "both" => "Both.",
});

impl Choice for Side {
    const NAME: &'static str = "Side";
    const ABOUT: &'static str = "Which encoders' representations to return.";
}

/// The schema of [`Side`].
pub type SideSchema = ChoiceSchema<Side>;

/// Parameters of `/v1/embed`.
#[derive(Debug, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EmbedParams {
    /// Which encoders: `f`, `g` or `both` (the default).
    #[param(value_type = Option<SideSchema>)]
    pub side: Option<Side>,
}

impl Params for EmbedParams {
    const ROUTE: &'static str = "/v1/embed";
    const NAME: &'static str = "Embed";
    const NAMES: &'static [&'static str] = &["side"];
    const IMAGES: Images = Images::List;

    fn set(&mut self, key: &str, v: Field<'_>, _: &Limits) -> Result<(), ApiError> {
        match key {
            "side" => self.side = Some(v.choice(key)?),
            _ => return Err(unknown::<Self>(key)),
        }
        Ok(())
    }
}

/// The JSON body of `/v1/embed`.
pub type EmbedJson = JsonBody<EmbedParams>;
/// The multipart body of `/v1/embed`.
pub type EmbedForm = FormBody<EmbedParams>;

/// One image's representations: one vector per encoder of each side asked for.
#[derive(Debug, Serialize, ToSchema)]
pub struct EmbedResult {
    /// The image's file name, JSON `name`, or `image#N`.
    pub input: String,
    /// One vector per `f` encoder (absent for `side=g`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub f: Option<Vec<Vec<f64>>>,
    /// One vector per `g` encoder (absent for `side=f`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub g: Option<Vec<Vec<f64>>>,
}

/// The answer of `/v1/embed`: one result per image, in the order sent.
#[derive(Debug, Serialize, ToSchema)]
pub struct EmbedResponse {
    /// The bundle's name; null when its manifest has none.
    pub bundle: Option<String>,
    #[schema(value_type = ProviderSchema)]
    pub provider: Provider,
    /// The model output the vectors come from.
    pub output: String,
    pub results: Vec<EmbedResult>,
}

/// Row `i` of each encoder's matrix. As f64: the digits earlier responses carried for the
/// same f32 values.
fn rows(mats: &[ndarray::Array2<f32>], i: usize) -> Vec<Vec<f64>> {
    mats.iter()
        .map(|m| m.row(i).iter().map(|&x| f64::from(x)).collect())
        .collect()
}

/// Representations of images (resized to the model's input, normalised) from f and/or g.
#[utoipa::path(
    post,
    path = "/v1/embed",
    params(EmbedParams),
    request_body(
        description = "One or more images, as multipart file parts or base64 in JSON. \
                       Parameters may also go in the query string.",
        content((EmbedJson = "application/json"), (EmbedForm = "multipart/form-data")),
    ),
    responses(
        (status = 200, description = "One result per image, in the order sent.", body = EmbedResponse),
        BodyErrors,
    ),
)]
pub async fn embed(
    State(state): State<Arc<AppState>>,
    req: Request,
) -> Result<Json<EmbedResponse>, ApiError> {
    let (uploads, params) = read::<EmbedParams>(req, &state.limits).await?;
    let side = params.side.unwrap_or_default();
    let (want_f, want_g) = (side != Side::G, side != Side::F);
    check_count(&state, uploads.len(), "images")?;
    let names: Vec<String> = uploads.iter().map(|u| u.name.clone()).collect();
    let images = decode_uploads(&state, uploads).await?;
    state.metrics.images.inc_by(names.len() as u64);
    let reps = state.engine.embed_async(images, Preprocess::Resize).await?;
    Ok(Json(EmbedResponse {
        bundle: state.bundle().manifest.name.clone(),
        provider: state.provider,
        output: state.bundle().manifest.representation.output.clone(),
        results: names
            .into_iter()
            .enumerate()
            .map(|(i, input)| EmbedResult {
                input,
                f: want_f.then(|| rows(&reps.f, i)),
                g: want_g.then(|| rows(&reps.g, i)),
            })
            .collect(),
    }))
}
