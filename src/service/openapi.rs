//! The OpenAPI 3.1 document, generated with utoipa from the route table
//! ([`super::routes::api`]) and the request and response types, then completed at start-up
//! with what is runtime configuration: the limits (`--max-pairs`, `--max-images`, marked in
//! the endpoints' schemas by [`super::bodies`]) and, only when `--api-key` is set, bearer
//! security.

use serde_json::{json, Value};
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::OpenApi;
use utoipa::OpenApi as _;

use super::bodies::{error_response, Limit, LIMIT};
use super::error::{ErrorBody, ErrorType};
use super::v1;

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
        v1::ProviderSchema,
        v1::score::EstimatorSchema
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

/// The keyword and value `limit` takes under `cfg`.
fn keyword(limit: Limit, cfg: &DocConfig) -> (&'static str, usize) {
    match limit {
        Limit::Pairs => ("maximum", cfg.max_pairs),
        Limit::Images => ("maxItems", cfg.max_images),
        Limit::ImagePairs => ("maxItems", cfg.max_images / 2),
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
                    let (k, n) = keyword(l, cfg);
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
                {"$ref": "#/components/schemas/OneModelResult"},
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
