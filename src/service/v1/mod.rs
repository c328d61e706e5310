//! The `/v1` endpoints, one file each: its parameter type (what the query string, multipart
//! text fields and JSON fields may set), its response type, and its thin handler. A new
//! endpoint is a new file here and one line in [`super::routes::api`].

pub mod align;
pub mod bundle;
pub mod embed;
pub mod score;

use std::borrow::Cow;
use std::marker::PhantomData;
use std::sync::Arc;

use rayon::prelude::*;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

use super::error::ApiError;
use super::request::Upload;
use super::AppState;
use crate::error::InputError;
use crate::pixels::{decode, SourceImage};
use crate::runtime::Provider;
use crate::score::{Distance, RepNorm, ViewMode};

fn check_count(state: &AppState, n: usize, what: &str) -> Result<(), ApiError> {
    let max = state.limits.max_images;
    if n == 0 {
        return Err(ApiError::invalid(format!("no {what} in the request")));
    }
    if n > max {
        return Err(ApiError::invalid(format!(
            "{n} {what} in one request; the limit is {max}"
        )));
    }
    Ok(())
}

/// Decodes every upload, in parallel on the worker pool, to the model's channel count: one
/// result per upload, in the order sent.
async fn decode_each(
    state: &Arc<AppState>,
    uploads: Vec<Upload>,
) -> Result<Vec<Result<SourceImage, InputError>>, ApiError> {
    let channels = state.bundle().manifest.input.channels;
    let limits = state.limits.decode;
    crate::engine::on_pool(move || {
        uploads
            .par_iter()
            .map(|u| decode(&u.bytes, channels, limits))
            .collect()
    })
    .await
    .map_err(|_| ApiError::internal("a worker stopped unexpectedly"))
}

/// Decodes the uploads ([`decode_each`]); the first bad image (in the order sent) fails the
/// request, naming it.
async fn decode_uploads(
    state: &Arc<AppState>,
    uploads: Vec<Upload>,
) -> Result<Vec<SourceImage>, ApiError> {
    let names: Vec<String> = uploads.iter().map(|u| u.name.clone()).collect();
    decode_each(state, uploads)
        .await?
        .into_iter()
        .zip(names)
        .map(|(d, name)| d.map_err(|e| ApiError::invalid(format!("{name}: {e}"))))
        .collect()
}

/// An enum parameter, parsed from its names (any case, through serde: [`crate::choice`]); its
/// schema is a named component listing them, with each one's help.
pub trait Choice: crate::choice::Choice + serde::de::DeserializeOwned {
    /// The component's name.
    const NAME: &'static str;
    /// What it chooses.
    const ABOUT: &'static str;
}

impl Choice for ViewMode {
    const NAME: &'static str = "ViewMode";
    const ABOUT: &'static str = "How the two views of a pair are made.";
}

impl Choice for Distance {
    const NAME: &'static str = "Distance";
    const ABOUT: &'static str = "Distance between two representations.";
}

impl Choice for RepNorm {
    const NAME: &'static str = "RepNorm";
    const ABOUT: &'static str = "What is done to each representation before the distance.";
}

impl Choice for score::OnError {
    const NAME: &'static str = "OnError";
    const ABOUT: &'static str =
        "What an image that cannot be decoded or scored does to the request.";
}

/// The schema of a [`Choice`] `T`.
pub struct ChoiceSchema<T>(PhantomData<T>);

impl<T: Choice> PartialSchema for ChoiceSchema<T> {
    fn schema() -> RefOr<Schema> {
        let values = T::offered();
        let help: Vec<String> = values
            .iter()
            .map(|v| match v.help() {
                Some(h) => format!("`{}`: {h}", v.name()),
                None => format!("`{}`", v.name()),
            })
            .collect();
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(T::NAMES.iter().map(|n| n.to_string())))
            .description(Some(format!("{} {}", T::ABOUT, help.join("; "))))
            .build()
            .into()
    }
}

impl<T: Choice> ToSchema for ChoiceSchema<T> {
    fn name() -> Cow<'static, str> {
        T::NAME.into()
    }
}

/// The schema of [`ViewMode`].
pub type ViewModeSchema = ChoiceSchema<ViewMode>;
/// The schema of [`Distance`].
pub type DistanceSchema = ChoiceSchema<Distance>;
/// The schema of [`RepNorm`].
pub type RepNormSchema = ChoiceSchema<RepNorm>;
/// The schema of [`score::OnError`].
pub type OnErrorSchema = ChoiceSchema<score::OnError>;

/// The schema of [`Provider`]: the execution provider really in use.
pub struct ProviderSchema;

impl PartialSchema for ProviderSchema {
    fn schema() -> RefOr<Schema> {
        let all = [Provider::Cpu, Provider::Cuda];
        // A new provider must be listed above: this match stops compiling until it is.
        let _ = |p: Provider| match p {
            Provider::Cpu | Provider::Cuda => (),
        };
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(all.iter().map(ToString::to_string)))
            .description(Some("The execution provider really in use."))
            .build()
            .into()
    }
}

impl ToSchema for ProviderSchema {
    fn name() -> Cow<'static, str> {
        "Provider".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::request::{Params, TEXT_FIELDS};

    #[test]
    fn multipart_text_fields_are_every_endpoints_parameters() {
        let mut all: Vec<&str> = [
            score::ScoreParams::NAMES,
            align::AlignParams::NAMES,
            embed::EmbedParams::NAMES,
        ]
        .concat();
        all.sort_unstable();
        all.dedup();
        let mut text = TEXT_FIELDS.to_vec();
        text.sort_unstable();
        assert_eq!(all, text);
    }

    /// The names `set` accepts are the names the document lists, and no others.
    fn names_match<P: Params>() {
        let limits = crate::service::Limits::for_tests();
        let documented: Vec<String> = P::into_params(|| None)
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(documented, P::NAMES, "{}", P::ROUTE);
        for n in P::NAMES {
            let err = P::default()
                .set(n, crate::service::request::Field::Text("?"), &limits)
                .expect_err("'?' is no value");
            assert!(
                !err.message.contains("unknown parameter"),
                "{n}: {}",
                err.message
            );
        }
        assert!(P::default()
            .set(
                "colour",
                crate::service::request::Field::Text("red"),
                &limits
            )
            .expect_err("unknown")
            .message
            .starts_with("unknown parameter 'colour'"));
    }

    #[test]
    fn each_endpoint_takes_exactly_its_documented_parameters() {
        names_match::<score::ScoreParams>();
        names_match::<align::AlignParams>();
        names_match::<embed::EmbedParams>();
    }
}
