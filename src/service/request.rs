//! Reading requests: images from `multipart/form-data` parts or base64 in JSON, and an
//! endpoint's own [`Params`] from the query string, multipart text fields or JSON fields.
//! Each endpoint's parameter type takes exactly its own names; any other is a 422.

use axum::body::to_bytes;
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::{header, StatusCode};
use base64::Engine;
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::error::ApiError;
use super::Limits;

/// One uploaded image: its name (file name, JSON `name`, or its position) and its bytes.
pub struct Upload {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// Where an endpoint's images are in a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Images {
    /// JSON `images: [Image]`; in multipart, every part that is not a parameter.
    List,
    /// JSON `pairs: [{a, b}]`; in multipart, the parts in order a1, b1, a2, b2, ...
    /// Uploads come back flattened the same way.
    Pairs,
}

/// Names of every endpoint's parameters: a multipart part without a file name and with one
/// of these names is a parameter (and an unknown one if the endpoint does not take it), any
/// other part is an image. (A unit test in `v1` checks this is the union of the endpoints'.)
pub const TEXT_FIELDS: &[&str] = &[
    "pairs",
    "seed",
    "mode",
    "distance",
    "normalize",
    "on_error",
    "side",
];

/// An endpoint's parameters; absent ones take the service's defaults.
pub trait Params: Default + utoipa::IntoParams {
    /// The endpoint's path, for messages and schema names.
    const ROUTE: &'static str;
    /// Name of the endpoint's request body schemas: `{NAME}Json`, `{NAME}Form`.
    const NAME: &'static str;
    /// The parameter names it takes.
    const NAMES: &'static [&'static str];
    /// Where its images are.
    const IMAGES: Images;
    /// Sets one parameter, checked against the server's `limits` wherever it came from (a
    /// value in the query string that the body overrides must still be valid); any name not
    /// in [`Self::NAMES`] is [`unknown`].
    fn set(&mut self, key: &str, value: Field<'_>, limits: &Limits) -> Result<(), ApiError>;
}

/// The error for a parameter that `P`'s endpoint does not take.
pub fn unknown<P: Params>(key: &str) -> ApiError {
    ApiError::invalid(format!(
        "unknown parameter '{key}'; {} takes {}",
        P::ROUTE,
        P::NAMES.join(", ")
    ))
}

/// One parameter's value as it came: text (query string, multipart field) or a JSON value.
#[derive(Clone, Copy, Debug)]
pub enum Field<'a> {
    Text(&'a str),
    Json(&'a Value),
}

impl Field<'_> {
    /// The value as the user wrote it, for messages.
    /// The value as an error message shows it: at most 64 characters (a part holding an
    /// image under a parameter's name is not echoed back whole).
    fn shown(&self) -> String {
        let full = match self {
            Field::Text(s) => (*s).to_string(),
            Field::Json(Value::String(s)) => s.clone(),
            Field::Json(v) => v.to_string(),
        };
        match full.char_indices().nth(64) {
            Some((cut, _)) => format!("{}...", &full[..cut]),
            None => full,
        }
    }

    /// A non-negative integer: text that parses as one, or a JSON number with no fraction
    /// (JSON Schema's integer: `2.0` is one), not a string. `what` names the kind for the
    /// message ("a positive integer").
    pub fn integer<T: TryFrom<u64> + std::str::FromStr>(
        &self,
        key: &str,
        what: &str,
    ) -> Result<T, ApiError> {
        // 2^64: the first f64 past u64::MAX.
        const END: f64 = 18_446_744_073_709_551_616.0;
        let parsed = match self {
            Field::Text(s) => s.parse().ok(),
            Field::Json(v) => v
                .as_u64()
                .or_else(|| {
                    v.as_f64()
                        .filter(|f| f.fract() == 0.0 && (0.0..END).contains(f))
                        .map(|f| f as u64)
                })
                .and_then(|n| T::try_from(n).ok()),
        };
        parsed.ok_or_else(|| ApiError::invalid(format!("{key}: '{}' is not {what}", self.shown())))
    }

    /// One of an enum's names (any case): text, or a JSON string.
    pub fn choice<T: crate::choice::Choice + serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<T, ApiError> {
        let text = match self {
            Field::Text(s) => Some(*s),
            Field::Json(Value::String(s)) => Some(s.as_str()),
            Field::Json(_) => None,
        };
        text.and_then(|t| crate::choice::from_text::<T>(t).ok())
            .ok_or_else(|| {
                ApiError::invalid(format!(
                    "{key}: '{}' is not one of {}",
                    self.shown(),
                    T::NAMES.join(", ")
                ))
            })
    }
}

/// Sets parameters from a query string (`a=1&b=2`, percent-decoded).
fn set_from_query<P: Params>(p: &mut P, q: Option<&str>, limits: &Limits) -> Result<(), ApiError> {
    for pair in q.unwrap_or_default().split('&').filter(|s| !s.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        p.set(&percent_decode(k), Field::Text(&percent_decode(v)), limits)?;
    }
    Ok(())
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

/// An image in a JSON body: base64 (or a `data:` URL), bare or with a name.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Image {
    /// Base64 of an encoded image (PNG, JPEG, GIF, BMP, TIFF, WebP, PNM), or a `data:` URL.
    #[schema(format = Byte)]
    Data(String),
    Named(NamedImage),
}

/// An image with the name its result carries (default `image#N`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NamedImage {
    pub name: Option<String>,
    /// Base64 of an encoded image, or a `data:` URL.
    #[schema(format = Byte)]
    pub data: String,
}

/// Two images whose distance `/v1/align` measures.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImagePair {
    pub a: Image,
    pub b: Image,
}

/// Base64 as clients really send it: the standard or the URL-safe alphabet, with or without
/// `=` padding, with line breaks (MIME's 76-column lines) or spaces anywhere, or a `data:` URL.
pub fn decode_b64(name: &str, data: &str) -> Result<Vec<u8>, ApiError> {
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    let payload = data.split_once(";base64,").map_or(data, |(_, d)| d);
    let compact: String = payload
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let bare = compact.trim_end_matches('=');
    let engine = if bare.contains(['-', '_']) {
        URL_SAFE_NO_PAD
    } else {
        STANDARD_NO_PAD
    };
    engine
        .decode(bare)
        .map_err(|e| ApiError::invalid(format!("{name}: invalid base64 ({e})")))
}

fn json_upload(img: Image, default_name: String) -> Result<Upload, ApiError> {
    let (name, data) = match img {
        Image::Data(d) => (default_name, d),
        Image::Named(NamedImage { name, data }) => (name.unwrap_or(default_name), data),
    };
    let bytes = decode_b64(&name, &data)?;
    Ok(Upload { name, bytes })
}

/// The images of a JSON body, from its `images` or `pairs` field.
fn json_images(kind: Images, v: Value) -> Result<Vec<Upload>, ApiError> {
    match kind {
        Images::List => {
            let list: Vec<Image> = serde_json::from_value(v)
                .map_err(|e| ApiError::bad_request(format!("invalid JSON body: images: {e}")))?;
            list.into_iter()
                .enumerate()
                .map(|(i, img)| json_upload(img, format!("image#{i}")))
                .collect()
        }
        Images::Pairs => {
            let pairs: Vec<ImagePair> = serde_json::from_value(v).map_err(|e| {
                ApiError::bad_request(format!(
                    "pairs: expected a list of {{\"a\", \"b\"}} images ({e})"
                ))
            })?;
            let mut out = Vec::with_capacity(2 * pairs.len());
            for (i, p) in pairs.into_iter().enumerate() {
                out.push(json_upload(p.a, format!("pair#{i}.a"))?);
                out.push(json_upload(p.b, format!("pair#{i}.b"))?);
            }
            Ok(out)
        }
    }
}

/// The JSON field holding an endpoint's images.
pub fn json_images_field(kind: Images) -> &'static str {
    match kind {
        Images::List => "images",
        Images::Pairs => "pairs",
    }
}

/// Reads a request's images and `P`'s parameters (query string first, then the body's).
pub async fn read<P: Params>(req: Request, limits: &Limits) -> Result<(Vec<Upload>, P), ApiError> {
    let max_body = limits.max_body_bytes;
    // Errors in parameters are reported only after the body is read, so that the client
    // gets the answer instead of a connection closed under its upload.
    let mut params = P::default();
    let query = set_from_query(&mut params, req.uri().query(), limits);
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
        let mut texts: Vec<(String, String)> = Vec::new();
        loop {
            let field = match mp.next_field().await {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => return Err(multipart_error(e.status(), e.body_text())),
            };
            let name = field.name().unwrap_or_default().to_string();
            let file = field.file_name().map(str::to_string);
            let bytes = field
                .bytes()
                .await
                .map_err(|e| multipart_error(e.status(), e.body_text()))?;
            // A text part without a file name is a parameter, known or not ("unknown parameter
            // NAME" beats "cannot decode image"); image bytes without a file name are an image.
            let is_param = file.is_none()
                && (TEXT_FIELDS.contains(&name.as_str())
                    || (image::guess_format(&bytes).is_err()
                        && std::str::from_utf8(&bytes).is_ok()));
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
        query?;
        for (k, v) in texts {
            params.set(&k, Field::Text(&v), limits)?;
        }
    } else if ctype.starts_with("application/json") {
        let body = to_bytes(req.into_body(), max_body).await.map_err(|_| {
            ApiError::too_large(format!(
                "request body is over the limit of {max_body} bytes"
            ))
        })?;
        let fields: Map<String, Value> = serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
        query?;
        let images = json_images_field(P::IMAGES);
        for (k, v) in fields {
            if k == images {
                uploads = json_images(P::IMAGES, v)?;
            } else {
                params.set(&k, Field::Json(&v), limits)?;
            }
        }
    } else {
        super::drain_body(req.into_body(), max_body).await;
        return Err(ApiError::unsupported_media_type(format!(
            "content type '{ctype}' is not supported: send multipart/form-data or application/json"
        )));
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
    use crate::score::{Distance, ViewMode};

    #[derive(Default, Debug, utoipa::IntoParams)]
    struct Demo {
        pairs: Option<usize>,
        #[param(value_type = Option<String>)]
        mode: Option<ViewMode>,
        #[param(value_type = Option<String>)]
        distance: Option<Distance>,
    }

    impl Params for Demo {
        const ROUTE: &'static str = "/demo";
        const NAME: &'static str = "Demo";
        const NAMES: &'static [&'static str] = &["pairs", "mode", "distance"];
        const IMAGES: Images = Images::List;
        fn set(&mut self, key: &str, v: Field<'_>, _: &Limits) -> Result<(), ApiError> {
            match key {
                "pairs" => self.pairs = Some(v.integer(key, "a positive integer")?),
                "mode" => self.mode = Some(v.choice(key)?),
                "distance" => self.distance = Some(v.choice(key)?),
                _ => return Err(unknown::<Self>(key)),
            }
            Ok(())
        }
    }

    #[test]
    fn query_parameters_parse_and_fail_clearly() {
        let limits = Limits::for_tests();
        let mut p = Demo::default();
        set_from_query(
            &mut p,
            Some("pairs=5&mode=orig-vs-aug&distance=Cosine"),
            &limits,
        )
        .expect("parse");
        assert_eq!(
            (p.pairs, p.mode, p.distance),
            (Some(5), Some(ViewMode::OrigVsAug), Some(Distance::Cosine))
        );
        let err = |q: &str| {
            set_from_query(&mut Demo::default(), Some(q), &limits)
                .expect_err(q)
                .message
        };
        assert_eq!(err("pairs=x"), "pairs: 'x' is not a positive integer");
        assert_eq!(
            err("mode=sideways"),
            "mode: 'sideways' is not one of aug-vs-aug, orig-vs-aug"
        );
        assert_eq!(
            err("colour=red"),
            "unknown parameter 'colour'; /demo takes pairs, mode, distance"
        );
        assert_eq!(percent_decode("a%2Db+c"), "a-b c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%é%4"), "%é%4");
    }

    #[test]
    fn json_values_keep_their_types() {
        let limits = Limits::for_tests();
        let json = |v: Value| {
            Demo::default()
                .set("pairs", Field::Json(&v), &limits)
                .map(|_| ())
        };
        assert!(json(serde_json::json!(3)).is_ok());
        assert!(
            json(serde_json::json!(3.0)).is_ok(),
            "an integer to JSON Schema"
        );
        for bad in [
            serde_json::json!("3"),
            serde_json::json!(1.5),
            serde_json::json!(-1),
            serde_json::json!(1e300),
        ] {
            assert!(json(bad.clone()).is_err(), "{bad}");
        }
        let mut p = Demo::default();
        assert!(p
            .set("mode", Field::Json(&serde_json::json!(1)), &limits)
            .is_err());
        assert!(p.set("mode", Field::Json(&Value::Null), &limits).is_err());
        p.set(
            "mode",
            Field::Json(&serde_json::json!("aug-vs-aug")),
            &limits,
        )
        .expect("a string");
        assert_eq!(p.mode, Some(ViewMode::AugVsAug));
    }
}
