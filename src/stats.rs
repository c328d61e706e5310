//! Statistics of an audit: descriptive summaries and the two-sample tests that compare the
//! scores of one split set against another (docs/science.md#expected-signs: candidate above
//! shared and extra, independent below). Conventions follow SciPy's (`numpy.quantile` linear
//! interpolation, `scipy.stats.ttest_ind`, `scipy.stats.mannwhitneyu`), so figures can be
//! checked there.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, Normal, StudentsT};

/// Count, mean, sample standard deviation and quantiles of a sample.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Describe {
    pub count: usize,
    pub mean: f64,
    /// Sample standard deviation (n - 1 in the denominator); `None` below two values.
    pub sd: Option<f64>,
    pub min: f64,
    pub q05: f64,
    pub q25: f64,
    pub median: f64,
    pub q75: f64,
    pub q95: f64,
    pub max: f64,
}

/// Mean and sample variance (`None` below two values).
fn mean_var(x: &[f64]) -> (f64, Option<f64>) {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let var = (x.len() > 1).then(|| x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0));
    (mean, var)
}

/// The `p` quantile of sorted values with linear interpolation (NumPy's default).
pub fn quantile_sorted(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let h = (sorted.len() - 1) as f64 * p.clamp(0.0, 1.0);
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

/// Describes `x`; `None` for an empty sample. Non-finite values must be filtered first.
pub fn describe(x: &[f64]) -> Option<Describe> {
    if x.is_empty() {
        return None;
    }
    let mut s = x.to_vec();
    s.sort_by(f64::total_cmp);
    let (mean, var) = mean_var(x);
    let q = |p| quantile_sorted(&s, p);
    Some(Describe {
        count: x.len(),
        mean,
        sd: var.map(f64::sqrt),
        min: s[0],
        q05: q(0.05),
        q25: q(0.25),
        median: q(0.5),
        q75: q(0.75),
        q95: q(0.95),
        max: s[s.len() - 1],
    })
}

/// [`Describe`] without its count: the fields an audit's `summary.json` writes after a group's
/// own `count`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    pub mean: f64,
    /// Sample standard deviation; `None` below two values.
    pub sd: Option<f64>,
    pub min: f64,
    /// Quantiles (linear interpolation, as NumPy's default): 5%, 25%, 50%, 75%, 95%.
    pub q05: f64,
    pub q25: f64,
    pub median: f64,
    pub q75: f64,
    pub q95: f64,
    pub max: f64,
}

impl From<Describe> for Spread {
    fn from(d: Describe) -> Self {
        Self {
            mean: d.mean,
            sd: d.sd,
            min: d.min,
            q05: d.q05,
            q25: d.q25,
            median: d.median,
            q75: d.q75,
            q95: d.q95,
            max: d.max,
        }
    }
}

/// p-values of a test statistic for the three alternatives, about the first sample
/// (`greater`: its location is above the second's).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PValues {
    pub two_sided: f64,
    pub greater: f64,
    pub less: f64,
}

impl PValues {
    fn from_tails(greater: f64, less: f64) -> Self {
        Self {
            two_sided: (2.0 * greater.min(less)).min(1.0),
            greater,
            less,
        }
    }
}

/// A two-sample t-test.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TTest {
    pub t: f64,
    pub df: f64,
    pub p: PValues,
}

fn t_pvalues(t: f64, df: f64) -> Option<PValues> {
    let dist = StudentsT::new(0.0, 1.0, df).ok()?;
    Some(PValues::from_tails(dist.sf(t), dist.cdf(t)))
}

/// Student's t-test with pooled variance (`ttest_ind(a, b, equal_var=True)`); `None` when a
/// sample has fewer than two values or both have no spread.
pub fn student_t(a: &[f64], b: &[f64]) -> Option<TTest> {
    let ((ma, va), (mb, vb)) = (mean_var(a), mean_var(b));
    let (va, vb) = (va?, vb?);
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let df = na + nb - 2.0;
    let pooled = ((na - 1.0) * va + (nb - 1.0) * vb) / df;
    let se = (pooled * (1.0 / na + 1.0 / nb)).sqrt();
    if se.is_nan() || se <= 0.0 {
        return None;
    }
    let t = (ma - mb) / se;
    Some(TTest {
        t,
        df,
        p: t_pvalues(t, df)?,
    })
}

/// Welch's t-test (`ttest_ind(a, b, equal_var=False)`), degrees of freedom by
/// Welch–Satterthwaite.
pub fn welch_t(a: &[f64], b: &[f64]) -> Option<TTest> {
    let ((ma, va), (mb, vb)) = (mean_var(a), mean_var(b));
    let (va, vb) = (va?, vb?);
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let (sa, sb) = (va / na, vb / nb);
    let se2 = sa + sb;
    if se2.is_nan() || se2 <= 0.0 {
        return None;
    }
    let df = se2 * se2 / (sa * sa / (na - 1.0) + sb * sb / (nb - 1.0));
    let t = (ma - mb) / se2.sqrt();
    Some(TTest {
        t,
        df,
        p: t_pvalues(t, df)?,
    })
}

/// One-sample t-test of the mean against zero.
pub fn one_sample_t(x: &[f64]) -> Option<TTest> {
    let (m, v) = mean_var(x);
    let se = (v? / x.len() as f64).sqrt();
    if se.is_nan() || se <= 0.0 {
        return None;
    }
    let df = x.len() as f64 - 1.0;
    let t = m / se;
    Some(TTest {
        t,
        df,
        p: t_pvalues(t, df)?,
    })
}

/// The mean of a sample with its 95% interval, and the smallest true mean a design with this
/// many values and this spread would detect (two-sided α = 0.05, power 0.8).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct MeanInterval {
    pub n: usize,
    pub mean: f64,
    /// Sample standard deviation (n - 1 in the denominator).
    pub sd: f64,
    /// `mean ± t(0.975, n-1) sd / sqrt(n)`.
    pub ci95: [f64; 2],
    /// `(t(0.975, n-1) + t(0.8, n-1)) sd / sqrt(n)`: the usual approximation of the minimum
    /// detectable effect of a one-sample (or paired) t-test (e.g. Cohen 1988, ch. 2), with t
    /// quantiles in place of normal ones for a small n.
    pub minimum_detectable: f64,
    /// The one-sample t-test against 0 (`None` when the values have no spread).
    pub t_test: Option<TTest>,
}

/// [`MeanInterval`] of `x`; `None` below two values or with a non-finite one.
pub fn mean_interval(x: &[f64]) -> Option<MeanInterval> {
    if x.len() < 2 || x.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let (mean, var) = mean_var(x);
    let sd = var?.sqrt();
    let df = (x.len() - 1) as f64;
    let t = StudentsT::new(0.0, 1.0, df).ok()?;
    let se = sd / (x.len() as f64).sqrt();
    let half = t.inverse_cdf(0.975) * se;
    Some(MeanInterval {
        n: x.len(),
        mean,
        sd,
        ci95: [mean - half, mean + half],
        minimum_detectable: (t.inverse_cdf(0.975) + t.inverse_cdf(0.8)) * se,
        t_test: one_sample_t(x),
    })
}

/// Which distribution the Mann–Whitney p-values come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MwuMethod {
    /// The exact null distribution of U (no ties, a sample smaller than 8, as SciPy's `auto`).
    Exact,
    /// The normal approximation with tie and continuity corrections.
    Asymptotic,
}

/// The Mann–Whitney U test.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct MannWhitney {
    /// U of the first sample: pairs `(a_i, b_j)` with `a_i > b_j`, ties counting one half.
    pub u: f64,
    pub method: MwuMethod,
    pub p: PValues,
}

/// Mann–Whitney U, choosing the method as SciPy's `method="auto"` does.
pub fn mann_whitney(a: &[f64], b: &[f64]) -> Option<MannWhitney> {
    let (u, tie_term) = u_statistic(a, b)?;
    let exact = tie_term == 0.0 && a.len().min(b.len()) < 8;
    mann_whitney_with(a, b, u, tie_term, exact)
}

/// Mann–Whitney U with the method given (`exact` needs samples without ties).
pub fn mann_whitney_method(a: &[f64], b: &[f64], method: MwuMethod) -> Option<MannWhitney> {
    let (u, tie_term) = u_statistic(a, b)?;
    mann_whitney_with(a, b, u, tie_term, method == MwuMethod::Exact)
}

fn mann_whitney_with(
    a: &[f64],
    b: &[f64],
    u: f64,
    tie_term: f64,
    exact: bool,
) -> Option<MannWhitney> {
    let (m, n) = (a.len(), b.len());
    if exact {
        if tie_term != 0.0 {
            return None;
        }
        let pmf = u_null_pmf(m, n);
        // U of a sample without ties is an integer.
        let k = (u.round() as usize).min(pmf.len() - 1);
        let greater: f64 = pmf[k..].iter().sum();
        let less: f64 = pmf[..=k].iter().sum();
        return Some(MannWhitney {
            u,
            method: MwuMethod::Exact,
            p: PValues::from_tails(greater.min(1.0), less.min(1.0)),
        });
    }
    let (mf, nf) = (m as f64, n as f64);
    let total = mf + nf;
    let mu = mf * nf / 2.0;
    let var = mf * nf / 12.0 * ((total + 1.0) - tie_term / (total * (total - 1.0)));
    if var.is_nan() || var <= 0.0 {
        return None;
    }
    let sd = var.sqrt();
    let normal = Normal::new(0.0, 1.0).ok()?;
    // Continuity-corrected tails; the two-sided p uses the larger of U and mn - U (SciPy).
    let greater = normal.sf((u - mu - 0.5) / sd);
    let less = normal.cdf((u - mu + 0.5) / sd);
    let two_sided = (2.0 * normal.sf((u.max(mf * nf - u) - mu - 0.5) / sd)).min(1.0);
    let p = PValues {
        two_sided,
        greater,
        less,
    };
    let method = MwuMethod::Asymptotic;
    Some(MannWhitney { u, method, p })
}

/// Spearman's rank correlation with its two-sided p-value (t distribution with n - 2 degrees
/// of freedom, as `scipy.stats.spearmanr`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Spearman {
    pub rho: f64,
    pub p_two_sided: f64,
    pub n: usize,
}

/// Mid-ranks (1-based) of `x`.
fn ranks(x: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut r = vec![0f64; x.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && x[order[j + 1]] == x[order[i]] {
            j += 1;
        }
        let mid = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            r[k] = mid;
        }
        i = j + 1;
    }
    r
}

/// Spearman's rho of paired samples; `None` below three pairs or without spread.
pub fn spearman(x: &[f64], y: &[f64]) -> Option<Spearman> {
    let n = x.len();
    if n != y.len() || n < 3 {
        return None;
    }
    let (rx, ry) = (ranks(x), ranks(y));
    let (mx, my) = (mean_var(&rx).0, mean_var(&ry).0);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in rx.iter().zip(&ry) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    if sxx <= 0.0 || syy <= 0.0 {
        return None;
    }
    let rho = (sxy / (sxx * syy).sqrt()).clamp(-1.0, 1.0);
    let df = n as f64 - 2.0;
    let p_two_sided = if rho.abs() >= 1.0 {
        0.0
    } else {
        let t = rho * (df / (1.0 - rho * rho)).sqrt();
        t_pvalues(t, df)?.two_sided
    };
    Some(Spearman {
        rho,
        p_two_sided,
        n,
    })
}

/// U of the first sample and the tie term `sum(t^3 - t)` over groups of tied values.
pub(crate) fn u_statistic(a: &[f64], b: &[f64]) -> Option<(f64, f64)> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let mut all: Vec<(f64, bool)> = a
        .iter()
        .map(|&v| (v, true))
        .chain(b.iter().map(|&v| (v, false)))
        .collect();
    all.sort_by(|x, y| x.0.total_cmp(&y.0));
    // Mid-ranks (1-based) and the tie term.
    let (mut rank_sum_a, mut tie_term) = (0.0, 0.0);
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j + 1 < all.len() && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let t = (j - i + 1) as f64;
        let mid = (i + j) as f64 / 2.0 + 1.0;
        rank_sum_a += mid * all[i..=j].iter().filter(|x| x.1).count() as f64;
        tie_term += t * t * t - t;
        i = j + 1;
    }
    let m = a.len() as f64;
    Some((rank_sum_a - m * (m + 1.0) / 2.0, tie_term))
}

/// The null distribution of U for samples of sizes `m` and `n` (probabilities of U = 0..=mn):
/// the coefficients of the Gaussian binomial `[m + n choose m]_q`, normalised.
fn u_null_pmf(m: usize, n: usize) -> Vec<f64> {
    let (m, n) = (m.min(n), m.max(n));
    // Before each division the degree is i*n + i, at most m*n + m.
    let mut c = vec![0f64; m * n + m + 1];
    c[0] = 1.0;
    let mut deg = 0;
    for i in 1..=m {
        // Multiply by (1 - q^(n+i)) ...
        for k in (n + i..=deg + n + i).rev() {
            c[k] -= c[k - n - i];
        }
        deg += n + i;
        // ... and divide by (1 - q^i), exactly.
        for k in i..=deg {
            c[k] += c[k - i];
        }
        deg -= i;
        let total: f64 = c[..=deg].iter().sum();
        c[..=deg].iter_mut().for_each(|v| *v /= total);
    }
    c.truncate(m * n + 1);
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mean_interval_matches_a_hand_computation() {
        // [1, 2, 3, 4]: mean 2.5, sd sqrt(5/3) = 1.290994, se 0.645497; t(0.975, 3) =
        // 3.182446, t(0.8, 3) = 0.978472 (tables; scipy.stats.t.ppf).
        let m = mean_interval(&[1.0, 2.0, 3.0, 4.0]).expect("interval");
        assert_eq!(m.n, 4);
        assert!((m.mean - 2.5).abs() < 1e-12);
        assert!((m.sd - 1.290_994).abs() < 1e-6);
        assert!((m.ci95[0] - (2.5 - 3.182_446 * 0.645_497)).abs() < 1e-5);
        assert!((m.ci95[1] - (2.5 + 3.182_446 * 0.645_497)).abs() < 1e-5);
        assert!((m.minimum_detectable - (3.182_446 + 0.978_472) * 0.645_497).abs() < 1e-5);
        assert!(m.t_test.is_some());
        assert!(mean_interval(&[1.0]).is_none());
        assert!(mean_interval(&[1.0, f64::NAN]).is_none());
        // No spread: a zero-width interval, no test.
        let flat = mean_interval(&[0.5, 0.5, 0.5]).expect("interval");
        assert_eq!(flat.ci95, [0.5, 0.5]);
        assert!(flat.t_test.is_none());
    }

    // Reference values below are SciPy 1.x's (scipy.stats.ttest_ind, mannwhitneyu) and
    // NumPy's (quantile, std with ddof=1) for the same samples.
    const A: [f64; 7] = [0.12, 0.35, 0.08, 0.41, 0.27, 0.19, 0.33];
    const B: [f64; 6] = [0.05, 0.11, -0.02, 0.09, 0.14, 0.01];

    fn close(a: f64, b: f64, tol: f64) {
        assert!((a - b).abs() <= tol * b.abs().max(1e-12), "{a} vs {b}");
    }

    #[test]
    fn describe_matches_numpy() {
        let x = [3.1, 0.2, -1.4, 2.2, 5.0, 0.0, 1.1, 7.5, -0.3, 2.8];
        let d = describe(&x).expect("some");
        close(d.mean, 2.02, 1e-12);
        close(d.sd.expect("sd"), 2.708_751_249_807_433_8, 1e-12);
        close(d.q05, -0.905, 1e-12);
        close(d.q25, 0.05, 1e-12);
        close(d.median, 1.65, 1e-12);
        close(d.q75, 3.025, 1e-12);
        close(d.q95, 6.375, 1e-12);
        assert_eq!((d.min, d.max, d.count), (-1.4, 7.5, 10));
        assert!(describe(&[]).is_none());
        assert_eq!(describe(&[4.0]).expect("one").sd, None);
        let t = one_sample_t(&x).expect("t");
        close(t.t, 2.358_208_740_649_123_2, 1e-12);
        close(t.p.greater, 0.021_363_293_305_529_2, 1e-9);
    }

    #[test]
    fn student_and_welch_match_scipy() {
        let s = student_t(&A, &B).expect("student");
        close(s.t, 3.347_105_876_838_31, 1e-12);
        assert_eq!(s.df, 11.0);
        close(s.p.two_sided, 0.006_510_881_164_793_82, 1e-9);
        close(s.p.greater, 0.003_255_440_582_396_91, 1e-9);
        close(s.p.less, 0.996_744_559_417_603, 1e-9);
        let w = welch_t(&A, &B).expect("welch");
        close(w.t, 3.521_286_377_115_77, 1e-12);
        close(w.df, 9.033_282_738_603_065, 1e-12);
        close(w.p.two_sided, 0.006_464_946_498_203_46, 1e-9);
        close(w.p.greater, 0.003_232_473_249_101_73, 1e-9);
        close(w.p.less, 0.996_767_526_750_898, 1e-9);
        // Swapping the samples flips the sign and the one-sided p-values.
        let r = welch_t(&B, &A).expect("welch");
        close(r.t, -w.t, 1e-12);
        close(r.p.less, w.p.greater, 1e-12);
        assert!(student_t(&[1.0], &B).is_none());
        assert!(welch_t(&[1.0, 1.0], &[1.0, 1.0]).is_none(), "no spread");
    }

    #[test]
    fn mann_whitney_matches_scipy_exact_and_asymptotic() {
        // By hand: of the 42 pairs, a_i > b_j in 38 (0.08 loses to 0.09, 0.11 and 0.14;
        // 0.12 loses to 0.14).
        let e = mann_whitney(&A, &B).expect("mwu");
        assert_eq!((e.u, e.method), (38.0, MwuMethod::Exact));
        close(e.p.two_sided, 0.013_986_013_986_014, 1e-9);
        close(e.p.greater, 0.006_993_006_993_006_99, 1e-9);
        close(e.p.less, 0.995_920_745_920_746, 1e-9);
        let n = mann_whitney_method(&A, &B, MwuMethod::Asymptotic).expect("mwu");
        close(n.p.two_sided, 0.018_416_160_576_304, 1e-9);
        close(n.p.greater, 0.009_208_080_288_151_98, 1e-9);
        close(n.p.less, 0.993_790_334_674_224, 1e-9);
        // Ties: mid-ranks and the tie-corrected variance; SciPy's auto picks asymptotic.
        let c = [1.0, 2.0, 2.0, 3.0, 4.0, 4.0, 4.0, 5.0];
        let d = [2.0, 3.0, 3.0, 3.0, 5.0, 6.0, 6.0, 7.0, 8.0];
        let t = mann_whitney(&c, &d).expect("mwu");
        assert_eq!((t.u, t.method), (20.0, MwuMethod::Asymptotic));
        close(t.p.two_sided, 0.131_015_551_251_404, 1e-9);
        close(t.p.greater, 0.946_031_541_836_842, 1e-9);
        close(t.p.less, 0.065_507_775_625_702, 1e-9);
        assert!(mann_whitney_method(&c, &d, MwuMethod::Exact).is_none());
        assert!(mann_whitney(&[], &d).is_none());
    }

    #[test]
    fn spearman_matches_scipy() {
        // With a tie in the second sample (2.5 twice): mid-ranks.
        let y = [1.0, 2.5, 0.7, 2.0, 2.5, 1.1, 3.0];
        let s = spearman(&A, &y).expect("rho");
        close(s.rho, 0.720_749_970_156_447, 1e-12);
        close(s.p_two_sided, 0.067_634_994_730_281_6, 1e-9);
        let inc: Vec<f64> = A.iter().map(|v| v * 3.0 + 1.0).collect();
        assert_eq!(spearman(&A, &inc).expect("rho").rho, 1.0);
        assert!(spearman(&A[..2], &inc[..2]).is_none());
    }

    #[test]
    fn the_exact_null_distribution_is_the_counting_one() {
        // m = 2, n = 3: of the C(5, 2) = 10 ways to place the two a's among five ranks,
        // 1, 1, 2, 2, 2, 1, 1 give U = 0, 1, ..., 6 ([5 choose 2]_q = 1 + q + 2q^2 + 2q^3 +
        // 2q^4 + q^5 + q^6).
        let p = u_null_pmf(2, 3);
        let counts: Vec<f64> = p.iter().map(|v| (v * 10.0).round()).collect();
        assert_eq!(counts, [1.0, 1.0, 2.0, 2.0, 2.0, 1.0, 1.0]);
        let big = u_null_pmf(7, 4000);
        close(big.iter().sum::<f64>(), 1.0, 1e-9);
        assert!(big.iter().all(|v| *v >= -1e-12));
    }
}
