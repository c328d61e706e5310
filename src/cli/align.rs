//! `sslmem align`: distances of given image pairs under `f` and `g`, with no augmentation.

use std::io::Write;
use std::path::PathBuf;

use super::choice_arg::choice;
use clap::Args;
use serde_json::json;
use sslmem::data::inputs::Input;
use sslmem::engine::{Engine, QueueOptions};
use sslmem::error::{Error, Result};
use sslmem::pixels::DecodeLimits;
use sslmem::runtime::RuntimeOptions;
use sslmem::score::{Distance, RepNorm};

#[derive(Args, Debug)]
pub struct AlignArgs {
    #[arg(long, env = "SSLMEM_BUNDLE")]
    pub bundle: PathBuf,
    #[arg(long, env = "SSLMEM_DISTANCE", value_parser = choice::<Distance>(), default_value = "l2")]
    pub distance: Distance,
    #[arg(long, env = "SSLMEM_NORMALIZE", value_parser = choice::<RepNorm>(), default_value = "l2")]
    pub normalize: RepNorm,
    /// Pairs of images at the model's input size: A1 B1 [A2 B2 ...].
    #[arg(required = true, num_args = 2..)]
    pub images: Vec<PathBuf>,
}

pub fn run(a: &AlignArgs, rt: &RuntimeOptions) -> Result<()> {
    if !a.images.len().is_multiple_of(2) {
        return Err(Error::Param(format!(
            "align takes pairs of images; got {} paths",
            a.images.len()
        )));
    }
    let engine = Engine::load(&a.bundle, rt, QueueOptions::default())?;
    let c = engine.input().channels;
    let load = |p: &PathBuf| {
        Input::file(p.clone())
            .load(c, DecodeLimits::default())
            .map_err(|e| Error::Input {
                input: p.display().to_string(),
                source: e,
            })
    };
    let pairs = a
        .images
        .chunks_exact(2)
        .map(|p| Ok((load(&p[0])?, load(&p[1])?)))
        .collect::<Result<Vec<_>>>()?;
    let res = engine.align(&pairs, a.normalize, a.distance)?;
    let mut stdout = std::io::stdout().lock();
    for (p, r) in a.images.chunks_exact(2).zip(res) {
        let line = json!({"a": p[0].display().to_string(), "b": p[1].display().to_string(), "d_f": r.d_f, "d_g": r.d_g});
        writeln!(stdout, "{line}").map_err(|e| Error::io("<stdout>", e))?;
    }
    Ok(())
}
