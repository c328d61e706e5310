//! Shared helpers of the integration tests, including an independent forward pass of the
//! encoder architecture (direct convolution, explicit batch norm, no folding) to check
//! the ONNX writer against.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sslmem::arch::{ArchSpec, Weights};

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sslmem"))
}

pub fn run(args: &[&str]) -> Output {
    let out = bin().args(args).output().expect("run sslmem");
    out
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Writes a random bundle with the CLI and returns its folder.
/// What `python3 scripts/findings.py ARGS` prints (it must succeed).
pub fn findings(args: &[&str]) -> String {
    let o = std::process::Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/findings.py"))
        .args(args)
        .output()
        .expect("python3");
    assert!(
        o.status.success(),
        "findings.py {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).expect("utf8")
}

pub fn random_bundle(dir: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let o = run(&[
        &["bundle", "random", "--out", out.to_str().expect("utf8")],
        extra,
    ]
    .concat());
    assert!(o.status.success(), "bundle random failed: {}", stderr(&o));
    out
}

/// A feature map [c, h, w].
#[derive(Clone, Debug)]
pub struct Map {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub v: Vec<f64>,
}

fn conv(x: &Map, w: &sslmem::arch::Tensor, stride: usize) -> Map {
    let (o, i, k) = (w.shape[0], w.shape[1], w.shape[2]);
    assert_eq!(i, x.c);
    let pad = (k / 2) as isize;
    let oh = (x.h + 2 * (k / 2) - k) / stride + 1;
    let ow = (x.w + 2 * (k / 2) - k) / stride + 1;
    let mut v = vec![0f64; o * oh * ow];
    for oc in 0..o {
        for y in 0..oh {
            for xx in 0..ow {
                let mut acc = 0f64;
                for ic in 0..i {
                    for ky in 0..k {
                        for kx in 0..k {
                            let sy = (y * stride + ky) as isize - pad;
                            let sx = (xx * stride + kx) as isize - pad;
                            if sy < 0 || sx < 0 || sy >= x.h as isize || sx >= x.w as isize {
                                continue;
                            }
                            let xv = x.v[(ic * x.h + sy as usize) * x.w + sx as usize];
                            let wv = f64::from(w.data[((oc * i + ic) * k + ky) * k + kx]);
                            acc += xv * wv;
                        }
                    }
                }
                v[(oc * oh + y) * ow + xx] = acc;
            }
        }
    }
    Map {
        c: o,
        h: oh,
        w: ow,
        v,
    }
}

fn bn(x: &mut Map, w: &Weights, name: &str, eps: f32) {
    let g = &w[&format!("{name}.weight")].data;
    let b = &w[&format!("{name}.bias")].data;
    let m = &w[&format!("{name}.running_mean")].data;
    let var = &w[&format!("{name}.running_var")].data;
    let n = x.h * x.w;
    for c in 0..x.c {
        for v in &mut x.v[c * n..(c + 1) * n] {
            *v = (*v - f64::from(m[c])) / (f64::from(var[c]) + f64::from(eps)).sqrt()
                * f64::from(g[c])
                + f64::from(b[c]);
        }
    }
}

fn relu(x: &mut Map) {
    x.v.iter_mut().for_each(|v| *v = v.max(0.0));
}

fn max_pool2(x: &Map) -> Map {
    let (oh, ow) = (x.h / 2, x.w / 2);
    let mut v = vec![f64::NEG_INFINITY; x.c * oh * ow];
    for c in 0..x.c {
        for y in 0..oh {
            for xx in 0..ow {
                for dy in 0..2 {
                    for dx in 0..2 {
                        let s = x.v[(c * x.h + 2 * y + dy) * x.w + 2 * xx + dx];
                        let d = &mut v[(c * oh + y) * ow + xx];
                        *d = d.max(s);
                    }
                }
            }
        }
    }
    Map {
        c: x.c,
        h: oh,
        w: ow,
        v,
    }
}

/// Output of the reference forward pass for one image.
pub struct Forward {
    pub layers: Vec<Map>,
    pub representation: Vec<f64>,
    pub projection: Vec<f64>,
}

pub fn reference_forward(arch: &ArchSpec, w: &Weights, image: &[f32]) -> Forward {
    let x = Map {
        c: arch.in_channels,
        h: arch.height,
        w: arch.width,
        v: image.iter().map(|&v| f64::from(v)).collect(),
    };
    let r = arch.resnet().expect("a ResNet");
    let mut y = conv(&x, &w["stem.conv.weight"], r.stem.stride);
    bn(&mut y, w, "stem.bn", arch.bn_eps);
    relu(&mut y);
    if r.stem.max_pool {
        y = max_pool2(&y);
    }
    let mut layers = vec![y.clone()];
    for (i, b) in r.blocks.iter().enumerate() {
        let p = format!("blocks.{i}");
        let mut h = conv(&y, &w[&format!("{p}.conv1.weight")], b.stride);
        bn(&mut h, w, &format!("{p}.bn1"), arch.bn_eps);
        relu(&mut h);
        let mut h2 = conv(&h, &w[&format!("{p}.conv2.weight")], 1);
        bn(&mut h2, w, &format!("{p}.bn2"), arch.bn_eps);
        let short = if w.contains_key(&format!("{p}.shortcut.conv.weight")) {
            let mut s = conv(&y, &w[&format!("{p}.shortcut.conv.weight")], b.stride);
            bn(&mut s, w, &format!("{p}.shortcut.bn"), arch.bn_eps);
            s
        } else {
            y.clone()
        };
        for (a, s) in h2.v.iter_mut().zip(&short.v) {
            *a += s;
        }
        relu(&mut h2);
        y = h2;
        layers.push(y.clone());
    }
    let n = y.h * y.w;
    let representation: Vec<f64> = (0..y.c)
        .map(|c| y.v[c * n..(c + 1) * n].iter().sum::<f64>() / n as f64)
        .collect();
    Forward {
        layers,
        projection: reference_projector(arch, w, &representation),
        representation,
    }
}

/// The projector (Linear, ReLU, ..., Linear; no batch norm) on `representation`, in f64.
fn reference_projector(arch: &ArchSpec, w: &Weights, representation: &[f64]) -> Vec<f64> {
    let mut z = representation.to_vec();
    for (j, _) in arch.projector.iter().enumerate() {
        let wt = &w[&format!("projector.{}.weight", 2 * j)];
        let bt = &w[&format!("projector.{}.bias", 2 * j)];
        let (o, i) = (wt.shape[0], wt.shape[1]);
        let mut out: Vec<f64> = (0..o)
            .map(|r| {
                f64::from(bt.data[r])
                    + (0..i)
                        .map(|c| f64::from(wt.data[r * i + c]) * z[c])
                        .sum::<f64>()
            })
            .collect();
        if j + 1 < arch.projector.len() {
            out.iter_mut().for_each(|v| *v = v.max(0.0));
        }
        z = out;
    }
    z
}

/// Output of the reference ViT forward pass for one image: each layer's and the final
/// tokens `[tokens x width]` row-major, the class token and the projection.
pub struct VitForward {
    pub layers: Vec<Vec<f64>>,
    pub tokens: Vec<f64>,
    pub representation: Vec<f64>,
    pub projection: Vec<f64>,
}

/// The ViT of `arch` on one image `[c, h, w]`, in f64, written from the definitions
/// (Dosovitskiy et al. 2021, eq. 1-4; Vaswani et al. 2017, eq. 1), loop by loop: no code is
/// shared with the writer or the trainer.
pub fn reference_vit_forward(arch: &ArchSpec, w: &Weights, image: &[f32]) -> VitForward {
    let v = arch.vit().expect("a ViT");
    let (c, h, wd, p, d) = (arch.in_channels, arch.height, arch.width, v.patch, v.width);
    let (gh, gw) = (h / p, wd / p);
    let t = gh * gw + 1;
    let f = |name: &str| -> Vec<f64> { w[name].data.iter().map(|&x| f64::from(x)).collect() };
    let mut x = vec![0f64; t * d];
    x[..d].copy_from_slice(&f("cls_token"));
    let (pw, pb) = (f("patch_embed.proj.weight"), f("patch_embed.proj.bias"));
    for gy in 0..gh {
        for gx in 0..gw {
            let tok = 1 + gy * gw + gx;
            for o in 0..d {
                let mut s = pb[o];
                for ch in 0..c {
                    for dy in 0..p {
                        for dx in 0..p {
                            let px = image[(ch * h + gy * p + dy) * wd + gx * p + dx];
                            s += pw[((o * c + ch) * p + dy) * p + dx] * f64::from(px);
                        }
                    }
                }
                x[tok * d + o] = s;
            }
        }
    }
    for (a, b) in x.iter_mut().zip(f("pos_embed")) {
        *a += b;
    }
    let eps = f64::from(v.ln_eps);
    let norm = |x: &[f64], name: &str| -> Vec<f64> {
        let (g, b) = (f(&format!("{name}.weight")), f(&format!("{name}.bias")));
        x.chunks(d)
            .flat_map(|row| {
                let mean = row.iter().sum::<f64>() / d as f64;
                let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / d as f64;
                let inv = 1.0 / (var + eps).sqrt();
                (0..d)
                    .map(|k| (row[k] - mean) * inv * g[k] + b[k])
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let linear = |x: &[f64], name: &str| -> Vec<f64> {
        let (wt, b) = (&w[&format!("{name}.weight")], f(&format!("{name}.bias")));
        let (o, i) = (wt.shape[0], wt.shape[1]);
        x.chunks(i)
            .flat_map(|row| {
                (0..o)
                    .map(|r| {
                        b[r] + (0..i)
                            .map(|k| f64::from(wt.data[r * i + k]) * row[k])
                            .sum::<f64>()
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let (heads, dh) = (v.heads, d / v.heads);
    let mut layers = Vec::new();
    for blk in 0..v.depth {
        let b = format!("blocks.{blk}");
        let qkv = linear(&norm(&x, &format!("{b}.norm1")), &format!("{b}.attn.qkv"));
        // Row i of qkv is [q | k | v], each [heads x dh].
        let at =
            |i: usize, part: usize, hd: usize, e: usize| qkv[i * 3 * d + part * d + hd * dh + e];
        let mut context = vec![0f64; t * d];
        for hd in 0..heads {
            for i in 0..t {
                let scores: Vec<f64> = (0..t)
                    .map(|j| {
                        (0..dh)
                            .map(|e| at(i, 0, hd, e) * at(j, 1, hd, e))
                            .sum::<f64>()
                            / (dh as f64).sqrt()
                    })
                    .collect();
                let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let exp: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let total: f64 = exp.iter().sum();
                for e in 0..dh {
                    context[i * d + hd * dh + e] =
                        (0..t).map(|j| exp[j] / total * at(j, 2, hd, e)).sum();
                }
            }
        }
        let attn: Vec<f64> = x
            .iter()
            .zip(linear(&context, &format!("{b}.attn.proj")))
            .map(|(a, b)| a + b)
            .collect();
        let hidden: Vec<f64> = linear(&norm(&attn, &format!("{b}.norm2")), &format!("{b}.mlp.fc1"))
            .into_iter()
            .map(|u| 0.5 * u * (1.0 + statrs::function::erf::erf(u / std::f64::consts::SQRT_2)))
            .collect();
        let mlp: Vec<f64> = attn
            .iter()
            .zip(linear(&hidden, &format!("{b}.mlp.fc2")))
            .map(|(a, b)| a + b)
            .collect();
        layers.push(attn);
        layers.push(mlp.clone());
        x = mlp;
    }
    let tokens = norm(&x, "norm");
    let representation = tokens[..d].to_vec();
    VitForward {
        layers,
        projection: reference_projector(arch, w, &representation),
        tokens,
        representation,
    }
}

/// The Python with `onnx` that `scripts/setup.sh --python` makes, if present.
pub fn onnx_python() -> Option<PathBuf> {
    let p = sslmem::runtime::sslmem_home()
        .join("py")
        .join("bin")
        .join("python");
    p.is_file().then_some(p)
}

/// Reads `-h` of each subcommand of a program: every option must name an environment
/// variable, and one variable must always be the same flag. Returns how many variables.
#[allow(dead_code)]
pub fn check_flag_environment(program: fn() -> Command, subcommands: &[&[&str]]) -> usize {
    let mut seen: std::collections::BTreeMap<String, String> = Default::default();
    for sub in subcommands {
        let mut args = sub.to_vec();
        args.push("-h");
        let o = program().args(&args).output().expect("run");
        assert!(o.status.success(), "{}", stderr(&o));
        // An option's help may continue on the next lines: join them to their option.
        let text = stdout(&o);
        let body = text.split("Options:").nth(1).unwrap_or_default();
        let mut options: Vec<String> = Vec::new();
        for l in body.lines().map(str::trim).filter(|l| !l.is_empty()) {
            match options.last_mut() {
                Some(last) if !l.starts_with('-') => {
                    last.push(' ');
                    last.push_str(l);
                }
                _ => options.push(l.to_string()),
            }
        }
        for line in &options {
            let Some(flag) = line
                .split_whitespace()
                .find(|w| w.starts_with("--"))
                .filter(|f| *f != "--help" && *f != "--version")
            else {
                continue;
            };
            let env = line
                .split("[env: ")
                .nth(1)
                .and_then(|e| e.split('=').next())
                .unwrap_or_else(|| panic!("{}: {flag} has no environment variable", sub.join(" ")));
            let prev = seen
                .entry(env.to_string())
                .or_insert_with(|| flag.to_string());
            assert_eq!(prev.as_str(), flag, "{env} is both {prev} and {flag}");
        }
    }
    seen.len()
}
