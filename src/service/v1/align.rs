//! `POST /v1/align`: distances of supplied image pairs under f and g, with no augmentation
//! (the numbers of `sslmem align`).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::Json;
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};

use super::{check_count, decode_uploads, DistanceSchema, ProviderSchema, RepNormSchema};
use crate::pixels::SourceImage;
use crate::runtime::Provider;
use crate::score::{Distance, RepNorm, ScoreOptions};
use crate::service::bodies::{BodyErrors, FormBody, JsonBody};
use crate::service::error::ApiError;
use crate::service::request::{read, unknown, Field, Images, Params};
use crate::service::{AppState, Limits};

/// Parameters of `/v1/align`; absent ones take the defaults of `sslmem align`.
#[derive(Debug, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AlignParams {
    /// Distance between two representations.
    #[param(value_type = Option<DistanceSchema>)]
    pub distance: Option<Distance>,
    /// What is done to each representation before the distance.
    #[param(value_type = Option<RepNormSchema>)]
    pub normalize: Option<RepNorm>,
}

impl Params for AlignParams {
    const ROUTE: &'static str = "/v1/align";
    const NAME: &'static str = "Align";
    const NAMES: &'static [&'static str] = &["distance", "normalize"];
    const IMAGES: Images = Images::Pairs;

    fn set(&mut self, key: &str, v: Field<'_>, _: &Limits) -> Result<(), ApiError> {
        match key {
            "distance" => self.distance = Some(v.choice(key)?),
            "normalize" => self.normalize = Some(v.choice(key)?),
            _ => return Err(unknown::<Self>(key)),
        }
        Ok(())
    }
}

/// The JSON body of `/v1/align`.
pub type AlignJson = JsonBody<AlignParams>;
/// The multipart body of `/v1/align`.
pub type AlignForm = FormBody<AlignParams>;

/// One pair's distances, averaged over each side's encoders.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlignResult {
    /// The first image's name.
    pub a: String,
    /// The second image's name.
    pub b: String,
    /// Distance under the `f` encoders.
    pub d_f: f64,
    /// Distance under the `g` encoders; null for a one-model bundle (no `g`).
    pub d_g: Option<f64>,
}

/// The answer of `/v1/align`: one result per pair, in the order sent.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlignResponse {
    /// The bundle's name; null when its manifest has none.
    pub bundle: Option<String>,
    #[schema(value_type = ProviderSchema)]
    pub provider: Provider,
    #[schema(value_type = DistanceSchema)]
    pub distance: Distance,
    #[schema(value_type = RepNormSchema)]
    pub normalize: RepNorm,
    pub results: Vec<AlignResult>,
}

/// Distances of image pairs under f and g, no augmentation (the numbers of `sslmem align`).
#[utoipa::path(
    post,
    path = "/v1/align",
    params(AlignParams),
    request_body(
        description = "Image pairs of the model's input size: JSON `pairs`, or multipart file \
                       parts in the order a1, b1, a2, b2, ... (any part names). Parameters may \
                       also go in the query string.",
        content((AlignJson = "application/json"), (AlignForm = "multipart/form-data")),
    ),
    responses(
        (status = 200, description = "One result per pair, in the order sent.", body = AlignResponse),
        BodyErrors,
    ),
)]
pub async fn align(
    State(state): State<Arc<AppState>>,
    req: Request,
) -> Result<Json<AlignResponse>, ApiError> {
    let (uploads, params) = read::<AlignParams>(req, &state.limits).await?;
    if uploads.len() % 2 != 0 {
        return Err(ApiError::invalid(format!(
            "align takes pairs of images; got {} images",
            uploads.len()
        )));
    }
    check_count(&state, uploads.len(), "images")?;
    let names: Vec<String> = uploads.iter().map(|u| u.name.clone()).collect();
    let images = decode_uploads(&state, uploads).await?;
    let pairs: Vec<(SourceImage, SourceImage)> = images
        .chunks_exact(2)
        .map(|p| (p[0].clone(), p[1].clone()))
        .collect();
    state.metrics.images.inc_by(names.len() as u64);
    let d = ScoreOptions::default();
    let (norm, dist) = (
        params.normalize.unwrap_or(d.normalize),
        params.distance.unwrap_or(d.distance),
    );
    let alignments = state.engine.align_async(pairs, norm, dist).await?;
    Ok(Json(AlignResponse {
        bundle: state.bundle().manifest.name.clone(),
        provider: state.provider,
        distance: dist,
        normalize: norm,
        results: alignments
            .into_iter()
            .zip(names.chunks_exact(2))
            .map(|(r, n)| AlignResult {
                a: n[0].clone(),
                b: n[1].clone(),
                d_f: r.d_f,
                d_g: r.d_g,
            })
            .collect(),
    }))
}
