//! The reference population of a one-model service (`sslmem serve --reference`): scored once
//! at start-up with the server's default estimator settings, then each `/v1/score` request
//! on the one-model bundle is calibrated against it (docs/science.md#one-model-scores).

use crate::data::inputs::resolve;
use crate::engine::{Engine, Preprocess};
use crate::error::{Error, Result};
use crate::pixels::{DecodeLimits, SourceImage};
use crate::score::calibrate::{Calibrated, Reference};
use crate::score::ScoreOptions;

/// A scored reference population and the settings its alignments were computed with.
pub struct ServiceReference {
    pub reference: Reference,
    /// The estimator settings of the reference's alignments: a request's calibration is
    /// given only when its settings are these.
    pub opts: ScoreOptions,
    /// Neighbours of `knn_gap`.
    pub knn: usize,
}

impl ServiceReference {
    /// Scores `inputs` (files, folders, datasets) under `engine`'s `f` with `opts`.
    ///
    /// # Errors
    /// [`Error::Param`] when the inputs cannot be resolved or fewer than two images can be
    /// scored; engine errors as [`Engine::align_views_each`].
    pub fn build(
        engine: &Engine,
        inputs: &[String],
        opts: &ScoreOptions,
        knn: usize,
        limits: DecodeLimits,
    ) -> Result<Self> {
        let resolved = resolve(inputs).map_err(|e| Error::Param(format!("--reference: {e}")))?;
        let channels = engine.input().channels;
        let mut names = Vec::new();
        let mut images: Vec<SourceImage> = Vec::new();
        for input in resolved {
            match input.load(channels, limits) {
                Ok(img) => {
                    names.push(input.name.clone());
                    images.push(img);
                }
                Err(e) => tracing::warn!(input = %input.name, "reference image skipped: {e}"),
            }
        }
        tracing::info!(images = images.len(), "scoring the reference population");
        let aligned = engine.align_views_each(&images, opts, &|_| {})?;
        let reps = engine.embed_unchecked(&images, Preprocess::Resize)?;
        let f = reps
            .f
            .first()
            .ok_or_else(|| Error::Param("the bundle has no f encoder".into()))?;
        let rows: Vec<Vec<f32>> = f.rows().into_iter().map(|r| r.to_vec()).collect();
        let reference = Reference::new(
            names
                .iter()
                .zip(&aligned)
                .zip(&rows)
                .filter_map(|((n, a), r)| {
                    Some((n.as_str(), a.as_ref().ok()?.align_f, r.as_slice()))
                }),
        );
        if reference.len() < 2 {
            return Err(Error::Param(format!(
                "--reference {}: {} images could be scored; at least 2 are needed",
                inputs.join(" "),
                reference.len()
            )));
        }
        Ok(Self {
            reference,
            opts: opts.clone(),
            knn,
        })
    }

    /// Whether a request scored with `opts` can be calibrated against this reference.
    pub fn applies(&self, opts: &ScoreOptions) -> bool {
        *opts == self.opts
    }

    /// The calibration of an image named `name` with alignment `align` and representation
    /// `rep` under `f`.
    pub fn calibrate(&self, name: &str, align: f64, rep: &[f32]) -> Calibrated {
        self.reference.calibrate(name, align, Some(rep), self.knn)
    }
}
