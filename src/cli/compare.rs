//! `sslmem compare`: the agreement of two audits' scores on the images both scored.

use std::io::Write as _;
use std::path::PathBuf;

use clap::Args;
use sslmem::audit::compare::compare;
use sslmem::audit::SplitSet;
use sslmem::error::{Error, Result};

use super::choice_arg::choice;

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// The first audit's folder (its scores.csv); its rows of --set are compared.
    pub a: PathBuf,
    /// The second audit's folder; its rows are matched to the first's by input name, in any
    /// set (a many-model audit's `pool`, another pair's `candidate`).
    pub b: PathBuf,
    /// The first audit's set.
    #[arg(long, env = "SSLMEM_COMPARE_SET", value_parser = choice::<SplitSet>(), default_value = "candidate")]
    pub set: SplitSet,
    /// Top fractions whose overlap is reported, comma-separated.
    #[arg(
        long,
        env = "SSLMEM_COMPARE_TOP",
        value_delimiter = ',',
        default_value = "0.1"
    )]
    pub top: Vec<f64>,
    /// Write the comparison as JSON instead of text.
    #[arg(long, env = "SSLMEM_COMPARE_JSON")]
    pub json: bool,
}

pub fn run(a: &CompareArgs) -> Result<()> {
    let c = compare(&a.a, &a.b, a.set, &a.top)?;
    let text = if a.json {
        serde_json::to_string_pretty(&c).map_err(|e| Error::output("JSON", e))? + "\n"
    } else {
        let mut t = format!(
            "{} ({}) against {}: {} images scored by both\n",
            a.a.display(),
            c.set,
            a.b.display(),
            c.n
        );
        match &c.spearman {
            Some(s) => t += &format!("  Spearman rho {:+.3}, p {:.2e}\n", s.rho, s.p_two_sided),
            None => t += "  Spearman: undefined (fewer than 3 images, or no spread)\n",
        }
        for o in &c.top {
            t += &format!(
                "  top {:.0}% (k = {}): {} in both, {:.1} expected by chance, P(at least {}) = {:.2e}\n",
                o.fraction * 100.0,
                o.k,
                o.overlap,
                o.chance,
                o.overlap,
                o.p_chance
            );
        }
        t
    };
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    Ok(())
}
