//! Helpers of `scripts/bench-score.sh` (a benchmark, not a test):
//!
//!   bench pngs OUT N                      write the first N Fashion-MNIST test images as PNG
//!   bench forward BUNDLE VIEWS BATCH      time a bare forward pass of VIEWS views through
//!                                         every encoder of BUNDLE, BATCH views per run
//!
//! The forward baseline uses the same sessions (`Bundle::load`) and batch size as
//! `sslmem score`, with inputs made before the clock starts.

use std::path::Path;
use std::time::Instant;

use sslmem::bundle::Bundle;
use sslmem::data::inputs::load_dataset;
use sslmem::runtime::RuntimeOptions;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["pngs", out, n] => {
            let n: usize = n.parse()?;
            let arr = load_dataset("fashion-mnist:test")?;
            std::fs::create_dir_all(out)?;
            for i in 0..n.min(arr.len()) {
                let img = arr.get(i)?;
                let g = image::GrayImage::from_raw(img.width as u32, img.height as u32, img.data)
                    .ok_or("bad image")?;
                g.save(Path::new(out).join(format!("{i:05}.png")))?;
            }
            Ok(())
        }
        ["forward", bundle, views, batch] => {
            let (views, batch): (usize, usize) = (views.parse()?, batch.parse()?);
            let b = Bundle::load(Path::new(bundle), &RuntimeOptions::default())?;
            let i = &b.manifest.input;
            let len = i.channels * i.height * i.width;
            let out = &b.manifest.representation.output;
            // Warm-up, as the scorer's first batch also pays for it.
            for e in b.encoders() {
                e.embed(vec![0.0; len], [1, i.channels, i.height, i.width], out)?;
            }
            let data: Vec<f32> = (0..batch * len)
                .map(|k| ((k * 7919) % 1000) as f32 / 500.0 - 1.0)
                .collect();
            let start = Instant::now();
            let mut done = 0;
            while done < views {
                let n = batch.min(views - done);
                for e in b.encoders() {
                    e.embed(
                        data[..n * len].to_vec(),
                        [n, i.channels, i.height, i.width],
                        out,
                    )?;
                }
                done += n;
            }
            println!("{:.4}", start.elapsed().as_secs_f64());
            Ok(())
        }
        _ => Err("usage: bench pngs OUT N | bench forward BUNDLE VIEWS BATCH".into()),
    }
}
