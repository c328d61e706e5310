//! One-model scores: an image's alignment under `f` alone, calibrated against a reference
//! population of images from the same distribution that `f` did not see
//! (docs/science.md#one-model-scores). None of these is SSLMem, which needs an encoder `g`
//! trained without the image; they are what an auditor with only the deployed encoder can
//! compute, in the spirit of difficulty calibration of membership inference (Watson et al.
//! 2022, "On the Importance of Difficulty Calibration in Membership Inference Attacks") and of
//! EncoderMI's alignment signal (Liu et al. 2021).
//!
//! Lower alignment distance means the views of an image land closer together under `f`, which
//! is what training on the image does; so each calibrated score is oriented so that **higher
//! means more member-like**, like the SSLMem score.

/// The fraction of `reference` alignments at or below `align`, counting ties as half (the
/// mid-rank percentile), in [0, 1]. Low: `f` aligns the image more tightly than most reference
/// images. `None` for an empty or non-finite reference.
///
/// Example: `align_percentile(0.2, &[0.1, 0.2, 0.3, 0.4])` is `(1 + 0.5) / 4 = 0.375`.
pub fn align_percentile(align: f64, reference: &[f64]) -> Option<f64> {
    if reference.is_empty() || !align.is_finite() {
        return None;
    }
    let mut below = 0.0;
    for &r in reference {
        if !r.is_finite() {
            return None;
        }
        if r < align {
            below += 1.0;
        } else if r == align {
            below += 0.5;
        }
    }
    Some(below / reference.len() as f64)
}

/// The indices of the `k` rows of `reference` nearest to `query` by Euclidean distance (rows
/// and query as given: pass L2-normalised representations for cosine neighbours), nearest
/// first, ties broken by index. Fewer when the reference has fewer rows.
///
/// `reference` holds `n` rows of `query.len()` values each, row-major.
pub fn nearest(query: &[f32], reference: &[f32], k: usize) -> Vec<usize> {
    let d = query.len();
    if d == 0 {
        return Vec::new();
    }
    let mut dist: Vec<(f64, usize)> = reference
        .chunks_exact(d)
        .enumerate()
        .map(|(i, row)| {
            let s: f64 = row
                .iter()
                .zip(query)
                .map(|(a, b)| {
                    let x = f64::from(*a) - f64::from(*b);
                    x * x
                })
                .sum();
            (s, i)
        })
        .collect();
    dist.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    dist.into_iter().take(k).map(|(_, i)| i).collect()
}

/// The local calibration of one image's alignment: the mean alignment of its `k` nearest
/// reference images (in `f`'s representation) minus its own, so positive means `f` aligns it
/// more tightly than the images that look like it, as SSLMem's `align_g - align_f` does with
/// `g` in the place of the neighbours. `None` without neighbours or with non-finite values.
///
/// `neighbours` are indices into `reference_align`, as [`nearest`] returns them.
pub fn knn_gap(align: f64, neighbours: &[usize], reference_align: &[f64]) -> Option<f64> {
    if neighbours.is_empty() || !align.is_finite() {
        return None;
    }
    let mut sum = 0.0;
    for &i in neighbours {
        let a = *reference_align.get(i)?;
        if !a.is_finite() {
            return None;
        }
        sum += a;
    }
    Some(sum / neighbours.len() as f64 - align)
}

/// Neighbours of the local calibration unless the user asks for another number.
pub const DEFAULT_KNN: usize = 10;

/// An image's one-model scores against a [`Reference`] (docs/science.md#one-model-scores);
/// `None` where the reference cannot give one (too few usable reference images).
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Calibrated {
    /// [`align_percentile`] of the image's `align_f` among the reference's, in [0, 1]; low is
    /// member-like.
    pub align_f_percentile: Option<f64>,
    /// [`knn_gap`] over its `k` nearest reference images in `f`'s representation; high is
    /// member-like.
    pub knn_gap: Option<f64>,
}

/// The reference population: each reference image's alignment under `f`, its representation
/// under `f` (l2-normalised, row-major, `dim` values each) and its name, so that an audited
/// image that is also a reference image is calibrated against the others (leave-self-out).
#[derive(Clone, Debug, Default)]
pub struct Reference {
    align: Vec<f64>,
    reps: Vec<f32>,
    names: Vec<String>,
    dim: usize,
}

impl Reference {
    /// From `(name, align_f, representation)` of each reference image; representations are
    /// l2-normalised here. Images with a non-finite alignment or representation, or one of
    /// another length than the first, are left out.
    pub fn new<'a>(images: impl IntoIterator<Item = (&'a str, f64, &'a [f32])>) -> Self {
        let mut r = Self::default();
        for (name, align, rep) in images {
            if r.dim == 0 {
                r.dim = rep.len();
            }
            let finite = align.is_finite() && rep.iter().all(|v| v.is_finite());
            if !finite || rep.len() != r.dim || r.dim == 0 {
                continue;
            }
            let norm = rep.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            r.reps.extend(rep.iter().map(|v| v / norm));
            r.align.push(align);
            r.names.push(name.to_string());
        }
        r
    }

    /// Reference images kept.
    pub fn len(&self) -> usize {
        self.align.len()
    }

    pub fn is_empty(&self) -> bool {
        self.align.is_empty()
    }

    /// The reference's alignments under `f`, in order.
    pub fn alignments(&self) -> &[f64] {
        &self.align
    }

    /// The one-model scores of an image named `name` with alignment `align` and
    /// representation `rep` under `f`, against its `k` nearest reference images. A reference
    /// image of the same name is left out of both calibrations.
    pub fn calibrate(&self, name: &str, align: f64, rep: Option<&[f32]>, k: usize) -> Calibrated {
        let own = self.names.iter().position(|n| n == name);
        let others: Vec<f64> = match own {
            Some(i) => self
                .align
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .map(|(_, a)| *a)
                .collect(),
            None => self.align.clone(),
        };
        let knn_gap = rep
            .filter(|r| r.len() == self.dim && k > 0 && r.iter().all(|v| v.is_finite()))
            .and_then(|r| {
                let norm = r.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
                let q: Vec<f32> = r.iter().map(|v| v / norm).collect();
                let mut near = nearest(&q, &self.reps, k + usize::from(own.is_some()));
                near.retain(|&j| Some(j) != own);
                near.truncate(k);
                knn_gap(align, &near, &self.align)
            });
        Calibrated {
            align_f_percentile: align_percentile(align, &others),
            knn_gap,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_percentile_counts_lower_alignments_and_half_the_ties() {
        assert_eq!(align_percentile(0.2, &[0.1, 0.2, 0.3, 0.4]), Some(0.375));
        assert_eq!(align_percentile(0.05, &[0.1, 0.2]), Some(0.0));
        assert_eq!(align_percentile(0.5, &[0.1, 0.2]), Some(1.0));
        assert_eq!(align_percentile(0.1, &[0.1, 0.1]), Some(0.5));
        assert_eq!(align_percentile(0.1, &[]), None);
        assert_eq!(align_percentile(f64::NAN, &[0.1]), None);
        assert_eq!(align_percentile(0.1, &[f64::NAN]), None);
    }

    #[test]
    fn neighbours_are_the_closest_rows_nearest_first() {
        // Rows (0, 0), (1, 0), (0, 3), (1, 1) against the query (0.9, 0.2).
        let reference = [0.0, 0.0, 1.0, 0.0, 0.0, 3.0, 1.0, 1.0];
        let q = [0.9, 0.2];
        assert_eq!(nearest(&q, &reference, 2), vec![1, 3]);
        assert_eq!(nearest(&q, &reference, 10), vec![1, 3, 0, 2]);
        // Equal distances: the lower index first.
        assert_eq!(nearest(&[0.5, 0.0], &reference, 2), vec![0, 1]);
        assert!(nearest(&[], &reference, 2).is_empty());
    }

    #[test]
    fn the_knn_gap_is_the_neighbours_mean_alignment_minus_the_images() {
        let reference_align = [0.4, 0.2, 0.9, 0.6];
        // Neighbours 1 and 3: mean 0.4; the image's alignment 0.25.
        let gap = knn_gap(0.25, &[1, 3], &reference_align).expect("gap");
        assert!((gap - 0.15).abs() < 1e-12);
        assert_eq!(knn_gap(0.25, &[], &reference_align), None);
        assert_eq!(knn_gap(0.25, &[7], &reference_align), None);
    }

    #[test]
    fn a_reference_calibrates_by_hand_and_leaves_an_image_out_of_its_own_calibration() {
        // Three reference images on the unit circle's axes (scaled: they are normalised).
        let reps: [&[f32]; 4] = [&[2.0, 0.0], &[0.0, 1.0], &[-1.0, 0.0], &[1.0, 1.0]];
        let names = ["a", "b", "c", "bad"];
        let aligns = [0.2, 0.4, 0.6, f64::NAN];
        let r = Reference::new(
            names
                .iter()
                .zip(aligns)
                .zip(reps)
                .map(|((n, a), r)| (*n, a, r)),
        );
        assert_eq!(r.len(), 3, "the image with a NaN alignment is left out");
        // A new image near `a` then `b`: percentile (0.2 and 0.4 below 0.5) 2/3; neighbours
        // a, b: mean 0.3, gap 0.3 - 0.5.
        let c = r.calibrate("new", 0.5, Some(&[1.0, 0.1]), 2);
        assert!((c.align_f_percentile.expect("p") - 2.0 / 3.0).abs() < 1e-12);
        assert!((c.knn_gap.expect("gap") - (0.3 - 0.5)).abs() < 1e-12);
        // `a` itself: compared with b and c only; its nearest other is b (or c: tie at
        // distance sqrt 2, b first by index), so the gap is 0.4 - 0.2.
        let c = r.calibrate("a", 0.2, Some(&[1.0, 0.0]), 1);
        assert_eq!(c.align_f_percentile, Some(0.0));
        assert!((c.knn_gap.expect("gap") - 0.2).abs() < 1e-12);
        // No representation: no local calibration, the percentile still.
        let c = r.calibrate("new", 0.5, None, 2);
        assert!(c.knn_gap.is_none() && c.align_f_percentile.is_some());
        assert_eq!(
            Reference::new([]).calibrate("x", 0.1, None, 3),
            Calibrated::default()
        );
    }
}
