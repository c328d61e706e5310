//! The most and least memorized (or highest and lowest scoring) examples of each class, as
//! one titled picture: a row per class, the highest scores on the left half, the lowest on
//! the right, each tile with its class and score.

use std::collections::BTreeMap;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{font_ready, plot_err, png};
use crate::audit::text::num;
use crate::audit::{Item, Record, SplitSet};
use crate::error::Result;
use crate::pixels::SourceImage;

/// Examples shown per class and end (most / least memorized).
pub(in crate::audit) const GRID_PER_END: usize = 8;

/// One class's most and least memorized examples: (record index, image, score).
pub struct ClassGrid {
    pub label: Option<u8>,
    pub top: Vec<(usize, SourceImage, f64)>,
    pub bottom: Vec<(usize, SourceImage, f64)>,
}

/// (record index, score) of one class's examples.
type Scores = Vec<(usize, f64)>;

/// The grids of the set the grids are drawn from (candidate when audited: the only set whose
/// scores measure memorization by `f`), per label: every label in order, or only `classes`
/// in the order given (`--grid-classes`; a class with no scored example has no row).
pub(in crate::audit) fn class_grids(
    items: &[Item],
    records: &[Record],
    set: SplitSet,
    channels: usize,
    classes: &[u8],
) -> Vec<ClassGrid> {
    let mut by_label: BTreeMap<Option<u8>, Scores> = BTreeMap::new();
    for (k, r) in records.iter().enumerate() {
        if let (true, Some(s)) = (r.set == set, r.score.as_ref()) {
            by_label.entry(r.label).or_default().push((k, s.score));
        }
    }
    let chosen: Vec<(Option<u8>, Scores)> = if classes.is_empty() {
        by_label.into_iter().collect()
    } else {
        classes
            .iter()
            .filter_map(|&c| by_label.remove(&Some(c)).map(|v| (Some(c), v)))
            .collect()
    };
    let load = |k: usize| items[k].input.load(channels, Default::default()).ok();
    chosen
        .into_iter()
        .map(|(label, mut v)| {
            v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            let n = GRID_PER_END.min(v.len() / 2).max(1).min(v.len());
            let pick = |xs: &[(usize, f64)]| -> Vec<(usize, SourceImage, f64)> {
                xs.iter()
                    .filter_map(|&(k, s)| load(k).map(|im| (k, im, s)))
                    .collect()
            };
            let bottom: Vec<(usize, f64)> = v.iter().rev().take(n).copied().collect();
            ClassGrid {
                label,
                top: pick(&v[..n]),
                bottom: pick(&bottom),
            }
        })
        .collect()
}

/// An image scaled up `scale` times (nearest neighbour), as RGB.
pub(in crate::audit) fn to_rgb(im: &SourceImage, scale: u32) -> image::RgbImage {
    let (w, h) = (im.width as u32, im.height as u32);
    let plane = im.width * im.height;
    image::RgbImage::from_fn(w * scale, h * scale, |x, y| {
        let p = (y / scale) as usize * im.width + (x / scale) as usize;
        if im.channels >= 3 {
            image::Rgb([im.data[p], im.data[plane + p], im.data[2 * plane + p]])
        } else {
            let v = im.data[p];
            image::Rgb([v, v, v])
        }
    })
}

/// Where the parts of the grid go, in pixels: tiles of the largest image scaled twice, with
/// room under each for two lines of text (the class and the score).
struct Layout {
    scale: u32,
    pad: u32,
    tile: u32,
    cell_w: u32,
    cell_h: u32,
    label_w: u32,
    gap: u32,
    title_h: u32,
    half_w: u32,
    /// Where the first row starts: under the title and the halves' headings.
    top: u32,
    w: u32,
    h: u32,
}

impl Layout {
    fn new(grids: &[ClassGrid]) -> Self {
        let (scale, pad) = (2u32, 4u32);
        let tile = grids
            .iter()
            .flat_map(|g| g.top.iter().chain(&g.bottom))
            .map(|(_, im, _)| (im.width.max(im.height)) as u32 * scale)
            .max()
            .unwrap_or(56);
        // Room under each tile for two lines of text: the class and the score.
        let (cell_w, cell_h) = (tile.max(66), tile + 30);
        let (label_w, gap, title_h, halves_h) = (108u32, 28u32, 36u32, 26u32);
        let per = GRID_PER_END as u32;
        let half_w = per * (cell_w + pad);
        let w = label_w + 2 * half_w + gap + pad;
        let rows = grids.len().max(1) as u32;
        let top = title_h + halves_h;
        let h = top + rows * (cell_h + pad) + pad;
        Self {
            scale,
            pad,
            tile,
            cell_w,
            cell_h,
            label_w,
            gap,
            title_h,
            half_w,
            top,
            w,
            h,
        }
    }

    /// The left edge of cell `c` of the left or the right half.
    fn x_of(&self, right: bool, c: u32) -> u32 {
        let half = if right { self.half_w + self.gap } else { 0 };
        self.label_w + half + c * (self.cell_w + self.pad)
    }

    /// The top edge of row `row`.
    fn y_of(&self, row: u32) -> u32 {
        self.top + row * (self.cell_h + self.pad)
    }
}

/// Black text of `size` pixels, anchored at its top and at `pos` horizontally.
fn style(size: u32, pos: HPos) -> TextStyle<'static> {
    TextStyle::from(("sans-serif", size).into_font())
        .color(&BLACK)
        .pos(Pos::new(pos, VPos::Top))
}

fn at(x: u32, y: u32) -> (i32, i32) {
    (x as i32, y as i32)
}

/// All classes in one picture, titled: a row per class (its name on the left), the most
/// memorized on the left half (highest score first), a gap, the least memorized on the right
/// half (lowest score first); under each tile its class and score.
///
/// `memorized`: whether the set's highest scores may be called memorization
/// ([`crate::audit::text::scores_are_memorization`]); else the titles speak of scores only.
pub fn grid_png(
    grids: &[ClassGrid],
    set: SplitSet,
    memorized: bool,
    classes: &[String],
) -> Result<Vec<u8>> {
    font_ready()?;
    let l = Layout::new(grids);
    let mut canvas = image::RgbImage::from_pixel(l.w, l.h, image::Rgb([255, 255, 255]));
    for (row, g) in grids.iter().enumerate() {
        for (right, tiles) in [(false, &g.top), (true, &g.bottom)] {
            for (c, (_, im, _)) in tiles.iter().enumerate() {
                let img = to_rgb(im, l.scale);
                let x = l.x_of(right, c as u32) + (l.cell_w - img.width()) / 2;
                image::imageops::overlay(
                    &mut canvas,
                    &img,
                    i64::from(x),
                    i64::from(l.y_of(row as u32)),
                );
            }
        }
    }
    let mut buf = canvas.into_raw();
    {
        let root = BitMapBackend::with_buffer(&mut buf, (l.w, l.h)).into_drawing_area();
        headings(&root, &l, set, memorized)?;
        if grids.is_empty() {
            root.draw_text(
                "no scored examples",
                &style(14, HPos::Left),
                at(l.pad, l.top),
            )
            .map_err(plot_err)?;
        }
        for (row, g) in grids.iter().enumerate() {
            row_text(&root, &l, row as u32, g, classes)?;
        }
        root.present().map_err(plot_err)?;
    }
    png(buf, l.w, l.h)
}

/// The title, and the heading of each half with a rule under it.
fn headings(
    root: &DrawingArea<BitMapBackend<'_>, Shift>,
    l: &Layout,
    set: SplitSet,
    memorized: bool,
) -> Result<()> {
    let title = if memorized {
        format!(
            "Most and least memorized examples per class ({} set)",
            set.name()
        )
    } else {
        format!("Highest and lowest scores per class ({} set)", set.name())
    };
    root.draw_text(&title, &style(20, HPos::Center), at(l.w / 2, 8))
        .map_err(plot_err)?;
    let halves = if memorized {
        [
            (false, "most memorized: highest scores, highest first"),
            (true, "least memorized: lowest scores, lowest first"),
        ]
    } else {
        [
            (false, "highest scores, highest first"),
            (true, "lowest scores, lowest first"),
        ]
    };
    for (right, text) in halves {
        let x = l.x_of(right, 0);
        root.draw_text(
            text,
            &style(15, HPos::Center),
            at(x + l.half_w / 2, l.title_h),
        )
        .map_err(plot_err)?;
        let y = l.top - 4;
        root.draw(&PathElement::new(
            vec![at(x, y), at(x + l.half_w - l.pad, y)],
            BLACK.mix(0.5),
        ))
        .map_err(plot_err)?;
    }
    Ok(())
}

/// A row's class on the left (number, and name where the dataset has names), and under each
/// tile its class and score.
fn row_text(
    root: &DrawingArea<BitMapBackend<'_>, Shift>,
    l: &Layout,
    row: u32,
    g: &ClassGrid,
    classes: &[String],
) -> Result<()> {
    let (y, tile) = (l.y_of(row), l.tile);
    let number = g
        .label
        .map_or("unlabelled".into(), |l| format!("class {l}"));
    let name = g.label.and_then(|l| classes.get(usize::from(l)));
    root.draw_text(
        &number,
        &style(14, HPos::Left),
        at(l.pad, y + tile / 2 - 16),
    )
    .map_err(plot_err)?;
    if let Some(name) = name {
        root.draw_text(name, &style(14, HPos::Left), at(l.pad, y + tile / 2))
            .map_err(plot_err)?;
    }
    // Each tile names its class: by name where the dataset has names.
    let tile_class = name.cloned().unwrap_or_else(|| number.clone());
    for (right, tiles) in [(false, &g.top), (true, &g.bottom)] {
        for (c, (_, _, score)) in tiles.iter().enumerate() {
            let x = l.x_of(right, c as u32) + l.cell_w / 2;
            root.draw_text(&tile_class, &style(11, HPos::Center), at(x, y + tile + 2))
                .map_err(plot_err)?;
            root.draw_text(&num(*score), &style(11, HPos::Center), at(x, y + tile + 15))
                .map_err(plot_err)?;
        }
    }
    Ok(())
}
