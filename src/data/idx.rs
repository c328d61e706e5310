//! The IDX format of MNIST and Fashion-MNIST (optionally gzip-compressed).

use std::fs;
use std::io::Read;
use std::path::Path;

use flate2::read::GzDecoder;

use super::ImageArray;
use crate::error::{Error, Result};

fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = fs::read(path).map_err(|e| Error::io(path, e))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| Error::io(path, e))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

fn be_u32(b: &[u8], at: usize) -> Option<usize> {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]) as usize)
}

/// Parses an IDX file of unsigned bytes: returns its dimensions and data.
pub fn parse(bytes: &[u8]) -> std::result::Result<(Vec<usize>, &[u8]), String> {
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        return Err("not an IDX file (bad magic)".into());
    }
    if bytes[2] != 0x08 {
        return Err(format!(
            "IDX element type 0x{:02x} is not unsigned bytes",
            bytes[2]
        ));
    }
    let rank = bytes[3] as usize;
    let dims: Vec<usize> = (0..rank)
        .map(|i| be_u32(bytes, 4 + 4 * i))
        .collect::<Option<_>>()
        .ok_or("truncated IDX header")?;
    let start = 4 + 4 * rank;
    let n = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or("IDX dimensions overflow")?;
    let data = bytes
        .get(start..start + n)
        .ok_or_else(|| format!("IDX data truncated: need {n} bytes after the header"))?;
    Ok((dims, data))
}

/// Loads an images file (`[n, h, w]`) and, if given, its labels file (`[n]`).
pub fn load(name: &str, images: &Path, labels: Option<&Path>) -> Result<ImageArray> {
    let bad = |reason: String| Error::Dataset {
        name: name.into(),
        reason,
    };
    let raw = read_maybe_gz(images)?;
    let (dims, data) = parse(&raw).map_err(|e| bad(format!("{}: {e}", images.display())))?;
    let [_, h, w] = dims[..] else {
        return Err(bad(format!(
            "{}: images file has dimensions {dims:?}, expected [n, h, w]",
            images.display()
        )));
    };
    let labels = match labels {
        Some(p) => {
            let raw = read_maybe_gz(p)?;
            let (ldims, l) = parse(&raw).map_err(|e| bad(format!("{}: {e}", p.display())))?;
            if ldims != [dims[0]] {
                return Err(bad(format!(
                    "{} labels for {} images",
                    ldims.first().copied().unwrap_or(0),
                    dims[0]
                )));
            }
            Some(l.to_vec())
        }
        None => None,
    };
    Ok(ImageArray {
        name: name.into(),
        channels: 1,
        height: h,
        width: w,
        pixels: data.to_vec(),
        labels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_small_idx_and_rejects_bad_ones() {
        let mut b = vec![0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2];
        b.extend([1, 2, 3, 4]);
        let (dims, data) = parse(&b).expect("parse");
        assert_eq!(dims, [2, 1, 2]);
        assert_eq!(data, [1, 2, 3, 4]);
        assert!(parse(&b[..18]).is_err(), "truncated data");
        assert!(parse(&[1, 2, 3]).is_err());
        let mut f32_type = b.clone();
        f32_type[2] = 0x0D;
        assert!(parse(&f32_type).is_err());
    }
}
