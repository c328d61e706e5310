//! Evaluation with labels (used only here): representations of un-augmented images, kNN
//! accuracy (k = 200, temperature 0.1, cosine, weighted votes as in InstDisc/SimCLR code),
//! and a linear probe (multinomial logistic regression on standardised frozen features).

use tch::{Device, Kind, Tensor};

use super::collapse::OutputSpreads;
use super::model::Encoder;
use crate::augment::Normalize;
use crate::data::ImageArray;
use crate::error::{Error, Result};

pub use crate::recipe::run::EvalReport;

/// Normalised pixels of the given examples as a `[n, c, h, w]` tensor on `device`.
pub fn images(
    data: &ImageArray,
    indices: &[usize],
    norm: &Normalize,
    device: Device,
) -> Result<Tensor> {
    let len = data.channels * data.height * data.width;
    let mut buf = vec![0f32; indices.len() * len];
    for (dst, &i) in buf.chunks_exact_mut(len).zip(indices) {
        let img = data
            .get(i)
            .map_err(|e| Error::Param(format!("example {i}: {e}")))?;
        norm.write(&img.to_planes(), dst);
    }
    Ok(Tensor::from_slice(&buf)
        .reshape([
            indices.len() as i64,
            data.channels as i64,
            data.height as i64,
            data.width as i64,
        ])
        .to_device(device))
}

/// Eval-mode representations `[n, d]` of the given examples, in batches.
pub fn representations(
    enc: &Encoder,
    data: &ImageArray,
    indices: &[usize],
    norm: &Normalize,
    device: Device,
) -> Result<Tensor> {
    let mut parts = Vec::new();
    for chunk in indices.chunks(1024) {
        let x = images(data, chunk, norm, device)?;
        parts.push(tch::no_grad(|| enc.forward(&x, false).representation));
    }
    Ok(Tensor::cat(&parts, 0))
}

fn labels(data: &ImageArray, indices: &[usize], device: Device) -> Result<Tensor> {
    let l: Vec<i64> = indices
        .iter()
        .map(|&i| {
            data.label(i)
                .map(i64::from)
                .ok_or_else(|| Error::Param(format!("{}: example {i} has no label", data.name)))
        })
        .collect::<Result<_>>()?;
    Ok(Tensor::from_slice(&l).to_device(device))
}

/// Weighted kNN accuracy with cosine similarity.
pub fn knn_accuracy(
    train: &Tensor,
    train_y: &Tensor,
    test: &Tensor,
    test_y: &Tensor,
    k: i64,
    t: f64,
    classes: i64,
) -> f64 {
    let norm = |x: &Tensor| {
        x / x
            .norm_scalaropt_dim(2, [1i64].as_slice(), true)
            .clamp_min(1e-12)
    };
    let (bank, q) = (norm(train), norm(test));
    let k = k.min(bank.size()[0]);
    let mut correct = 0i64;
    let n = q.size()[0];
    let mut start = 0;
    while start < n {
        let len = 512.min(n - start);
        let sims = q.narrow(0, start, len).matmul(&bank.tr());
        let (top, idx) = sims.topk(k, 1, true, true);
        let w = (top / t).exp();
        let neighbours = train_y
            .index_select(0, &idx.flatten(0, -1))
            .reshape([len, k]);
        let votes = Tensor::zeros([len, classes], (Kind::Float, q.device())).scatter_add(
            1,
            &neighbours,
            &w,
        );
        let pred = votes.argmax(1, false);
        correct += pred
            .eq_tensor(&test_y.narrow(0, start, len))
            .sum(Kind::Int64)
            .int64_value(&[]);
        start += len;
    }
    correct as f64 / n.max(1) as f64
}

/// Logistic regression on standardised features, full-batch Adam; test accuracy.
pub fn linear_probe(
    train: &Tensor,
    train_y: &Tensor,
    test: &Tensor,
    test_y: &Tensor,
    classes: i64,
    steps: usize,
) -> f64 {
    match probe_predictions(train, train_y, test, classes, steps) {
        Some(pred) => pred
            .eq_tensor(test_y)
            .to_kind(Kind::Float)
            .mean(Kind::Float)
            .double_value(&[]),
        None => f64::NAN,
    }
}

/// The linear probe's predicted class of each test example `[n]` (as [`linear_probe`] fits
/// it); `None` when the optimiser cannot be built.
fn probe_predictions(
    train: &Tensor,
    train_y: &Tensor,
    test: &Tensor,
    classes: i64,
    steps: usize,
) -> Option<Tensor> {
    let mean = train.mean_dim([0i64].as_slice(), true, Kind::Float);
    let std = train
        .std_dim([0i64].as_slice(), false, true)
        .clamp_min(1e-6);
    let (x, xt) = ((train - &mean) / &std, (test - &mean) / &std);
    let vs = tch::nn::VarStore::new(train.device());
    let d = x.size()[1];
    let w = vs.root().zeros("w", &[classes, d]);
    let b = vs.root().zeros("b", &[classes]);
    let mut opt = match tch::nn::OptimizerConfig::build(
        tch::nn::Adam {
            wd: 1e-4,
            ..Default::default()
        },
        &vs,
        0.05,
    ) {
        Ok(o) => o,
        Err(_) => return None,
    };
    for _ in 0..steps {
        let loss = x.linear(&w, Some(&b)).cross_entropy_for_logits(train_y);
        opt.backward_step(&loss);
    }
    Some(tch::no_grad(|| xt.linear(&w, Some(&b)).argmax(1, false)))
}

/// Whether the linear probe (fitted as [`evaluate`] fits it, on `train_idx`) classifies each
/// test example correctly, in the test set's order.
///
/// Errors: an example has no label; the encoder fails; the probe cannot be fitted.
pub fn probe_correct(
    enc: &crate::engine::Engine,
    train: &ImageArray,
    train_idx: &[usize],
    test: &ImageArray,
    norm: &Normalize,
) -> Result<Vec<bool>> {
    let test_idx: Vec<usize> = (0..test.len()).collect();
    let (xr, yr) = (
        onnx_representations(enc, train, train_idx, norm)?,
        labels(train, train_idx, Device::Cpu)?,
    );
    let (xt, yt) = (
        onnx_representations(enc, test, &test_idx, norm)?,
        labels(test, &test_idx, Device::Cpu)?,
    );
    let classes = yr.max().int64_value(&[]).max(yt.max().int64_value(&[])) + 1;
    let pred = probe_predictions(&xr, &yr, &xt, classes, PROBE_STEPS)
        .ok_or_else(|| Error::Train("cannot build the linear probe's optimiser".into()))?;
    Vec::<bool>::try_from(pred.eq_tensor(&yt)).map_err(|e| Error::Train(e.to_string()))
}

/// The scoring engine over one exported encoder (`f` of an engine with no `g`), fed the
/// tensors the trainer normalises: evaluation measures exactly the model the bundle ships,
/// through the same code that scores it.
pub fn exported_engine(
    path: &std::path::Path,
    data: &ImageArray,
    norm: &Normalize,
    output: &str,
) -> Result<crate::engine::Engine> {
    let input = crate::bundle::InputSpec {
        name: crate::onnx::INPUT.into(),
        channels: data.channels,
        height: data.height,
        width: data.width,
        mean: norm.mean.clone(),
        std: norm.std.clone(),
        ..Default::default()
    };
    crate::engine::Engine::for_model(path, input, output, None)
}

/// Representations `[n, d]` of the given examples from an exported encoder (ONNX Runtime,
/// through the engine).
pub fn onnx_representations(
    enc: &crate::engine::Engine,
    data: &ImageArray,
    indices: &[usize],
    norm: &Normalize,
) -> Result<Tensor> {
    let mut parts = Vec::new();
    for chunk in indices.chunks(1024) {
        let x = images(data, chunk, norm, Device::Cpu)?;
        let flat =
            Vec::<f32>::try_from(x.flatten(0, -1)).map_err(|e| Error::Train(e.to_string()))?;
        let reps = enc.embed_normalized(flat)?;
        let r = reps
            .f
            .first()
            .ok_or_else(|| Error::Train("the evaluation engine has no encoder".into()))?;
        let d = r.ncols() as i64;
        let v: Vec<f32> = r.iter().copied().collect();
        parts.push(Tensor::from_slice(&v).reshape([chunk.len() as i64, d]));
    }
    Ok(Tensor::cat(&parts, 0))
}

/// The [`OutputSpreads`] of the exported encoder at `path` over every example of `data`
/// (un-augmented), through the engine that scores it.
///
/// Errors: the model cannot be loaded or run; the singular values cannot be computed.
pub fn output_spreads(
    path: &std::path::Path,
    data: &ImageArray,
    norm: &Normalize,
) -> Result<OutputSpreads> {
    let all: Vec<usize> = (0..data.len()).collect();
    let of = |output: &str| -> Result<Option<super::collapse::Spread>> {
        let enc = exported_engine(path, data, norm, output)?;
        super::collapse::spread(&onnx_representations(&enc, data, &all, norm)?)
    };
    Ok(OutputSpreads {
        representation: of(crate::onnx::REPRESENTATION)?,
        projection: of(crate::onnx::PROJECTION)?,
    })
}

/// Linear-probe steps (full-batch Adam): enough to converge on these feature sizes.
pub const PROBE_STEPS: usize = 1000;

/// kNN and linear-probe accuracy of an exported encoder: features of `train_idx` (the
/// encoder's own training examples) to fit, all of `test` to score.
pub fn evaluate(
    enc: &crate::engine::Engine,
    train: &ImageArray,
    train_idx: &[usize],
    test: &ImageArray,
    norm: &Normalize,
) -> Result<EvalReport> {
    let test_idx: Vec<usize> = (0..test.len()).collect();
    let (xr, yr) = (
        onnx_representations(enc, train, train_idx, norm)?,
        labels(train, train_idx, Device::Cpu)?,
    );
    let (xt, yt) = (
        onnx_representations(enc, test, &test_idx, norm)?,
        labels(test, &test_idx, Device::Cpu)?,
    );
    let classes = yr.max().int64_value(&[]).max(yt.max().int64_value(&[])) + 1;
    Ok(EvalReport {
        knn_accuracy: knn_accuracy(&xr, &yr, &xt, &yt, 200, 0.1, classes),
        linear_probe_accuracy: linear_probe(&xr, &yr, &xt, &yt, classes, PROBE_STEPS),
        train_examples: train_idx.len(),
        test_examples: test_idx.len(),
    })
}

/// The raw-pixel baseline: a linear probe on flattened normalised pixels.
pub fn raw_pixel_probe(
    train: &ImageArray,
    train_idx: &[usize],
    test: &ImageArray,
    norm: &Normalize,
    device: Device,
) -> Result<f64> {
    let test_idx: Vec<usize> = (0..test.len()).collect();
    let x = images(train, train_idx, norm, device)?.flatten(1, -1);
    let xt = images(test, &test_idx, norm, device)?.flatten(1, -1);
    let (y, yt) = (
        labels(train, train_idx, device)?,
        labels(test, &test_idx, device)?,
    );
    let classes = y.max().int64_value(&[]).max(yt.max().int64_value(&[])) + 1;
    Ok(linear_probe(&x, &y, &xt, &yt, classes, PROBE_STEPS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knn_and_probe_separate_separable_clusters() {
        tch::manual_seed(0);
        let centre = |c: f64| Tensor::from_slice(&[c as f32, (1.0 - c) as f32, 0.5]);
        let make = |n: i64| {
            let y = Tensor::arange(n, (Kind::Int64, Device::Cpu)).remainder(2);
            let base = Tensor::stack(
                &(0..n).map(|i| centre((i % 2) as f64)).collect::<Vec<_>>(),
                0,
            );
            (
                base + Tensor::randn([n, 3], (Kind::Float, Device::Cpu)) * 0.05,
                y,
            )
        };
        let (x, y) = make(100);
        let (xt, yt) = make(40);
        assert_eq!(knn_accuracy(&x, &y, &xt, &yt, 10, 0.1, 2), 1.0);
        assert_eq!(linear_probe(&x, &y, &xt, &yt, 2, 100), 1.0);
        // By hand: k = 2 among three points; weights e^{cos/T} favour the nearer label.
        let bank = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 1.0, 0.6, 0.8]).reshape([3, 2]);
        let bank_y = Tensor::from_slice(&[0i64, 1, 1]);
        let q = Tensor::from_slice(&[0.9f32, 0.1]).reshape([1, 2]);
        // Nearest two: (1, 0) label 0 (cos 0.994) and (0.6, 0.8) label 1 (cos 0.684).
        assert_eq!(
            knn_accuracy(&bank, &bank_y, &q, &Tensor::from_slice(&[0i64]), 2, 0.1, 2),
            1.0
        );
        assert_eq!(
            knn_accuracy(&bank, &bank_y, &q, &Tensor::from_slice(&[1i64]), 2, 0.1, 2),
            0.0
        );
    }
}
