//! The OpenAPI 3.1 document, generated with utoipa from the route table
//! ([`super::routes::api`]) and the request and response types, then completed at start-up
//! with what is runtime configuration: the limits (`--max-pairs`, `--max-images`) and, only
//! when `--api-key` is set, bearer security. Also the Swagger UI page that renders it (assets
//! vendored from npm's `swagger-ui-dist`, served from the binary: nothing is downloaded).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::marker::PhantomData;

use serde_json::{json, Value};
use utoipa::openapi::extensions::ExtensionsBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, ParameterIn, PathItem};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, KnownFormat, Object, ObjectBuilder, Schema, SchemaFormat,
    Type,
};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr};
use utoipa::{IntoResponses, OpenApi as _, PartialSchema, ToSchema};

use super::error::{ErrorBody, ErrorType};
use super::request::{json_images_field, Image, ImagePair, Images, NamedImage, Params};
use super::v1;

/// Swagger UI's script.
pub const SWAGGER_JS: &[u8] = include_bytes!("../../vendor/swagger-ui/swagger-ui-bundle.js");
/// Swagger UI's style sheet.
pub const SWAGGER_CSS: &[u8] = include_bytes!("../../vendor/swagger-ui/swagger-ui.css");

/// The `/docs` page: Swagger UI over `/openapi.json`.
pub const DOCS_HTML: &str = r##"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>sslmem API</title>
  <link rel="stylesheet" href="/docs/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui" });
  </script>
</body>
</html>
"##;

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "sslmem",
        description = "SSLMem memorization scores of images under an encoder pair \
                       (f trained with the data, g without)."
    ),
    // Schemas that only parameters refer to (utoipa collects those of bodies and responses).
    components(schemas(
        ErrorBody,
        ErrorType,
        v1::ViewModeSchema,
        v1::DistanceSchema,
        v1::RepNormSchema,
        v1::OnErrorSchema,
        v1::embed::SideSchema,
        v1::ProviderSchema
    ))
)]
struct ApiDoc;

/// What the document depends on besides the code: the server's configuration.
#[derive(Clone, Copy, Debug)]
pub struct DocConfig {
    /// `--max-images`.
    pub max_images: usize,
    /// `--max-pairs`.
    pub max_pairs: usize,
    /// Whether `--api-key` is set (then `/v1/*` declares bearer security and 401).
    pub api_key: bool,
}

/// The key of the extension that marks a bound which is runtime configuration; [`document`]
/// replaces it with the bound.
const LIMIT: &str = "x-sslmem-limit";

/// Bounds that are runtime configuration.
#[derive(Clone, Copy, Debug)]
enum Limit {
    /// `maximum` = `--max-pairs`.
    Pairs,
    /// `maxItems` = `--max-images`.
    Images,
    /// `maxItems` = `--max-images` / 2 (align's pairs of images).
    ImagePairs,
}

impl Limit {
    const ALL: [Limit; 3] = [Limit::Pairs, Limit::Images, Limit::ImagePairs];

    fn name(self) -> &'static str {
        match self {
            Limit::Pairs => "max_pairs",
            Limit::Images => "max_images",
            Limit::ImagePairs => "max_image_pairs",
        }
    }

    fn marker(self) -> Option<utoipa::openapi::extensions::Extensions> {
        Some(ExtensionsBuilder::new().add(LIMIT, self.name()).build())
    }

    /// The keyword and value this bound takes under `cfg`.
    fn keyword(self, cfg: &DocConfig) -> (&'static str, usize) {
        match self {
            Limit::Pairs => ("maximum", cfg.max_pairs),
            Limit::Images => ("maxItems", cfg.max_images),
            Limit::ImagePairs => ("maxItems", cfg.max_images / 2),
        }
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

fn error_response(description: &str, retry_after: bool) -> RefOr<Response> {
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

/// The errors of the guard in front of every `/v1` route, and its security.
fn guard(item: &mut PathItem, api_key: bool) {
    let ops = [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.patch,
    ];
    for op in ops.into_iter().flatten() {
        let op: &mut Operation = op;
        let r = &mut op.responses.responses;
        r.insert(
            "413".into(),
            error_response("The body is over --max-body-bytes.", false),
        );
        r.insert(
            "429".into(),
            error_response(
                "More than --max-concurrent requests in flight (see Retry-After).",
                true,
            ),
        );
        r.insert(
            "503".into(),
            error_response(
                "The inference queue is full, the request took longer than \
                 --request-timeout, or the server is shutting down (see Retry-After).",
                true,
            ),
        );
        if api_key {
            r.insert(
                "401".into(),
                error_response(
                    "Missing or wrong API key (Authorization: Bearer <key>).",
                    false,
                ),
            );
            op.security = Some(vec![SecurityRequirement::new(
                "bearer",
                Vec::<String>::new(),
            )]);
        }
    }
}

/// Names each binary part of every multipart body as an image (`encoding.contentType`), so
/// that clients and test generators send images there.
fn image_parts(doc: &mut Value) {
    let schemas = doc
        .pointer("/components/schemas")
        .cloned()
        .unwrap_or(Value::Null);
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for op in paths.values_mut().filter_map(Value::as_object_mut) {
        for method in op.values_mut() {
            let Some(form) = method.pointer_mut("/requestBody/content/multipart~1form-data") else {
                continue;
            };
            let Some(props) = form
                .pointer("/schema/$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix("#/components/schemas/"))
                .and_then(|name| schemas.get(name))
                .and_then(|s| s.get("properties"))
                .and_then(Value::as_object)
            else {
                continue;
            };
            let encoding: serde_json::Map<String, Value> = props
                .iter()
                .filter(|(_, s)| s["format"] == "binary" || s["items"]["format"] == "binary")
                .map(|(k, _)| (k.clone(), json!({"contentType": "image/*"})))
                .collect();
            if let Some(f) = form.as_object_mut() {
                f.insert("encoding".into(), Value::Object(encoding));
            }
        }
    }
}

/// Replaces each [`LIMIT`] marker with its bound under `cfg`.
fn fill_limits(v: &mut Value, cfg: &DocConfig) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(name)) = m.remove(LIMIT) {
                if let Some(l) = Limit::ALL.into_iter().find(|l| l.name() == name) {
                    let (k, n) = l.keyword(cfg);
                    m.insert(k.into(), n.into());
                }
            }
            m.values_mut().for_each(|x| fill_limits(x, cfg));
        }
        Value::Array(a) => a.iter_mut().for_each(|x| fill_limits(x, cfg)),
        _ => {}
    }
}

/// The document as utoipa generates it from the route table, the `/v1` routes guarded.
pub fn generated(api_key: bool) -> OpenApi {
    let api = super::routes::api();
    let mut guarded = api.guarded.into_openapi();
    for item in guarded.paths.paths.values_mut() {
        guard(item, api_key);
    }
    let mut doc = ApiDoc::openapi();
    doc.merge(guarded);
    doc.merge(api.open.into_openapi());
    if api_key {
        if let Some(c) = doc.components.as_mut() {
            c.add_security_scheme(
                "bearer",
                SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
            );
        }
    }
    doc
}

/// The document `/openapi.json` serves under `cfg`.
pub fn document(cfg: &DocConfig) -> Value {
    let mut doc = serde_json::to_value(generated(cfg.api_key)).unwrap_or_else(|e| {
        // utoipa's types always serialize; keep serving rather than fail start-up.
        tracing::error!("cannot serialize the OpenAPI document: {e}");
        Value::Null
    });
    image_parts(&mut doc);
    fill_limits(&mut doc, cfg);
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: DocConfig = DocConfig {
        max_images: 7,
        max_pairs: 9,
        api_key: false,
    };

    /// The schema of the request body of `POST path` as `media`.
    fn body_of<'a>(doc: &'a Value, path: &str, media: &str) -> &'a Value {
        let r = doc["paths"][path]["post"]["requestBody"]["content"][media]["schema"]["$ref"]
            .as_str()
            .and_then(|r| r.strip_prefix("#/components/schemas/"))
            .expect("a $ref");
        &doc["components"]["schemas"][r]
    }

    fn walk<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
        out.push(v);
        match v {
            Value::Object(m) => m.values().for_each(|x| walk(x, out)),
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }

    #[test]
    fn limits_are_the_servers() {
        let doc = document(&CFG);
        let text = doc.to_string();
        assert!(!text.contains(LIMIT), "a limit left unfilled");
        let query = doc["paths"]["/v1/score"]["post"]["parameters"]
            .as_array()
            .expect("parameters");
        let pairs = query.iter().find(|p| p["name"] == "pairs").expect("pairs");
        assert_eq!(
            (&pairs["schema"]["minimum"], &pairs["schema"]["maximum"]),
            (&json!(1), &json!(9))
        );
        for (path, media, field, max) in [
            ("/v1/score", "application/json", "images", 7),
            ("/v1/score", "multipart/form-data", "image", 7),
            ("/v1/embed", "application/json", "images", 7),
            ("/v1/embed", "multipart/form-data", "image", 7),
            ("/v1/align", "application/json", "pairs", 3),
        ] {
            let s = &body_of(&doc, path, media)["properties"][field];
            assert_eq!(
                (&s["minItems"], &s["maxItems"]),
                (&json!(1), &json!(max)),
                "{path} {media}"
            );
        }
        let score = body_of(&doc, "/v1/score", "application/json");
        assert_eq!(score["properties"]["pairs"]["maximum"], 9);
        assert_eq!(score["additionalProperties"], false);
        assert_eq!(score["required"], json!(["images"]));
        assert_eq!(
            score["properties"]["mode"]["$ref"],
            "#/components/schemas/ViewMode"
        );
        assert_eq!(
            doc["components"]["schemas"]["ViewMode"]["enum"],
            json!(["aug-vs-aug", "orig-vs-aug"])
        );
        // on_error: a parameter of score only, with its choices; results are scores or
        // error entries.
        assert_eq!(
            score["properties"]["on_error"]["$ref"],
            "#/components/schemas/OnError"
        );
        assert_eq!(
            doc["components"]["schemas"]["OnError"]["enum"],
            json!(["fail", "report"])
        );
        assert!(query.iter().any(|p| p["name"] == "on_error"));
        assert!(body_of(&doc, "/v1/embed", "application/json")["properties"]
            .get("on_error")
            .is_none());
        let schemas = &doc["components"]["schemas"];
        assert_eq!(
            schemas["ScoreResponse"]["properties"]["results"]["items"]["$ref"],
            "#/components/schemas/ScoreEntry"
        );
        assert_eq!(
            schemas["ScoreEntry"]["oneOf"],
            json!([
                {"$ref": "#/components/schemas/ScoreResult"},
                {"$ref": "#/components/schemas/ImageFailure"}
            ]),
            "{}",
            schemas["ScoreEntry"]
        );
        assert_eq!(
            schemas["ImageFailure"]["required"],
            json!(["index", "input", "error", "error_type"])
        );
        assert_eq!(
            doc["components"]["schemas"]["ImageErrorType"]["enum"],
            json!(["undecodable", "empty", "too_large", "not_finite"])
        );
        let form = &doc["paths"]["/v1/align"]["post"]["requestBody"]["content"]
            ["multipart/form-data"]["encoding"];
        assert_eq!(form["a"]["contentType"], "image/*");
    }

    #[test]
    fn every_reference_resolves() {
        let doc = document(&CFG);
        let mut all = Vec::new();
        walk(&doc, &mut all);
        for r in all
            .iter()
            .filter_map(|v| v.get("$ref"))
            .filter_map(Value::as_str)
        {
            let name = r.strip_prefix("#/components/schemas/").expect(r);
            assert!(
                doc["components"]["schemas"].get(name).is_some(),
                "{r} does not resolve"
            );
        }
    }

    #[test]
    fn bearer_security_only_with_a_key() {
        let open = document(&CFG);
        let mut all = Vec::new();
        walk(&open, &mut all);
        assert!(
            all.iter()
                .all(|v| v.get("security").is_none() && v.get("securitySchemes").is_none()),
            "no key, no security"
        );
        assert!(open["paths"]["/v1/score"]["post"]["responses"]
            .get("401")
            .is_none());
        let keyed = document(&DocConfig {
            api_key: true,
            ..CFG
        });
        assert_eq!(
            keyed["components"]["securitySchemes"]["bearer"],
            json!({"type": "http", "scheme": "bearer"})
        );
        for (path, item) in keyed["paths"].as_object().expect("paths") {
            for op in item.as_object().expect("item").values() {
                let guarded = path.starts_with("/v1/");
                assert_eq!(op.get("security").is_some(), guarded, "{path}");
                assert_eq!(op["responses"].get("401").is_some(), guarded, "{path}");
            }
        }
    }

    #[test]
    fn every_error_response_is_an_error_body() {
        let doc = document(&CFG);
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for op in item.as_object().expect("item").values() {
                let responses = op["responses"].as_object().expect("responses");
                assert!(responses.contains_key("200"), "{path}");
                for (status, r) in responses.iter().filter(|(s, _)| s.as_str() >= "400") {
                    assert_eq!(
                        r["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/ErrorBody",
                        "{path} {status}"
                    );
                }
                if path.starts_with("/v1/") {
                    for s in ["413", "429", "503"] {
                        assert!(responses.contains_key(s), "{path} {s}");
                    }
                }
            }
        }
        let body_routes = ["/v1/score", "/v1/align", "/v1/embed"];
        for path in body_routes {
            let r = &doc["paths"][path]["post"]["responses"];
            for s in ["400", "415", "422", "500"] {
                assert!(r.get(s).is_some(), "{path} {s}");
            }
        }
    }
}
