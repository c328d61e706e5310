//! Reading requests: images from `multipart/form-data` parts or base64 in JSON, and the
//! scoring parameters from the query string, multipart text fields or JSON fields.

use axum::body::to_bytes;
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::{header, StatusCode};
use base64::Engine;
use clap::ValueEnum;
use serde::Deserialize;

use super::error::ApiError;
use crate::score::{Distance, RepNorm, ViewMode};

/// One uploaded image: its name (file name, JSON `name`, or its position) and its bytes.
pub struct Upload {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// Parameters a request may set; absent ones take the service's defaults.
#[derive(Default, Debug)]
pub struct Params {
    pub pairs: Option<usize>,
    pub seed: Option<u64>,
    pub mode: Option<ViewMode>,
    pub distance: Option<Distance>,
    pub normalize: Option<RepNorm>,
    pub side: Option<String>,
}

fn parse_enum<T: ValueEnum>(key: &str, v: &str) -> Result<T, ApiError> {
    T::from_str(v, true).map_err(|_| {
        let allowed: Vec<String> = T::value_variants()
            .iter()
            .filter_map(|x| x.to_possible_value().map(|p| p.get_name().to_string()))
            .collect();
        ApiError::invalid(format!("{key}: '{v}' is not one of {}", allowed.join(", ")))
    })
}

impl Params {
    /// Sets one parameter from its text form.
    pub fn set(&mut self, key: &str, v: &str) -> Result<(), ApiError> {
        let num = |what: &str| ApiError::invalid(format!("{key}: '{v}' is not {what}"));
        match key {
            "pairs" => self.pairs = Some(v.parse().map_err(|_| num("a positive integer"))?),
            "seed" => self.seed = Some(v.parse().map_err(|_| num("an unsigned integer"))?),
            "mode" => self.mode = Some(parse_enum(key, v)?),
            "distance" => self.distance = Some(parse_enum(key, v)?),
            "normalize" => self.normalize = Some(parse_enum(key, v)?),
            "side" => self.side = Some(v.to_string()),
            other => return Err(ApiError::invalid(format!("unknown parameter '{other}'"))),
        }
        Ok(())
    }

    /// Parameters from a query string (`a=1&b=2`, percent-decoded).
    pub fn from_query(q: Option<&str>) -> Result<Self, ApiError> {
        let mut p = Params::default();
        for pair in q.unwrap_or_default().split('&').filter(|s| !s.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            p.set(&percent_decode(k), &percent_decode(v))?;
        }
        Ok(p)
    }
}

fn percent_decode(s: &str) -> String {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push(h * 16 + l);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[derive(Deserialize)]
#[serde(untagged)]
enum JsonImage {
    Plain(String),
    Named { name: Option<String>, data: String },
}

#[derive(Deserialize)]
struct JsonPair {
    a: JsonImage,
    b: JsonImage,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonBody {
    #[serde(default)]
    images: Vec<JsonImage>,
    /// `align`: image pairs; `score`: the number of view pairs.
    #[serde(default)]
    pairs: Option<serde_json::Value>,
    seed: Option<u64>,
    mode: Option<String>,
    distance: Option<String>,
    normalize: Option<String>,
    side: Option<String>,
}

fn decode_b64(name: &str, data: &str) -> Result<Vec<u8>, ApiError> {
    // Accept data URLs too: "data:image/png;base64,...."
    let payload = data.split_once(";base64,").map_or(data, |(_, d)| d);
    base64::engine::general_purpose::STANDARD
        .decode(payload.trim())
        .map_err(|e| ApiError::invalid(format!("{name}: invalid base64 ({e})")))
}

fn json_upload(img: JsonImage, default_name: String) -> Result<Upload, ApiError> {
    let (name, data) = match img {
        JsonImage::Plain(d) => (default_name, d),
        JsonImage::Named { name, data } => (name.unwrap_or(default_name), data),
    };
    let bytes = decode_b64(&name, &data)?;
    Ok(Upload { name, bytes })
}

/// Reads a request's images and parameters. For `align`, JSON `pairs` is a list of
/// `{a, b}` images and the uploads come back flattened `a1, b1, a2, b2, ...`.
pub async fn read(
    req: Request,
    max_body: usize,
    align: bool,
) -> Result<(Vec<Upload>, Params), ApiError> {
    // Errors in parameters are reported only after the body is read, so that the client
    // gets the answer instead of a connection closed under its upload.
    let query = Params::from_query(req.uri().query());
    let mut params;
    let mut texts: Vec<(String, String)> = Vec::new();
    let ctype = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let mut uploads = Vec::new();
    if ctype.starts_with("multipart/form-data") {
        let mut mp = Multipart::from_request(req, &())
            .await
            .map_err(|e| ApiError::bad_request(format!("bad multipart body: {e}")))?;
        loop {
            let field = match mp.next_field().await {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => return Err(multipart_error(e.status(), e.body_text())),
            };
            let name = field.name().unwrap_or_default().to_string();
            let file = field.file_name().map(str::to_string);
            let is_param = file.is_none()
                && matches!(
                    name.as_str(),
                    "pairs" | "seed" | "mode" | "distance" | "normalize" | "side"
                );
            let bytes = field
                .bytes()
                .await
                .map_err(|e| multipart_error(e.status(), e.body_text()))?;
            if is_param {
                texts.push((name, String::from_utf8_lossy(&bytes).trim().to_string()));
            } else {
                let n = uploads.len();
                uploads.push(Upload {
                    name: file.unwrap_or_else(|| format!("{name}#{n}")),
                    bytes: bytes.to_vec(),
                });
            }
        }
        params = query?;
        for (k, v) in texts {
            params.set(&k, &v)?;
        }
    } else if ctype.starts_with("application/json") {
        let body = to_bytes(req.into_body(), max_body).await.map_err(|_| {
            ApiError::too_large(format!(
                "request body is over the limit of {max_body} bytes"
            ))
        })?;
        let j: JsonBody = serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
        params = query?;
        for (i, img) in j.images.into_iter().enumerate() {
            uploads.push(json_upload(img, format!("image#{i}"))?);
        }
        match (align, j.pairs) {
            (true, Some(v)) => {
                let pairs: Vec<JsonPair> = serde_json::from_value(v).map_err(|e| {
                    ApiError::bad_request(format!(
                        "pairs: expected a list of {{\"a\", \"b\"}} images ({e})"
                    ))
                })?;
                for (i, p) in pairs.into_iter().enumerate() {
                    uploads.push(json_upload(p.a, format!("pair#{i}.a"))?);
                    uploads.push(json_upload(p.b, format!("pair#{i}.b"))?);
                }
            }
            (false, Some(v)) => {
                let n = v.as_u64().ok_or_else(|| {
                    ApiError::invalid(format!("pairs: '{v}' is not a positive integer"))
                })?;
                params.pairs = Some(n as usize);
            }
            (_, None) => {}
        }
        if let Some(s) = j.seed {
            params.seed = Some(s);
        }
        for (k, v) in [
            ("mode", j.mode),
            ("distance", j.distance),
            ("normalize", j.normalize),
            ("side", j.side),
        ] {
            if let Some(v) = v {
                params.set(k, &v)?;
            }
        }
    } else {
        super::drain_body(req.into_body(), max_body).await;
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("content type '{ctype}' is not supported: send multipart/form-data or application/json"),
        ));
    }
    Ok((uploads, params))
}

fn multipart_error(status: StatusCode, text: String) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::too_large(format!("request body is over the limit ({text})"))
    } else {
        ApiError::bad_request(format!("bad multipart body: {text}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_parse_and_fail_clearly() {
        let p = Params::from_query(Some("pairs=5&mode=orig-vs-aug&distance=cosine&seed=7"))
            .expect("parse");
        assert_eq!(
            (p.pairs, p.seed, p.mode, p.distance),
            (
                Some(5),
                Some(7),
                Some(ViewMode::OrigVsAug),
                Some(Distance::Cosine)
            )
        );
        assert!(Params::from_query(Some("pairs=x")).is_err());
        assert!(Params::from_query(Some("mode=sideways")).is_err());
        assert!(Params::from_query(Some("colour=red")).is_err());
        assert_eq!(percent_decode("a%2Db+c"), "a-b c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%é%4"), "%é%4");
    }
}
