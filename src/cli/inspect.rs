//! `sslmem inspect`: a bundle's manifest, its encoders' inputs and outputs, and the runtime.

use std::path::PathBuf;

use clap::Args;
use serde_json::{json, Value};
use sslmem::bundle::Bundle;
use sslmem::error::{Error, Result};
use sslmem::runtime::{self, RuntimeOptions};

#[derive(Args, Debug)]
pub struct InspectArgs {
    #[arg(long, env = "SSLMEM_BUNDLE")]
    pub bundle: PathBuf,
}

pub fn run(a: &InspectArgs, rt: &RuntimeOptions) -> Result<()> {
    let bundle = Bundle::load(&a.bundle, rt)?;
    let encoders: Vec<Value> = bundle
        .f
        .iter()
        .map(|e| ("f", e))
        .chain(bundle.g.iter().map(|e| ("g", e)))
        .map(|(side, e)| {
            json!({"side": side, "path": e.path.display().to_string(), "input": e.input, "outputs": e.outputs, "provider": e.provider})
        })
        .collect();
    let report = json!({
        "bundle": bundle.dir.display().to_string(),
        "manifest": bundle.manifest,
        "augment_in_use": bundle.manifest.augment(),
        // What is suspicious without being invalid (identical f and g encoders).
        "warnings": bundle.manifest.warnings(),
        "encoders": encoders,
        "runtime": {
            "onnxruntime": runtime::ORT_VERSION,
            "library": runtime::loaded_library().map(|p| p.display().to_string()),
            "device": rt.device.to_string(),
            "provider": bundle.f[0].provider,
            "threads": rt.threads,
        },
    });
    let text = serde_json::to_string_pretty(&report).map_err(|e| Error::output("the report", e))?;
    println!("{text}");
    Ok(())
}
