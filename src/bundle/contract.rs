//! The encoder contract, checked when a bundle loads: every encoder takes the manifest's
//! input (name, element type, layout, size, a dynamic batch axis) and has its outputs
//! ([`check_interface`]), and two real augmented views through it give two finite
//! representations of the same width as every other encoder's ([`check_running`]).
//! Each refusal names the file, the cause and the fix.

use std::path::Path;

use super::manifest::{Manifest, MANIFEST};
use crate::error::{Error, Result};
use crate::runtime::{EncoderSession, Layout};

/// The refusal of a model whose batch axis is fixed at 1, with the fix for both of
/// PyTorch's exporters (docs/bundle.md#bundles-from-elsewhere).
pub(super) const FIXED_BATCH: &str =
    "the batch axis is fixed at 1: export with a dynamic batch axis \
    (PyTorch: torch.onnx.export(..., dynamo=True, dynamic_shapes=({0: \
    torch.export.Dim('batch')},)), or dynamic_axes={'input': {0: 'batch'}} with dynamo=False; \
    see docs/bundle.md)";

/// The encoder contract, checked by running it: two real augmented views (of a smooth
/// gradient image at the model's size) through every encoder of the bundle in `dir` must give
/// two finite representations of the same width.
///
/// # Errors
/// [`Error::Bundle`] naming the encoder, the cause and the fix.
pub(super) fn check_running<'a>(
    dir: &Path,
    manifest: &Manifest,
    encoders: impl Iterator<Item = &'a EncoderSession>,
) -> Result<()> {
    let i = &manifest.input;
    let image = i
        .probe_image()
        .map_err(|e| Error::bundle(dir.join(MANIFEST), e.to_string()))?;
    let augmenter = crate::augment::Augmenter::new(manifest.augment(), i.height, i.width)?;
    let norm = crate::augment::Normalize::new(i.mean.clone(), i.std.clone(), i.channels)?;
    let len = i.channels * i.height * i.width;
    let mut views = vec![0f32; 2 * len];
    let planes = image.to_planes();
    for (v, dst) in views.chunks_exact_mut(len).enumerate() {
        norm.write(&augmenter.view(&planes, 0, image.identity(), v as u64), dst);
    }
    let output = &manifest.representation.output;
    let mut width = None;
    for enc in encoders {
        let bad = |reason: String| Error::bundle(&enc.path, reason);
        let reps = enc
            .embed(views.clone(), [2, i.channels, i.height, i.width], output)
            .map_err(|e| bad(format!("cannot run a batch of 2 views: {e}")))?;
        if reps.nrows() != 2 {
            return Err(bad(format!(
                "returned {} row(s) for 2 views: the graph does not keep the batch axis \
                     (a Reshape or Flatten with a fixed batch size?); export with a dynamic batch \
                     axis and reshape with -1 or the input's batch size",
                reps.nrows()
            )));
        }
        if reps.iter().any(|v| !v.is_finite()) {
            return Err(bad(format!(
                "output '{output}' is not finite (NaN or infinity) for real views; the \
                     model or its export is broken (a float16 overflow?)"
            )));
        }
        match width {
            None => width = Some(reps.ncols()),
            Some(w) if w != reps.ncols() => {
                return Err(bad(format!(
                    "representations are {} wide, the first encoder's {w}; all encoders of a \
                         bundle must match",
                    reps.ncols()
                )))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Checks that an encoder takes the manifest's input and produces its representation.
pub(super) fn check_interface(enc: &EncoderSession, m: &Manifest) -> Result<()> {
    let bad = |reason: String| Err(Error::bundle(&enc.path, reason));
    let i = &m.input;
    if enc.input.name != i.name {
        return bad(format!(
            "model input is '{}', the manifest says '{}'",
            enc.input.name, i.name
        ));
    }
    if enc.input.element_type() != Some(i.element) {
        return bad(format!(
            "model input is {}, the manifest says {:?}",
            enc.input.element, i.element
        ));
    }
    let want = match i.layout {
        Layout::Nchw => [i.channels, i.height, i.width],
        Layout::Nhwc => [i.height, i.width, i.channels],
    };
    let shape = &enc.input.shape;
    let fits = shape.len() == 4
        && shape[1..]
            .iter()
            .zip(want)
            .all(|(d, w)| d.is_none_or(|d| d == w));
    if !fits {
        return bad(format!(
            "model input shape {:?} does not take {:?} images of {}x{}x{} ({} layout)",
            shape,
            i.layout,
            i.channels,
            i.height,
            i.width,
            match i.layout {
                Layout::Nchw => "[batch, channels, height, width]",
                Layout::Nhwc => "[batch, height, width, channels]",
            }
        ));
    }
    if shape[0] == Some(1) {
        return bad(FIXED_BATCH.into());
    }
    let names: Vec<&str> = enc.outputs.iter().map(|o| o.name.as_str()).collect();
    for out in std::iter::once(&m.representation.output).chain(&m.representation.layers) {
        if !names.contains(&out.as_str()) {
            return bad(format!("model has no output '{out}' (it has {names:?})"));
        }
    }
    let rep = enc
        .outputs
        .iter()
        .find(|o| o.name == m.representation.output)
        .map(|o| o.shape.len());
    match (rep, m.representation.pooling) {
        (Some(2), _) | (Some(3), Some(_)) => Ok(()),
        (Some(3), None) => bad(format!(
            "representation output '{}' is a token output [batch, tokens, dim]: choose how \
             tokens become one representation (`--pooling cls`, `mean` or `flatten`)",
            m.representation.output
        )),
        _ => bad(format!(
            "representation output '{}' must be a matrix [batch, dim] (or tokens [batch, \
             tokens, dim] with a pooling)",
            m.representation.output
        )),
    }
}
