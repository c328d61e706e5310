//! Self-supervised losses, one function each, on the projections of two views `[n, d]`.
//! Targets that must not receive gradients (SimSiam's and BYOL's) are detached here.

use tch::{Kind, Tensor};

/// Each row of `z` `[n, d]` divided by its l2 norm (at least 1e-12).
pub(crate) fn l2_normalize(z: &Tensor) -> Tensor {
    let norm = z
        .norm_scalaropt_dim(2, [1i64].as_slice(), true)
        .clamp_min(1e-12);
    z / norm
}

/// SimCLR's NT-Xent: cross-entropy of each view's positive (the other view of its image)
/// among the 2n - 1 other views, cosine similarities over `temperature`.
pub fn nt_xent(z1: &Tensor, z2: &Tensor, temperature: f64) -> Tensor {
    let n = z1.size()[0];
    let z = l2_normalize(&Tensor::cat(&[z1, z2], 0));
    let sim = z.matmul(&z.tr()) / temperature;
    // A view is never its own candidate.
    let eye = Tensor::eye(2 * n, (Kind::Bool, z.device()));
    let sim = sim.masked_fill(&eye, f64::NEG_INFINITY);
    let idx = Tensor::arange(n, (Kind::Int64, z.device()));
    let targets = Tensor::cat(&[&idx + n, idx], 0);
    sim.cross_entropy_for_logits(&targets)
}

/// Negative cosine similarity, with the target detached.
fn neg_cos(p: &Tensor, z: &Tensor) -> Tensor {
    -(l2_normalize(p) * l2_normalize(&z.detach()))
        .sum_dim_intlist([1i64].as_slice(), false, Kind::Float)
        .mean(Kind::Float)
}

/// SimSiam: `(D(p1, sg(z2)) + D(p2, sg(z1))) / 2` with `D` the negative cosine.
pub fn simsiam(p1: &Tensor, p2: &Tensor, z1: &Tensor, z2: &Tensor) -> Tensor {
    (neg_cos(p1, z2) + neg_cos(p2, z1)) * 0.5
}

/// BYOL: `2 - 2 cos(p, sg(t))` for both directions, summed (online predictions `p`, target
/// projections `t` from the EMA network).
pub fn byol(p1: &Tensor, p2: &Tensor, t1: &Tensor, t2: &Tensor) -> Tensor {
    (neg_cos(p1, t2) * 2.0 + 2.0) + (neg_cos(p2, t1) * 2.0 + 2.0)
}

/// Off-diagonal elements of a square matrix, flattened.
fn off_diagonal(m: &Tensor) -> Tensor {
    let d = m.size()[0];
    let mask = Tensor::eye(d, (Kind::Bool, m.device())).logical_not();
    m.masked_select(&mask)
}

/// VICReg with weights (invariance, variance, covariance) = (25, 25, 1) by default:
/// MSE between views; hinge on each dimension's std (target 1, eps 1e-4), averaged over the
/// two views; squared off-diagonal covariances over the dimension, summed over the views.
pub fn vicreg(z1: &Tensor, z2: &Tensor, weights: (f64, f64, f64)) -> Tensor {
    let (n, d) = (z1.size()[0] as f64, z1.size()[1] as f64);
    let inv = z1.mse_loss(z2, tch::Reduction::Mean);
    let center = |z: &Tensor| -> Tensor { z - z.mean_dim([0i64].as_slice(), true, Kind::Float) };
    let (c1, c2) = (center(z1), center(z2));
    let std = |c: &Tensor| -> Tensor {
        (c.pow_tensor_scalar(2)
            .sum_dim_intlist([0i64].as_slice(), false, Kind::Float)
            / (n - 1.0)
            + 1e-4)
            .sqrt()
    };
    let hinge = |c: &Tensor| -> Tensor { (std(c).neg() + 1.0).relu().mean(Kind::Float) };
    let var = (hinge(&c1) + hinge(&c2)) * 0.5;
    let cov_loss = |c: &Tensor| {
        let cov = c.tr().matmul(c) / (n - 1.0);
        off_diagonal(&cov).pow_tensor_scalar(2).sum(Kind::Float) / d
    };
    let cov = cov_loss(&c1) + cov_loss(&c2);
    inv * weights.0 + var * weights.1 + cov * weights.2
}

/// Barlow Twins: each view standardised over the batch (biased variance, as
/// `BatchNorm1d(affine=False)`), cross-correlation `C = z1ᵀ z2 / n`, loss
/// `Σ (1 - C_ii)² + λ Σ_{i≠j} C_ij²`.
pub fn barlow_twins(z1: &Tensor, z2: &Tensor, lambda: f64) -> Tensor {
    let n = z1.size()[0] as f64;
    let standardise = |z: &Tensor| {
        let mean = z.mean_dim([0i64].as_slice(), true, Kind::Float);
        let var = (z - &mean)
            .pow_tensor_scalar(2)
            .mean_dim([0i64].as_slice(), true, Kind::Float);
        (z - mean) / (var + 1e-5).sqrt()
    };
    let c = standardise(z1).tr().matmul(&standardise(z2)) / n;
    let on = (c.diagonal(0, 0, 1) - 1.0)
        .pow_tensor_scalar(2)
        .sum(Kind::Float);
    let off = off_diagonal(&c).pow_tensor_scalar(2).sum(Kind::Float);
    on + off * lambda
}

/// DINO's cross-entropy between teacher and student (Caron et al. 2021, Algorithm 1):
/// `teacher[i]` `[n, K]` are the teacher's outputs on global view `i`, `student[v]` the
/// student's on view `v` (the global views first, in the same order); for every pair with
/// `v != i`, `-Σ_k softmax((t - center) / teacher_temp)_k · log_softmax(s / student_temp)_k`,
/// averaged over the batch, then over the `G·V - G` pairs (`G` teachers). The teacher side is
/// detached; `center` is `[1, K]`.
pub fn dino(
    student: &[Tensor],
    teacher: &[Tensor],
    center: &Tensor,
    student_temp: f64,
    teacher_temp: f64,
) -> Tensor {
    let targets: Vec<Tensor> = teacher
        .iter()
        .map(|t| ((t.detach() - center) / teacher_temp).softmax(-1, Kind::Float))
        .collect();
    let logs: Vec<Tensor> = student
        .iter()
        .map(|s| (s / student_temp).log_softmax(-1, Kind::Float))
        .collect();
    let mut total: Option<Tensor> = None;
    let mut terms = 0;
    for (i, q) in targets.iter().enumerate() {
        for (v, log_p) in logs.iter().enumerate() {
            if v == i {
                continue;
            }
            let ce = -(q * log_p)
                .sum_dim_intlist(-1, false, Kind::Float)
                .mean(Kind::Float);
            total = Some(match total {
                Some(acc) => acc + ce,
                None => ce,
            });
            terms += 1;
        }
    }
    total.map_or_else(
        || Tensor::zeros([], (Kind::Float, center.device())),
        |t| t / terms as f64,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn t(rows: &[&[f64]]) -> Tensor {
        let d = rows[0].len() as i64;
        let flat: Vec<f32> = rows
            .iter()
            .flat_map(|r| r.iter().map(|&v| v as f32))
            .collect();
        Tensor::from_slice(&flat)
            .reshape([rows.len() as i64, d])
            .to_device(Device::Cpu)
    }

    fn val(x: &Tensor) -> f64 {
        x.double_value(&[])
    }

    #[test]
    fn dino_by_hand() {
        // K = 2, one image. Teacher on global 0: (ln 3, 0) with center 0 and temperature 1:
        // softmax (3/4, 1/4). Teacher on global 1: (0, 0): (1/2, 1/2). Student views with
        // temperature 1: global 0 (0, 0) -> log (1/2, 1/2); global 1 (ln 3, 0) -> log (3/4,
        // 1/4); a local view (0, ln 3) -> log (1/4, 3/4). Pairs (teacher 0: views 1, 2;
        // teacher 1: views 0, 2), averaged.
        let l3 = 3f64.ln();
        let teacher = [t(&[&[l3, 0.0]]), t(&[&[0.0, 0.0]])];
        let student = [t(&[&[0.0, 0.0]]), t(&[&[l3, 0.0]]), t(&[&[0.0, l3]])];
        let center = t(&[&[0.0, 0.0]]);
        let ce = |q: [f64; 2], p: [f64; 2]| -(q[0] * p[0].ln() + q[1] * p[1].ln());
        let want = (ce([0.75, 0.25], [0.75, 0.25])
            + ce([0.75, 0.25], [0.25, 0.75])
            + ce([0.5, 0.5], [0.5, 0.5])
            + ce([0.5, 0.5], [0.25, 0.75]))
            / 4.0;
        let got = val(&dino(&student, &teacher, &center, 1.0, 1.0));
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        // Centering subtracts before sharpening: a center equal to teacher 0's output makes
        // its target uniform; temperatures divide both sides.
        let centered = val(&dino(&student, &teacher, &teacher[0], 1.0, 1.0));
        let want_c = (ce([0.5, 0.5], [0.75, 0.25])
            + ce([0.5, 0.5], [0.25, 0.75])
            + ce([0.25, 0.75], [0.5, 0.5])
            + ce([0.25, 0.75], [0.25, 0.75]))
            / 4.0;
        assert!((centered - want_c).abs() < 1e-6, "{centered} vs {want_c}");
        let sharp = val(&dino(&student, &teacher, &center, 0.5, 0.5));
        let q0 = [0.9, 0.1]; // softmax(2 ln 3, 0) = (9/10, 1/10)
        let want_s = (ce(q0, q0)
            + ce(q0, [0.1, 0.9])
            + ce([0.5, 0.5], [0.5, 0.5])
            + ce([0.5, 0.5], [0.1, 0.9]))
            / 4.0;
        assert!((sharp - want_s).abs() < 1e-5, "{sharp} vs {want_s}");
    }

    #[test]
    fn nt_xent_by_hand() {
        // Two images, (1, 0) and (0, 1), each with a second view in the same direction.
        // Each of the 4 views has 3 candidates: its positive (cos 1) and the other image's
        // two views (cos 0), so the loss is -log(e^{1/T} / (e^{1/T} + 2)).
        let z1 = t(&[&[1.0, 0.0], &[0.0, 1.0]]);
        let z2 = t(&[&[2.0, 0.0], &[0.0, 3.0]]);
        let temp = 0.5;
        let e = (1.0f64 / temp).exp();
        let want = -(e / (e + 2.0)).ln();
        assert!((val(&nt_xent(&z1, &z2, temp)) - want).abs() < 1e-5);
        // One image: its only candidate is its positive, so the loss is 0.
        assert!(val(&nt_xent(&t(&[&[1.0, 2.0]]), &t(&[&[-3.0, 1.0]]), 0.1)).abs() < 1e-6);
    }

    #[test]
    fn nt_xent_matches_a_scalar_computation() {
        let z1 = t(&[&[0.3, -1.2, 0.5], &[1.0, 0.2, -0.4], &[-0.7, 0.9, 0.1]]);
        let z2 = t(&[&[0.1, -1.0, 0.8], &[0.9, 0.5, -0.2], &[-0.2, 0.4, 0.6]]);
        let rows: Vec<Vec<f64>> = [&z1, &z2]
            .iter()
            .flat_map(|z| {
                (0..3)
                    .map(|i| Vec::<f64>::try_from(z.get(i).to_kind(Kind::Double)).expect("row"))
                    .collect::<Vec<_>>()
            })
            .collect();
        let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
        let cos = |a: &[f64], b: &[f64]| {
            a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>() / (norm(a) * norm(b))
        };
        let temp = 0.2;
        let mut total = 0.0;
        for i in 0..6 {
            let pos = (i + 3) % 6;
            let denom: f64 = (0..6)
                .filter(|&j| j != i)
                .map(|j| (cos(&rows[i], &rows[j]) / temp).exp())
                .sum();
            total += -((cos(&rows[i], &rows[pos]) / temp).exp() / denom).ln();
        }
        assert!((val(&nt_xent(&z1, &z2, temp)) - total / 6.0).abs() < 1e-4);
    }

    #[test]
    fn simsiam_and_byol_by_hand() {
        let p = t(&[&[1.0, 0.0], &[0.0, 2.0]]);
        // Identical directions: cos 1 -> SimSiam -1, BYOL 0.
        assert!((val(&simsiam(&p, &p, &(&p * 3.0), &(&p * 0.5))) + 1.0).abs() < 1e-6);
        assert!(val(&byol(&p, &p, &p, &p)).abs() < 1e-6);
        // Orthogonal: cos 0 -> SimSiam 0, BYOL 2 + 2.
        let q = t(&[&[0.0, 1.0], &[3.0, 0.0]]);
        assert!(val(&simsiam(&p, &p, &q, &q)).abs() < 1e-6);
        assert!((val(&byol(&p, &p, &q, &q)) - 4.0).abs() < 1e-6);
    }

    #[test]
    fn stop_gradient_reaches_only_the_predictions() {
        let p = t(&[&[1.0, 0.5], &[0.2, 2.0]]).set_requires_grad(true);
        let z = t(&[&[0.3, 1.0], &[1.0, -1.0]]).set_requires_grad(true);
        simsiam(&p, &p, &z, &z).backward();
        assert!(p.grad().defined() && p.grad().abs().sum(Kind::Float).double_value(&[]) > 0.0);
        assert!(
            !z.grad().defined(),
            "no gradient through the stop-gradient branch"
        );
    }

    #[test]
    fn vicreg_by_hand() {
        // Two samples, two dims, identical views: invariance 0. Centred rows ±(1, 1):
        // var per dim = 2/(n-1) = 2, std = sqrt(2.0001) > 1 -> variance 0; covariance
        // off-diagonal = 2 -> (2² + 2²)/2 per view, two views -> 8.
        let z = t(&[&[2.0, 2.0], &[0.0, 0.0]]);
        let l = val(&vicreg(&z, &z, (25.0, 25.0, 1.0)));
        assert!((l - 8.0).abs() < 1e-4, "{l}");
        // Collapsed views (all equal): std sqrt(1e-4) = 0.01 -> hinge 0.99 on each dim.
        let c = t(&[&[1.0, 1.0], &[1.0, 1.0]]);
        let d = t(&[&[0.0, 1.0], &[0.0, 1.0]]);
        let want = 25.0 * 0.5 + 25.0 * 0.99;
        assert!((val(&vicreg(&c, &d, (25.0, 25.0, 1.0))) - want).abs() < 1e-4);
    }

    #[test]
    fn barlow_twins_by_hand() {
        // Standardised views identical and with uncorrelated dims: C = I -> loss 0.
        let z = t(&[&[1.0, 1.0], &[1.0, -1.0], &[-1.0, 1.0], &[-1.0, -1.0]]);
        assert!(val(&barlow_twins(&z, &z, 0.005)).abs() < 1e-3);
        // Second view with the first dim flipped: C = diag(-1, 1) -> on-diagonal (1-(-1))² = 4.
        let w = t(&[&[-1.0, 1.0], &[-1.0, -1.0], &[1.0, 1.0], &[1.0, -1.0]]);
        assert!((val(&barlow_twins(&z, &w, 0.005)) - 4.0).abs() < 1e-3);
        // Perfectly correlated dims: C = [[1,1],[1,1]] -> off-diagonal 2 * λ.
        let k = t(&[&[1.0, 1.0], &[-1.0, -1.0]]);
        assert!((val(&barlow_twins(&k, &k, 0.5)) - 1.0).abs() < 1e-3);
    }
}
