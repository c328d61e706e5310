//! The OpenAPI 3.1 description of the service and the Swagger UI page that renders it
//! (assets vendored from npm's `swagger-ui-dist`, served from the binary: nothing is
//! downloaded). `ROUTES` lists every route; a test checks it against the document.

use serde_json::{json, Value};

pub const SWAGGER_JS: &[u8] = include_bytes!("../../vendor/swagger-ui/swagger-ui-bundle.js");
pub const SWAGGER_CSS: &[u8] = include_bytes!("../../vendor/swagger-ui/swagger-ui.css");

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

/// (method, path) of every documented route.
pub const ROUTES: &[(&str, &str)] = &[
    ("post", "/v1/score"),
    ("post", "/v1/align"),
    ("post", "/v1/embed"),
    ("get", "/v1/bundle"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("get", "/docs"),
];

fn error_response(desc: &str) -> Value {
    json!({"description": desc, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn images_body(extra: Value) -> Value {
    let mut props = json!({
        "images": {"type": "array", "items": {"oneOf": [
            {"type": "string", "description": "base64 (or a data: URL) of an encoded image"},
            {"type": "object", "required": ["data"], "properties": {"name": {"type": "string"}, "data": {"type": "string"}}}
        ]}}
    });
    if let (Some(p), Some(e)) = (props.as_object_mut(), extra.as_object()) {
        p.extend(e.clone());
    }
    json!({
        "required": true,
        "content": {
            "multipart/form-data": {"schema": {"type": "object", "description": "one or more image file parts; parameters as text parts or in the query string"}},
            "application/json": {"schema": {"type": "object", "properties": props}}
        }
    })
}

fn common_errors() -> Value {
    json!({
        "400": error_response("malformed body"),
        "401": error_response("missing or wrong API key"),
        "413": error_response("body over the size limit"),
        "415": error_response("unsupported content type"),
        "422": error_response("bad image or parameter"),
        "429": error_response("too many concurrent requests (see Retry-After)"),
        "503": error_response("queue full, timed out, or draining (see Retry-After)")
    })
}

fn with_errors(ok: Value) -> Value {
    let mut r = common_errors();
    if let Some(m) = r.as_object_mut() {
        m.insert("200".into(), ok);
    }
    r
}

fn query_params(names: &[&str]) -> Value {
    let all = json!({
        "pairs": {"type": "integer", "minimum": 1, "description": "view pairs per image (K)"},
        "seed": {"type": "integer", "minimum": 0},
        "mode": {"type": "string", "enum": ["aug-vs-aug", "orig-vs-aug"]},
        "distance": {"type": "string", "enum": ["l2", "cosine", "l1"]},
        "normalize": {"type": "string", "enum": ["l2", "none"]},
        "side": {"type": "string", "enum": ["f", "g", "both"]}
    });
    Value::Array(
        names
            .iter()
            .map(|n| json!({"name": n, "in": "query", "required": false, "schema": all[*n]}))
            .collect(),
    )
}

pub fn document() -> Value {
    let score_result = json!({"type": "object", "properties": {
        "input": {"type": "string"}, "align_f": {"type": "number"}, "align_g": {"type": "number"},
        "score": {"type": "number", "description": "raw SSLMem score: align_g - align_f"},
        "score_ratio": {"type": "number"}, "stderr": {"type": ["number", "null"]},
        "ci95": {"type": ["array", "null"], "items": {"type": "number"}}, "pairs": {"type": "integer"}
    }});
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "sslmem",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "SSLMem memorization scores of images under an encoder pair (f trained with the data, g without)."
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error", "error_type"], "properties": {"error": {"type": "string"}, "error_type": {"type": "string"}}},
                "ScoreResult": score_result
            }
        },
        "paths": {
            "/v1/score": {"post": {
                "summary": "SSLMem scores of uploaded images (same numbers as `sslmem score`)",
                "security": [{"bearer": []}],
                "parameters": query_params(&["pairs", "seed", "mode", "distance", "normalize"]),
                "requestBody": images_body(json!({"pairs": {"type": "integer"}, "seed": {"type": "integer"}, "mode": {"type": "string"}, "distance": {"type": "string"}, "normalize": {"type": "string"}})),
                "responses": with_errors(json!({"description": "one result per image", "content": {"application/json": {"schema": {"type": "object", "properties": {
                    "bundle": {"type": ["string", "null"]}, "provider": {"type": "string"}, "params": {"type": "object"},
                    "results": {"type": "array", "items": {"$ref": "#/components/schemas/ScoreResult"}}}}}}}))
            }},
            "/v1/align": {"post": {
                "summary": "Distances of supplied image pairs under f and g, no augmentation (as `sslmem align`)",
                "security": [{"bearer": []}],
                "parameters": query_params(&["distance", "normalize"]),
                "requestBody": {"required": true, "content": {
                    "multipart/form-data": {"schema": {"type": "object", "description": "image parts in order a1, b1, a2, b2, ..."}},
                    "application/json": {"schema": {"type": "object", "properties": {"pairs": {"type": "array", "items": {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}}}}}}
                }},
                "responses": with_errors(json!({"description": "one result per pair: a, b, d_f, d_g", "content": {"application/json": {"schema": {"type": "object"}}}}))
            }},
            "/v1/embed": {"post": {
                "summary": "Representations of images (resized to the model's input, normalised) from f and/or g",
                "security": [{"bearer": []}],
                "parameters": query_params(&["side"]),
                "requestBody": images_body(json!({"side": {"type": "string"}})),
                "responses": with_errors(json!({"description": "per image, one vector per encoder of the chosen sides", "content": {"application/json": {"schema": {"type": "object"}}}}))
            }},
            "/v1/bundle": {"get": {
                "summary": "The manifest, the execution provider really in use, and the limits",
                "security": [{"bearer": []}],
                "responses": {"200": {"description": "bundle description", "content": {"application/json": {"schema": {"type": "object"}}}}, "401": error_response("missing or wrong API key")}
            }},
            "/healthz": {"get": {"summary": "Alive", "responses": {"200": {"description": "the process is up"}}}},
            "/readyz": {"get": {"summary": "Ready to score", "responses": {"200": {"description": "ready"}, "503": error_response("starting or draining")}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text exposition format", "content": {"text/plain": {}}}}}},
            "/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3.1"}}}},
            "/docs": {"get": {"summary": "Swagger UI", "responses": {"200": {"description": "HTML", "content": {"text/html": {}}}}}}
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented_and_nothing_else() {
        let doc = document();
        let paths = doc["paths"].as_object().expect("paths");
        for (method, path) in ROUTES {
            assert!(
                paths.get(*path).and_then(|p| p.get(*method)).is_some(),
                "{method} {path} undocumented"
            );
        }
        let n: usize = paths
            .values()
            .map(|p| p.as_object().map_or(0, |m| m.len()))
            .sum();
        assert_eq!(n, ROUTES.len());
    }
}
