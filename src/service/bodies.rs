//! The schemas of the `/v1` endpoints' request bodies (JSON and multipart, from each endpoint's
//! [`Params`]) and error responses, which the endpoints name in their `#[utoipa::path]`
//! attributes; bounds that are runtime configuration are marked here ([`Limit`]) and filled
//! in by [`super::openapi::document`].

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::marker::PhantomData;

use utoipa::openapi::extensions::ExtensionsBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::ParameterIn;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, KnownFormat, Object, ObjectBuilder, Schema, SchemaFormat,
    Type,
};
use utoipa::openapi::{ContentBuilder, Ref, RefOr};
use utoipa::{IntoResponses, PartialSchema, ToSchema};

use super::error::ErrorBody;
use super::request::{json_images_field, Image, ImagePair, Images, NamedImage, Params};

/// The key of the extension that marks a bound which is runtime configuration;
/// [`super::openapi::document`] replaces it with the bound.
pub const LIMIT: &str = "x-sslmem-limit";

/// Bounds that are runtime configuration.
#[derive(Clone, Copy, Debug)]
pub enum Limit {
    /// `maximum` = `--max-pairs`.
    Pairs,
    /// `maxItems` = `--max-images`.
    Images,
    /// `maxItems` = `--max-images` / 2 (align's pairs of images).
    ImagePairs,
}

impl Limit {
    pub const ALL: [Limit; 3] = [Limit::Pairs, Limit::Images, Limit::ImagePairs];

    /// The marker's value.
    pub fn name(self) -> &'static str {
        match self {
            Limit::Pairs => "max_pairs",
            Limit::Images => "max_images",
            Limit::ImagePairs => "max_image_pairs",
        }
    }

    fn marker(self) -> Option<utoipa::openapi::extensions::Extensions> {
        Some(ExtensionsBuilder::new().add(LIMIT, self.name()).build())
    }
}

/// The schema of the `pairs` parameter: view pairs per image, 1..=`--max-pairs`.
pub fn pairs_count() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .description(Some(
            "View pairs per image (K); default `--pairs`, at most `--max-pairs`.",
        ))
        .minimum(Some(1))
        .extensions(Limit::Pairs.marker())
        .build()
}

/// An image file part of a multipart body.
fn image_file() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
        .description(Some(
            "an encoded image (PNG, JPEG, GIF, BMP, TIFF, WebP, PNM)",
        ))
        .build()
}

/// `P`'s parameters as the properties of a request body object.
fn with_params<P: Params>(mut o: ObjectBuilder) -> ObjectBuilder {
    for p in P::into_params(|| Some(ParameterIn::Query)) {
        let mut schema = p.schema.unwrap_or_else(|| Object::new().into());
        match &mut schema {
            RefOr::T(Schema::Object(obj)) if obj.description.is_none() => {
                obj.description = p.description;
            }
            RefOr::Ref(r) if r.description.is_empty() => {
                r.description = p.description.unwrap_or_default();
            }
            _ => {}
        }
        o = o.property(p.name, schema);
    }
    o.additional_properties(Some(AdditionalProperties::FreeForm(false)))
}

/// The JSON request body of `P`'s endpoint: its images and its parameters.
pub struct JsonBody<P>(PhantomData<P>);

impl<P: Params> PartialSchema for JsonBody<P> {
    fn schema() -> RefOr<Schema> {
        let (items, limit, what) = match P::IMAGES {
            Images::List => (Image::name(), Limit::Images, "the images"),
            Images::Pairs => (
                ImagePair::name(),
                Limit::ImagePairs,
                "the image pairs, each of the model's input size",
            ),
        };
        let list = ArrayBuilder::new()
            .items(Ref::from_schema_name(items))
            .min_items(Some(1))
            .description(Some(what))
            .extensions(limit.marker());
        let field = json_images_field(P::IMAGES);
        let o = ObjectBuilder::new().property(field, list).required(field);
        with_params::<P>(o).build().into()
    }
}

impl<P: Params> ToSchema for JsonBody<P> {
    fn name() -> Cow<'static, str> {
        format!("{}Json", P::NAME).into()
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((Image::name().into(), Image::schema()));
        schemas.push((NamedImage::name().into(), NamedImage::schema()));
        schemas.push((ImagePair::name().into(), ImagePair::schema()));
    }
}

/// The multipart request body of `P`'s endpoint: image file parts and text parts for its
/// parameters.
pub struct FormBody<P>(PhantomData<P>);

impl<P: Params> PartialSchema for FormBody<P> {
    fn schema() -> RefOr<Schema> {
        let o = match P::IMAGES {
            Images::List => {
                let list = ArrayBuilder::new()
                    .items(image_file())
                    .min_items(Some(1))
                    .description(Some("the images, as file parts (any part name)"))
                    .extensions(Limit::Images.marker());
                ObjectBuilder::new()
                    .property("image", list)
                    .required("image")
            }
            // One pair here: more pairs follow as further parts in the order a, b, a, b, ...,
            // which no schema of named parts can say.
            Images::Pairs => ObjectBuilder::new()
                .property("a", image_file())
                .required("a")
                .property("b", image_file())
                .required("b"),
        };
        with_params::<P>(o).build().into()
    }
}

impl<P: Params> ToSchema for FormBody<P> {
    fn name() -> Cow<'static, str> {
        format!("{}Form", P::NAME).into()
    }
}

pub fn error_response(description: &str, retry_after: bool) -> RefOr<Response> {
    let mut r = ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name(ErrorBody::name())))
            .build(),
    );
    if retry_after {
        let seconds = ObjectBuilder::new().schema_type(Type::Integer).build();
        r = r.header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(seconds)
                .description(Some("seconds to wait before retrying"))
                .build(),
        );
    }
    r.build().into()
}

/// The errors of a handler that reads images and parameters and runs the encoders.
pub struct BodyErrors;

impl IntoResponses for BodyErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        [
            ("400", "Malformed JSON or multipart body.", false),
            (
                "415",
                "Neither multipart/form-data nor application/json.",
                false,
            ),
            (
                "422",
                "An image that cannot be decoded, is empty, is over --max-pixels or (align) \
                 is not the model's size (score with on_error=report: such an image gets an \
                 error entry in its slot instead); a bad or unknown parameter; invalid \
                 base64; no images or more than --max-images; pairs outside 1..=--max-pairs.",
                false,
            ),
            ("500", "A failure of the server; its log says more.", false),
        ]
        .into_iter()
        .map(|(s, d, r)| (s.to_string(), error_response(d, r)))
        .collect()
    }
}
