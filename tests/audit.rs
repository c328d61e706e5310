//! `sslmem audit` on the default pair and real Fashion-MNIST: the files it writes, a run killed
//! mid-way (with a torn journal line) that resumes to the same files as an uninterrupted run,
//! reruns, mismatched parameters, unreadable inputs, an audit run as shards and merged into
//! the same files, and the report as headless Chromium renders it.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{bin, random_bundle, stderr};
use serde_json::Value;

const BUNDLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/fashion-mnist-canaries");
const FILES: [&str; 9] = [
    "scores.jsonl",
    "scores.csv",
    "summary.json",
    "report.html",
    "figures/score-histogram.png",
    "figures/score-vs-typicality.png",
    "figures/memorized-grid.png",
    "figures/roc.png",
    "figures/layer-mem.png",
];

fn args(out: &Path, limit: &str) -> Vec<String> {
    [
        "audit",
        "--bundle",
        BUNDLE,
        "--out",
        out.to_str().expect("utf8"),
        "--limit",
        limit,
        "--pairs",
        "4",
        "--chunk",
        "4",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The report's date (`SOURCE_DATE_EPOCH`), fixed so that two audits write the same bytes.
const DATE: &str = "1700000000";

/// `sslmem` with the report's date fixed.
fn sslmem() -> Command {
    let mut c = bin();
    c.env("SOURCE_DATE_EPOCH", DATE)
        .env_remove("SSLMEM_AUDIT_SHARD");
    c
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The class names in the rows of the report's grid table, in order.
fn grid_rows(html: &str) -> Vec<String> {
    let start = html.find("<table class=\"grid\">").expect("grid table");
    let table = &html[start..start + html[start..].find("</table>").expect("end")];
    table
        .split("<tr><th class=\"l\">")
        .skip(2) // before the first row, and the header's "class"
        .map(|row| row.split("</th>").next().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn the_grid_shows_the_classes_asked_for_in_their_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (all, some) = (dir.path().join("all"), dir.path().join("some"));
    let o = sslmem().args(args(&all, "30")).output().expect("run");
    assert!(o.status.success(), "{}", stderr(&o));
    let mut a = args(&some, "30");
    a.extend(["--grid-classes".into(), "3,1,42".into()]);
    let o = sslmem().args(&a).output().expect("run");
    assert!(o.status.success(), "{}", stderr(&o));
    let every = grid_rows(&read(&all, "report.html"));
    assert!(every.len() > 2, "{every:?}");
    assert!(every.contains(&"3 Dress".to_string()) && every.contains(&"1 Trouser".to_string()));
    // Class 42 has no example: no row.
    assert_eq!(
        grid_rows(&read(&some, "report.html")),
        ["3 Dress", "1 Trouser"]
    );
    let height = |d: &Path| {
        image::open(d.join("figures/memorized-grid.png"))
            .expect("png")
            .height()
    };
    assert!(height(&some) < height(&all));
    // The scores are the same: the option only chooses what the figure shows.
    assert_eq!(read(&all, "scores.csv"), read(&some, "scores.csv"));
}

#[test]
fn audit_writes_scores_statistics_and_checks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("a");
    let o = sslmem().args(args(&out, "30")).output().expect("run");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        !out.join(".audit").exists(),
        "the journal is removed at the end"
    );
    // The summary is printed by the audit itself, on stdout; a split audit needs no caveat.
    let printed = common::stdout(&o);
    for line in [
        "mean SSLMem score by set (candidate: f saw them, g did not; independent: g saw them, f did not; extra: neither saw them):",
        "checks (expected signs of the sets; the canary positive control):",
        "membership evaluation (members: seen by f; non-members: seen by neither):",
        "most memorized candidates:",
    ] {
        assert!(printed.lines().any(|l| l == line), "no '{line}' in:\n{printed}");
    }
    assert!(
        printed.contains("  pass  ") || printed.contains("  FAIL  "),
        "{printed}"
    );
    assert!(!printed.contains("note:"), "{printed}");
    // A rerun of the finished audit prints the same summary.
    let again = sslmem().args(args(&out, "30")).output().expect("rerun");
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(common::stdout(&again), printed);

    let csv = read(&out, "scores.csv");
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    for col in [
        "set",
        "index",
        "label",
        "align_f",
        "align_g",
        "score",
        "score_ratio",
        "stderr",
        "rank",
        "score_range",
        "score_max",
    ] {
        assert!(header.contains(&col), "column {col} missing: {header:?}");
    }
    assert_eq!(
        lines.count(),
        210,
        "30 of each of the four split sets and the three canary sets"
    );

    // The candidate rows name the split's candidate examples, in index order, ranked 1..=30.
    let m: Value = serde_json::from_str(&read(Path::new(BUNDLE), "sslmem.json")).expect("manifest");
    let first = m["split"]["candidate"][0][0].as_u64().expect("index");
    let rows: Vec<Value> = read(&out, "scores.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let cand: Vec<&Value> = rows.iter().filter(|r| r["set"] == "candidate").collect();
    assert_eq!(cand[0]["index"].as_u64(), Some(first));
    assert_eq!(cand[0]["input"], format!("fashion-mnist:train#{first}"));
    let mut ranks: Vec<u64> = cand
        .iter()
        .map(|r| r["rank"].as_u64().expect("rank"))
        .collect();
    ranks.sort_unstable();
    assert_eq!(ranks, (1..=30).collect::<Vec<u64>>());
    let top = cand.iter().find(|r| r["rank"] == 1).expect("rank 1");
    let best = cand
        .iter()
        .map(|r| r["score"].as_f64().expect("score"))
        .fold(f64::NEG_INFINITY, f64::max);
    assert_eq!(top["score"].as_f64(), Some(best));
    // Each row's score is the difference of its alignments.
    for r in &rows {
        let (f, g, s) = (
            r["align_f"].as_f64(),
            r["align_g"].as_f64(),
            r["score"].as_f64(),
        );
        let (f, g, s) = (f.expect("f"), g.expect("g"), s.expect("s"));
        assert!((g - f - s).abs() < 1e-12);
    }
    // The same numbers as `sslmem score` for the same example.
    let o = bin()
        .args(["score", "--bundle", BUNDLE, "--pairs", "4"])
        .arg(format!("fashion-mnist:train[{first}]"))
        .output()
        .expect("score");
    assert!(o.status.success(), "{}", stderr(&o));
    let s: Value = serde_json::from_str(common::stdout(&o).trim()).expect("json");
    assert_eq!(s["score"], cand[0]["score"]);

    let sum: Value = serde_json::from_str(&read(&out, "summary.json")).expect("summary");
    for set in ["candidate", "shared", "independent", "extra"] {
        assert_eq!(sum["sets"][set]["count"], 30, "{set}");
        assert!(sum["classes"][set]
            .as_object()
            .is_some_and(|c| !c.is_empty()));
    }
    for set in ["canary-candidate", "canary-independent", "canary-heldout"] {
        assert_eq!(sum["sets"][set]["count"], 30, "{set}");
        assert!(rows
            .iter()
            .filter(|r| r["set"] == set)
            .all(|r| r["input"].as_str().is_some_and(|i| i.contains("canaries/"))));
    }
    let tests = sum["tests"].as_array().expect("tests");
    assert_eq!(tests.len(), 5);
    for t in tests {
        let canary = t["a"].as_str().is_some_and(|a| a.starts_with("canary-"));
        assert_eq!(t["b"], if canary { "canary-heldout" } else { "shared" });
        for k in ["student", "welch", "mann_whitney"] {
            let p = t[k]["p"]["two_sided"].as_f64().expect("p");
            assert!((0.0..=1.0).contains(&p), "{k}: {p}");
        }
    }
    assert_eq!(sum["checks"].as_array().expect("checks").len(), 7);
    let membership = sum["membership"].as_array().expect("membership");
    assert_eq!(membership.len(), 2);
    for m in membership {
        assert!(m["auc"].as_f64().is_some_and(|a| (0.0..=1.0).contains(&a)));
    }
    assert_eq!(sum["params"]["pairs"], 4);

    // summary.json is its typed record serialized: read back and written again, the same bytes.
    let text = read(&out, "summary.json");
    let typed: sslmem::audit::summary::Summary = serde_json::from_str(&text).expect("typed");
    let again = serde_json::to_string_pretty(&typed).expect("json") + "\n";
    assert_eq!(again, text);
}

fn journal_lines(out: &Path) -> usize {
    std::fs::read_to_string(out.join(".audit/journal.jsonl"))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

#[test]
fn a_killed_audit_resumes_to_the_same_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let straight = dir.path().join("straight");
    let o = sslmem().args(args(&straight, "60")).output().expect("run");
    assert!(o.status.success(), "{}", stderr(&o));

    let resumed = dir.path().join("resumed");
    let mut child = sslmem()
        .args(args(&resumed, "60"))
        .stderr(Stdio::null())
        .spawn()
        .expect("start");
    let start = Instant::now();
    while journal_lines(&resumed) < 12 {
        assert!(
            child.try_wait().expect("poll").is_none(),
            "the audit ended before it could be killed"
        );
        assert!(start.elapsed() < Duration::from_secs(120), "no progress");
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().expect("kill");
    let _ = child.wait();
    let done = journal_lines(&resumed);
    // 60 of each split set and the 50 of each canary set.
    assert!(done < 390, "killed before the end ({done} of 390)");
    for f in FILES {
        assert!(
            !resumed.join(f).exists(),
            "{f} exists before the audit finished"
        );
    }
    // A crash in the middle of a write leaves a torn line; the resume must cut it off.
    let journal = resumed.join(".audit/journal.jsonl");
    let mut text = std::fs::read_to_string(&journal).expect("journal");
    text.push_str("{\"set\":\"shared\",\"index\":12,\"inp");
    std::fs::write(&journal, text).expect("tear");

    let o = sslmem()
        .args(args(&resumed, "60"))
        .output()
        .expect("resume");
    assert!(o.status.success(), "{}", stderr(&o));
    for f in FILES {
        let (a, b) = (
            std::fs::read(straight.join(f)),
            std::fs::read(resumed.join(f)),
        );
        assert!(
            a.expect(f) == b.expect(f),
            "{f} differs after kill and resume"
        );
    }
    // No duplicates, no gaps.
    let ids: Vec<(String, u64)> = read(&resumed, "scores.jsonl")
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("json"))
        .map(|v| {
            (
                v["set"].as_str().unwrap_or_default().to_string(),
                v["index"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!((ids.len(), unique.len()), (390, 390));

    // Running the finished audit again changes nothing and succeeds.
    let before = read(&resumed, "summary.json");
    let o = sslmem().args(args(&resumed, "60")).output().expect("again");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(before, read(&resumed, "summary.json"));
    // Other parameters on a finished audit: refused, nothing overwritten.
    let mut other = args(&resumed, "60");
    other[8] = "5".into(); // --pairs
    let o = sslmem().args(&other).output().expect("other");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("other parameters"), "{}", stderr(&o));
    assert_eq!(before, read(&resumed, "summary.json"));
}

#[test]
fn an_unfinished_audit_refuses_other_parameters() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("a");
    let mut child = sslmem()
        .args(args(&out, "60"))
        .stderr(Stdio::null())
        .spawn()
        .expect("start");
    let start = Instant::now();
    while journal_lines(&out) < 4 && child.try_wait().expect("poll").is_none() {
        assert!(start.elapsed() < Duration::from_secs(120), "no progress");
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().expect("kill");
    let _ = child.wait();
    assert!(out.join(".audit/shard.json").is_file());
    let mut other = args(&out, "60");
    other.extend(["--seed".to_string(), "3".to_string()]);
    let o = sslmem().args(&other).output().expect("run");
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("unfinished audit"), "{}", stderr(&o));
    // The original command still finishes it.
    let o = sslmem().args(args(&out, "60")).output().expect("resume");
    assert!(o.status.success(), "{}", stderr(&o));
}

fn merge(shards: &[&Path], out: &Path) -> std::process::Output {
    sslmem()
        .arg("audit-merge")
        .args(shards)
        .arg("--out")
        .arg(out)
        .output()
        .expect("merge")
}

#[test]
fn a_sharded_audit_merges_to_the_files_of_the_unsharded_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let whole = dir.path().join("whole");
    let o = sslmem().args(args(&whole, "20")).output().expect("run");
    assert!(o.status.success(), "{}", stderr(&o));

    // Three shards, each into its own folder; shard 2 is told through the environment.
    let parent = dir.path().join("shards");
    let shard_dir = |i: usize| parent.join(i.to_string());
    let shard = |i: usize| {
        let mut c = sslmem();
        c.args(args(&shard_dir(i), "20"));
        if i == 2 {
            c.env("SSLMEM_AUDIT_SHARD", "2/3");
        } else {
            c.args(["--shard", &format!("{i}/3")]);
        }
        c.output().expect("shard")
    };
    for i in 0..2 {
        let o = shard(i);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    // 7 sets x 20 = 140 examples: contiguous slices 0..46, 46..93, 93..140.
    let rec: Value = serde_json::from_str(&read(&shard_dir(1), "shard.json")).expect("shard.json");
    assert_eq!(rec["shard"], serde_json::json!({"index": 1, "count": 3}));
    assert_eq!(
        (rec["start"].as_u64(), rec["end"].as_u64()),
        (Some(46), Some(93))
    );
    assert_eq!(rec["params"]["items"], 140);
    for f in FILES {
        assert!(!shard_dir(0).join(f).exists(), "a shard writes no {f}");
    }

    // A missing shard, and an unfinished one, are refused.
    let merged = dir.path().join("merged");
    let o = merge(&[&shard_dir(0), &shard_dir(1)], &merged);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("shard 2/3 of this audit is missing"),
        "{}",
        stderr(&o)
    );
    let mut child = sslmem()
        .args(args(&shard_dir(2), "20"))
        .env("SSLMEM_AUDIT_SHARD", "2/3")
        .stderr(Stdio::null())
        .spawn()
        .expect("start");
    let journal = shard_dir(2).join("journal.jsonl");
    let lines = || {
        std::fs::read_to_string(&journal)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    let start = Instant::now();
    while lines() < 3 {
        assert!(
            child.try_wait().expect("poll").is_none(),
            "ended before it was killed"
        );
        assert!(start.elapsed() < Duration::from_secs(120), "no progress");
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().expect("kill");
    let _ = child.wait();
    let mut text = std::fs::read_to_string(&journal).expect("journal");
    assert!(text.lines().count() < 47, "killed before the end");
    text.push_str("{\"set\":\"canary-ca");
    std::fs::write(&journal, text).expect("tear");
    let o = merge(&[&parent], &merged);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("unfinished"), "{}", stderr(&o));
    assert!(!merged.join("summary.json").exists());
    // The killed shard resumes with its own command.
    let o = shard(2);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(lines(), 47);

    // All three, given as the folder that holds them: the unsharded audit's files, byte for byte.
    let o = merge(&[&parent], &merged);
    assert!(o.status.success(), "{}", stderr(&o));
    for f in FILES {
        let (a, b) = (std::fs::read(whole.join(f)), std::fs::read(merged.join(f)));
        assert!(
            a.expect(f) == b.expect(f),
            "{f} differs between 3 shards and 1"
        );
    }
    assert!(
        shard_dir(0).join("journal.jsonl").is_file(),
        "shards are left as they were"
    );
    // Merging again changes nothing; a shard rerun finds itself complete.
    let o = merge(&[&shard_dir(2), &shard_dir(0), &shard_dir(1)], &merged);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = shard(1);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("already complete"), "{}", stderr(&o));

    // Shards that do not make one audit are refused.
    let o = merge(
        &[&shard_dir(0), &shard_dir(0), &shard_dir(1), &shard_dir(2)],
        &dir.path().join("x"),
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("given twice"), "{}", stderr(&o));
    let other = dir.path().join("other");
    let mut a = args(&other, "20");
    a[8] = "5".into(); // --pairs
    let o = sslmem()
        .args(&a)
        .args(["--shard", "0/3"])
        .output()
        .expect("shard");
    assert!(o.status.success(), "{}", stderr(&o));
    let o = merge(
        &[&other, &shard_dir(1), &shard_dir(2)],
        &dir.path().join("y"),
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("different audits"), "{}", stderr(&o));
    // A shard folder holds one shard.
    let o = sslmem()
        .args(args(&shard_dir(0), "20"))
        .args(["--shard", "1/3"])
        .output()
        .expect("shard");
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("holds shard 0/3"), "{}", stderr(&o));

    // The run record names an equivalent command: the same for the sharded and whole audits.
    let html = read(&merged, "report.html");
    let command = format!(
        "sslmem audit --bundle {BUNDLE} --dataset fashion-mnist --sets candidate,shared,independent,extra,canary-candidate,canary-independent,canary-heldout --limit 20 --pairs 4 --seed 0 --mode aug-vs-aug --distance l2 --normalize l2"
    );
    assert!(
        html.contains(&format!("<code id=\"command\">{command}</code>")),
        "run record without the command"
    );
}

#[test]
fn inputs_mode_scores_folders_and_reports_unreadable_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bundle = random_bundle(dir.path(), "b", &[]);
    let imgs = dir.path().join("imgs");
    std::fs::create_dir_all(&imgs).expect("mkdir");
    for i in 0..5u8 {
        image::GrayImage::from_pixel(28, 28, image::Luma([i * 40]))
            .save(imgs.join(format!("{i}.png")))
            .expect("png");
    }
    // Any size: resized as `sslmem score` resizes.
    image::GrayImage::from_pixel(40, 30, image::Luma([99]))
        .save(imgs.join("5-wide.png"))
        .expect("png");
    std::fs::write(imgs.join("9-broken.png"), b"not a png").expect("write");
    let out = dir.path().join("out");
    let o = bin()
        .args(["audit", "--bundle", bundle.to_str().expect("utf8")])
        .args(["--out", out.to_str().expect("utf8"), "--pairs", "3"])
        .arg(&imgs)
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(1), "one input failed: {}", stderr(&o));
    let sum: Value = serde_json::from_str(&read(&out, "summary.json")).expect("summary");
    assert_eq!(sum["sets"]["inputs"]["count"], 6);
    let failed = sum["failed"].as_array().expect("failed");
    assert_eq!(failed.len(), 1);
    assert!(failed[0]["input"]
        .as_str()
        .is_some_and(|s| s.ends_with("9-broken.png")));
    assert_eq!(read(&out, "scores.csv").lines().count(), 7);
    // Nothing printed reads like a finding: what cannot be concluded comes first, and no
    // check or membership section is shown empty.
    let printed = common::stdout(&o);
    assert!(
        printed.contains("note: Membership of these images is unknown"),
        "{printed}"
    );
    assert!(printed.contains("--non-members"), "{printed}");
    assert!(
        printed.contains("highest scores (membership unknown: not evidence of memorization):"),
        "{printed}"
    );
    assert!(printed.contains("1 image could not be read"), "{printed}");
    for absent in ["checks (", "membership evaluation", "most memorized"] {
        assert!(
            !printed.lines().any(|l| l.starts_with(absent)),
            "'{absent}' in:\n{printed}"
        );
    }

    // A bundle without a split and no inputs: a clear error.
    let o = bin()
        .args(["audit", "--bundle", bundle.to_str().expect("utf8")])
        .args(["--out", dir.path().join("x").to_str().expect("utf8")])
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no split"), "{}", stderr(&o));
}

/// Renders `report` in headless Chromium (scripts/check-report.mjs) and returns its verdict,
/// checked for what every report must have: no page, console or request errors, and no empty
/// section (every table has a row besides its header). With `shot`, a full-page screenshot is
/// saved there.
fn render(npm_dir: &str, report: &Path, shot: Option<&Path>) -> Value {
    let mut c = Command::new("node");
    c.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/check-report.mjs"
    ))
    .arg(report);
    if let Some(shot) = shot {
        c.arg(shot);
    }
    let o = c.env("NPM_DIR", npm_dir).output().expect("node");
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(common::stdout(&o).trim()).expect("verdict");
    for k in ["pageErrors", "consoleErrors", "failedRequests"] {
        assert_eq!(v[k].as_array().map(Vec::len), Some(0), "{k}: {}", v[k]);
    }
    for n in v["tableRows"].as_array().expect("tables") {
        assert!(n.as_u64().is_some_and(|n| n >= 2), "an empty table: {v}");
    }
    v
}

/// The Playwright install `scripts/setup.sh --browser` records, when there is one.
fn playwright_dir() -> Option<String> {
    let f = sslmem::runtime::sslmem_home()
        .join("browser")
        .join("NPM_DIR");
    let dir = std::fs::read_to_string(f).ok()?.trim().to_string();
    (Path::new(&dir)
        .join("node_modules/playwright-core")
        .is_dir()
        && Path::new("/usr/bin/chromium").is_file())
    .then_some(dir)
}

#[test]
fn report_renders_in_headless_chromium_with_every_figure() {
    let Some(npm_dir) = playwright_dir() else {
        assert!(
            std::env::var_os("SSLMEM_REQUIRE_BROWSER").is_none(),
            "SSLMEM_REQUIRE_BROWSER is set but Chromium/Playwright are missing: run scripts/setup.sh --browser"
        );
        eprintln!("skipped: no Chromium/Playwright (scripts/setup.sh --browser)");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("a");
    let o = sslmem().args(args(&out, "40")).output().expect("run");
    assert!(o.status.success(), "{}", stderr(&o));
    for f in [
        "score-histogram.png",
        "score-vs-typicality.png",
        "memorized-grid.png",
        "roc.png",
    ] {
        let bytes = std::fs::read(out.join("figures").join(f)).expect("figure file");
        let img = image::load_from_memory(&bytes).expect("a PNG");
        assert!(img.width() > 100 && img.height() > 100, "{f}");
    }
    let html = read(&out, "report.html");
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "self-contained"
    );

    // The rendered page is kept for a person to look at: target/tmp/audit-report/.
    let keep = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("audit-report");
    std::fs::create_dir_all(&keep).expect("mkdir");
    let shot = keep.join("report.png");
    let _ = std::fs::remove_file(&shot);
    std::fs::copy(out.join("report.html"), keep.join("report.html")).expect("copy report");
    let v = render(&npm_dir, &out.join("report.html"), Some(&shot));
    eprintln!("screenshot of the rendered report: {}", shot.display());
    let png = image::open(&shot).expect("the screenshot is a PNG");
    assert!(
        png.width() >= 1000 && png.height() > 3000,
        "a full page: {}x{}",
        png.width(),
        png.height()
    );
    assert_eq!(v["title"], "SSLMem audit");
    assert_eq!(v["scope"], "", "split sets with extra: nothing to caveat");
    assert_eq!(
        v["figures"], 6,
        "histogram, ROC, every estimator's ROC, typicality, grid, LayerMem"
    );
    let imgs = v["images"].as_array().expect("images");
    assert!(imgs.iter().filter(|i| i["figure"] == true).count() == 6);
    // 10 classes x (up to 8 most + 8 least memorized) thumbnails besides the figures.
    assert!(imgs.len() > 5 + 10 * 2, "{} images", imgs.len());
    for i in imgs {
        assert!(
            i["loaded"] == true && i["visible"] == true,
            "not shown: {i}"
        );
    }
    // Every figure says what it shows and how to read it.
    for c in v["captions"].as_array().expect("captions") {
        let text = c["text"].as_str().unwrap_or_default();
        assert!(
            text.contains("What it shows.") && text.contains("How to read it.") && text.len() > 150,
            "caption of {}: {text}",
            c["id"]
        );
    }
    // The run record comes first and says who wrote the files, from what, how and when.
    let headings = v["headings"].as_array().expect("headings");
    assert_eq!(headings.first().and_then(Value::as_str), Some("Run record"));
    let r = &v["runRecord"];
    assert_eq!(r["written"], "2023-11-14 22:13:20 UTC", "SOURCE_DATE_EPOCH");
    let program = r["program"].as_str().unwrap_or_default();
    assert!(
        program.starts_with(&format!("sslmem {} (git revision ", sslmem::VERSION))
            && program.contains(sslmem::GIT_REVISION),
        "{program}"
    );
    assert!(
        r["command"]
            .as_str()
            .is_some_and(|c| c.starts_with("sslmem audit --bundle ")),
        "{}",
        r["command"]
    );
    assert!(
        r["manifest"].as_str().is_some_and(|m| m.contains("sha256")),
        "{}",
        r["manifest"]
    );
    for k in [
        "bundle",
        "f (trained with the audited data)",
        "g (trained without it)",
        "dataset",
        "sets",
        "examples",
        "estimator",
    ] {
        assert!(
            r[k].as_str().is_some_and(|t| !t.is_empty()),
            "run record without {k}: {r}"
        );
    }
    // Scores by class: two header rows and the ten Fashion-MNIST classes.
    assert!(headings.iter().any(|h| h == "Scores by class"));
    assert_eq!(v["classRows"], 12);
}

/// Copies a folder and everything under it.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        let dst = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_tree(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), &dst).expect("copy");
        }
    }
}

/// Whether two JSON values are the same but for numbers within 1e-5 (relative, or absolute
/// near 0): ONNX Runtime's CPU kernels differ in the last bits between processors (AVX2 and
/// AVX-512 sum in other orders, and a set-level ratio amplifies that), while another draw of the augmentations would change every
/// number in the first digits.
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (
                x.as_f64().unwrap_or(f64::NAN),
                y.as_f64().unwrap_or(f64::NAN),
            );
            (x - y).abs() <= 1e-5 * x.abs().max(y.abs()).max(1.0)
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.keys().eq(y.keys()) && x.iter().zip(y).all(|((_, x), (_, y))| same_json(x, y))
        }
        _ => a == b,
    }
}

/// `scores.jsonl` text `got` has the golden lines `want`, field by field ([`same_json`]).
fn assert_same_lines(got: &str, want: &str) {
    assert_eq!(got.lines().count(), want.lines().count(), "line count");
    for (i, (g, w)) in got.lines().zip(want.lines()).enumerate() {
        let (g, w): (Value, Value) = (
            serde_json::from_str(g).expect("json"),
            serde_json::from_str(w).expect("json"),
        );
        assert!(same_json(&g, &w), "line {}: {g}\nvs the golden {w}", i + 1);
    }
}

/// The default's audit writes the bytes it wrote when the augmentations were a fixed pipeline
/// rather than a list of transforms (issue 19): `tests/golden/default-audit-scores.jsonl` was
/// written with these arguments by the `sslmem` of 56c0930 (and each line given the two
/// one-model columns, null without `--reference`, when they were added: issue 23), with the bundle given as
/// `models/fashion-mnist-canaries` (a canary's `input` is its path under the bundle as given).
/// The same bundle with `augment` in the object form its manifest had then writes them too.
#[test]
fn the_default_bundles_audit_scores_are_those_of_the_fixed_pipeline() {
    let golden = read(
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden")),
        "default-audit-scores.jsonl",
    );
    let relative = |scores: String, bundle: &Path| {
        scores.replace(
            &format!("\"{}/", arg(bundle)),
            "\"models/fashion-mnist-canaries/",
        )
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("list");
    let o = sslmem().args(args(&out, "6")).output().expect("run");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_same_lines(
        &relative(read(&out, "scores.jsonl"), Path::new(BUNDLE)),
        &golden,
    );

    let bundle = dir.path().join("bundle");
    copy_tree(Path::new(BUNDLE), &bundle);
    let mut m: Value = serde_json::from_str(&read(&bundle, "sslmem.json")).expect("manifest");
    assert!(
        m["augment"].is_array(),
        "the committed default has the list form"
    );
    m["augment"] = serde_json::from_str(
        r#"{"crop": {"scale": [0.3, 1.0], "ratio": [0.75, 1.3333333333333333]},
            "flip_p": 0.5,
            "jitter": {"brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.1, "p": 0.8},
            "grayscale_p": 0.2, "blur": null, "solarize": null}"#,
    )
    .expect("object");
    let text = serde_json::to_string_pretty(&m).expect("json");
    std::fs::write(bundle.join("sslmem.json"), text).expect("write");
    let out = dir.path().join("object");
    let mut a = args(&out, "6");
    a[2] = arg(&bundle).to_string();
    let o = sslmem().args(a).output().expect("run");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_same_lines(&relative(read(&out, "scores.jsonl"), &bundle), &golden);
}

#[test]
fn the_default_bundles_canaries_are_remade_from_their_recorded_spec() {
    // Guards reproducibility: a change to the canary generator must not change the canaries
    // that a recorded spec stands for.
    let m: Value = serde_json::from_str(&read(Path::new(BUNDLE), "sslmem.json")).expect("manifest");
    let c = &m["split"]["canaries"];
    let spec: sslmem::data::canary::CanarySpec =
        serde_json::from_value(c["spec"].clone()).expect("spec");
    let made = sslmem::data::canary::make(spec, 1, 28, 28).expect("canaries");
    let files = c["files"].as_array().expect("files");
    assert_eq!(made.len(), files.len());
    for (i, f) in files.iter().enumerate() {
        let path = Path::new(BUNDLE).join(f["path"].as_str().expect("path"));
        let png = image::open(&path).expect("png").to_luma8().into_raw();
        assert_eq!(png, made.get(i).expect("canary").data, "{}", path.display());
    }
}

/// The first `n` candidates of the default bundle's split (dataset indices, in order).
fn default_candidates(n: usize) -> Vec<usize> {
    let m: Value = serde_json::from_str(&read(Path::new(BUNDLE), "sslmem.json")).expect("manifest");
    m["split"]["candidate"]
        .as_array()
        .expect("ranges")
        .iter()
        .flat_map(|r| {
            let (a, b) = (r[0].as_u64().expect("start"), r[1].as_u64().expect("end"));
            a as usize..b as usize
        })
        .take(n)
        .collect()
}

/// `path` as an argument.
fn arg(path: &Path) -> &str {
    path.to_str().expect("utf8")
}

/// Rows of an audit's scores.csv with `index` cleared: a set the user names numbers its
/// images by position, the split by dataset index.
fn rows_without_index(out: &Path) -> Vec<sslmem::audit::scores::ScoreRow> {
    let mut rows =
        sslmem::audit::scores::read_csv(&out.join("scores.csv"), &["set"]).expect("scores.csv");
    for r in &mut rows {
        r.index = 0;
    }
    rows
}

#[test]
fn members_and_non_members_audit_as_the_split_sets_do() {
    use sslmem::audit::SplitSet;
    let dir = tempfile::tempdir().expect("tempdir");
    let split = dir.path().join("split");
    let o = sslmem()
        .args(["audit", "--bundle", BUNDLE, "--out", arg(&split)])
        .args(["--sets", "candidate,extra", "--limit", "40", "--pairs", "4"])
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", stderr(&o));
    let split_printed = common::stdout(&o);

    // The same images named by the user, where the truth is known: the default's first 40
    // candidates as an input list of dataset examples, its first 40 extra images (the test
    // set's first ones) as a dataset range.
    let rows = sslmem::audit::scores::read_csv(&split.join("scores.csv"), &["set", "index"])
        .expect("scores.csv");
    let of = |set| -> Vec<usize> {
        rows.iter()
            .filter(|r| r.set == set)
            .map(|r| r.index)
            .collect()
    };
    let (candidates, extra) = (of(SplitSet::Candidate), of(SplitSet::Extra));
    assert_eq!(candidates.len(), 40);
    assert_eq!(extra, (0..40).collect::<Vec<_>>());
    let list = dir.path().join("members.txt");
    let mut text = String::from("# the default bundle's first 40 candidates\n");
    for i in &candidates {
        text.push_str(&format!("fashion-mnist:train[{i}]\n"));
    }
    std::fs::write(&list, text).expect("write");
    let members = format!("@{}", arg(&list));
    let user = dir.path().join("user");
    let o = sslmem()
        .args([
            "audit",
            "--bundle",
            BUNDLE,
            "--out",
            arg(&user),
            "--pairs",
            "4",
        ])
        .args(["--members", &members])
        .args(["--non-members", "fashion-mnist:test[0:40]"])
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", stderr(&o));
    let user_printed = common::stdout(&o);

    // The same images and seed: the same scores, statistics, checks and membership ROC.
    assert_eq!(rows_without_index(&user), rows_without_index(&split));
    let a: Value = serde_json::from_str(&read(&split, "summary.json")).expect("summary");
    let b: Value = serde_json::from_str(&read(&user, "summary.json")).expect("summary");
    for k in [
        "sets",
        "classes",
        "tests",
        "typicality",
        "membership",
        "checks",
    ] {
        assert_eq!(a[k], b[k], "{k}");
    }
    assert!(b["membership"][0]["auc"].as_f64().is_some(), "{b}");
    // Without a shared set, members are tested against the non-members.
    assert_eq!(b["tests"][0]["a"], "candidate");
    assert_eq!(b["tests"][0]["b"], "extra");
    assert_eq!(b["params"]["sources"]["candidate"][0], members.as_str());
    assert_eq!(
        b["params"]["sources"]["extra"][0],
        "fashion-mnist:test[0:40]"
    );
    assert!(
        a["params"].get("sources").is_none(),
        "a split audit names no sources"
    );
    // Both printed summaries give the same checks and membership lines; the user's names
    // its sets' sources.
    let lines = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| {
                l.starts_with("  pass") || l.starts_with("  FAIL") || l.contains(" vs extra: AUC")
            })
            .map(String::from)
            .collect()
    };
    assert!(!lines(&split_printed).is_empty(), "{split_printed}");
    assert_eq!(lines(&user_printed), lines(&split_printed));
    assert!(
        user_printed.contains(&format!(
            "  candidate = --members {members} (f saw them, g did not)"
        )),
        "{user_printed}"
    );
    assert!(!user_printed.contains("note:"), "{user_printed}");
    // The command that reruns it names the sets as the user did.
    let html = read(&user, "report.html");
    assert!(
        html.contains(&format!(
            "--members {members} --non-members 'fashion-mnist:test[0:40]' --pairs 4"
        )),
        "command in the run record"
    );

    // A members folder and a non-members folder of PNG files of the same pixels (named so
    // that folder order is the split's; a hidden folder beside them is skipped): the same
    // scores, tests and ROC.
    let write_pngs = |dataset: &str, indices: &[usize], folder: &Path| {
        let data = sslmem::data::inputs::load_dataset(dataset).expect("dataset");
        std::fs::create_dir_all(folder.join(".thumbs")).expect("mkdir");
        for (k, &i) in indices.iter().enumerate() {
            let im = data.get(i).expect("image");
            let png = image::GrayImage::from_raw(im.width as u32, im.height as u32, im.data)
                .expect("gray image");
            png.save(folder.join(format!("{k:03}.png"))).expect("png");
            png.save(folder.join(".thumbs").join(format!("{k:03}.png")))
                .expect("png");
        }
    };
    let (member_dir, non_member_dir) = (dir.path().join("members"), dir.path().join("non"));
    write_pngs("fashion-mnist:train", &candidates, &member_dir);
    write_pngs("fashion-mnist:test", &extra, &non_member_dir);
    let pngs = dir.path().join("pngs");
    let o = sslmem()
        .args([
            "audit",
            "--bundle",
            BUNDLE,
            "--out",
            arg(&pngs),
            "--pairs",
            "4",
        ])
        .args(["--members", arg(&member_dir)])
        .args(["--non-members", arg(&non_member_dir)])
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", stderr(&o));
    let c: Value = serde_json::from_str(&read(&pngs, "summary.json")).expect("summary");
    assert_eq!(c["sets"]["candidate"]["count"], 40);
    assert_eq!(c["sets"]["extra"]["count"], 40);
    for k in ["membership", "checks", "tests"] {
        assert_eq!(a[k], c[k], "{k}");
    }
    let scores =
        |out: &Path| -> Vec<f64> { rows_without_index(out).iter().map(|r| r.score).collect() };
    assert_eq!(scores(&pngs), scores(&split));
}

#[test]
fn member_sets_are_refused_when_they_cannot_be_compared() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |extra: &[&str]| {
        sslmem()
            .args(["audit", "--bundle", BUNDLE, "--pairs", "2"])
            .args(["--out", arg(&dir.path().join("out"))])
            .args(extra)
            .output()
            .expect("run")
    };
    // An image in both sets.
    let o = run(&[
        "--members",
        "fashion-mnist:test[0:5]",
        "--non-members",
        "fashion-mnist:test[4:9]",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("fashion-mnist:test#4 is named by both --members and --non-members"),
        "{}",
        stderr(&o)
    );
    // An image named twice in one set.
    let o = run(&[
        "--members",
        "fashion-mnist:test[0:3]",
        "fashion-mnist:test[2]",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("fashion-mnist:test#2 is named twice by --members"),
        "{}",
        stderr(&o)
    );
    // One file under two spellings (`x/./0.png`) is one image.
    let x = dir.path().join("x");
    std::fs::create_dir_all(&x).expect("mkdir");
    image::GrayImage::from_pixel(28, 28, image::Luma([7]))
        .save(x.join("0.png"))
        .expect("png");
    let o = run(&[
        "--members",
        arg(&x),
        "--non-members",
        &format!("{}/./0.png", arg(&x)),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("is named by both"), "{}", stderr(&o));
    // A folder without images.
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let o = run(&[
        "--members",
        "fashion-mnist:test[0:5]",
        "--non-members",
        arg(&empty),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--non-members"), "{}", stderr(&o));
    assert!(stderr(&o).contains("no images found"), "{}", stderr(&o));
    // Sets of the split and sets of one's own do not mix; non-members need members.
    let o = run(&["--members", "mnist[0:3]", "--sets", "candidate"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = run(&["--non-members", "fashion-mnist:test[0:3]"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--members"), "{}", stderr(&o));

    // Members without non-members: scored, and the printout says what is missing.
    let o = run(&["--members", "fashion-mnist:test[0:6]"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let printed = common::stdout(&o);
    assert!(printed.contains("note: No non-members"), "{printed}");
    assert!(
        !printed
            .lines()
            .any(|l| l.starts_with("membership evaluation")),
        "{printed}"
    );
    // With no reference set, the top scores are not called memorized.
    assert!(
        printed.contains("highest scores (candidate: f saw them, g did not):"),
        "{printed}"
    );
    assert!(!printed.contains("most memorized"), "{printed}");
    assert!(
        printed.contains("(without a reference set this is no evidence of memorization)"),
        "{printed}"
    );

    // "Members" that f never saw (test images on both sides): the check fails, and nothing
    // is called memorized.
    let o = sslmem()
        .args(["audit", "--bundle", BUNDLE, "--pairs", "2"])
        .args(["--out", arg(&dir.path().join("unseen"))])
        .args(["--members", "fashion-mnist:test[0:40]"])
        .args(["--non-members", "fashion-mnist:test[40:80]"])
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", stderr(&o));
    let printed = common::stdout(&o);
    assert!(
        printed.contains("  FAIL  candidate above extra"),
        "{printed}"
    );
    assert!(
        printed.contains("note: The members (candidate) do not score significantly above"),
        "{printed}"
    );
    assert!(
        printed.contains("highest scores (candidate: f saw them, g did not):"),
        "{printed}"
    );
    assert!(!printed.contains("most memorized"), "{printed}");
    assert!(
        printed.contains("checks (expected signs of the sets):"),
        "no canaries, no canary control in the heading: {printed}"
    );
}

#[test]
fn reports_of_own_sets_and_of_inputs_say_only_what_they_can_in_headless_chromium() {
    let Some(npm_dir) = playwright_dir() else {
        assert!(
            std::env::var_os("SSLMEM_REQUIRE_BROWSER").is_none(),
            "SSLMEM_REQUIRE_BROWSER is set but Chromium/Playwright are missing: run scripts/setup.sh --browser"
        );
        eprintln!("skipped: no Chromium/Playwright (scripts/setup.sh --browser)");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let keep = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("audit-report");
    std::fs::create_dir_all(&keep).expect("mkdir");
    let captions = |v: &Value| -> String {
        v["captions"]
            .as_array()
            .expect("captions")
            .iter()
            .map(|c| c["text"].as_str().unwrap_or_default().to_string())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let headings = |v: &Value| -> Vec<String> {
        v["headings"]
            .as_array()
            .expect("headings")
            .iter()
            .map(|h| h.as_str().unwrap_or_default().to_string())
            .collect()
    };

    // Members and non-members: the checks, the membership table and ROC, no caveat. The
    // members are the default bundle's first 40 candidates (f trained on them, g did not).
    let own = dir.path().join("own");
    let list = dir.path().join("members.txt");
    let lines: Vec<String> = default_candidates(40)
        .iter()
        .map(|i| format!("fashion-mnist:train[{i}]"))
        .collect();
    std::fs::write(&list, lines.join("\n")).expect("write");
    let o = sslmem()
        .args([
            "audit",
            "--bundle",
            BUNDLE,
            "--out",
            arg(&own),
            "--pairs",
            "4",
        ])
        .args(["--members", &format!("@{}", arg(&list))])
        .args(["--non-members", "fashion-mnist:test[0:40]"])
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", stderr(&o));
    let v = render(
        &npm_dir,
        &own.join("report.html"),
        Some(&keep.join("own-sets.png")),
    );
    assert_eq!(v["scope"], "", "{v}");
    assert_eq!(
        v["figures"], 6,
        "histogram, ROC, every estimator's ROC, typicality, grid, LayerMem"
    );
    let h = headings(&v);
    for want in [
        "Expected signs (docs/science.md#expected-signs)",
        "Membership evaluation",
    ] {
        assert!(h.iter().any(|x| x == want), "{h:?}");
    }
    assert!(v["runRecord"]["sets"]
        .as_str()
        .is_some_and(|s| s.contains("--members @")));
    assert!(
        h.iter()
            .any(|x| x == "Most and least memorized, by class (candidate set)"),
        "{h:?}"
    );
    let text = captions(&v);
    for absent in ["shared", "canar", "independent"] {
        assert!(
            !text.contains(absent),
            "caption about absent {absent}: {text}"
        );
    }

    // Inputs only: the caveat first, no empty or inapplicable section, captions without
    // the split's sets, and "highest scores" rather than "memorized".
    let inputs = dir.path().join("inputs");
    let o = sslmem()
        .args([
            "audit",
            "--bundle",
            BUNDLE,
            "--out",
            arg(&inputs),
            "--pairs",
            "2",
        ])
        .arg("fashion-mnist:test[100:140]")
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", stderr(&o));
    let v = render(
        &npm_dir,
        &inputs.join("report.html"),
        Some(&keep.join("inputs.png")),
    );
    let scope = v["scope"].as_str().unwrap_or_default();
    assert!(
        scope.starts_with("What this audit cannot conclude.")
            && scope.contains("cannot conclude that any image was memorized")
            && scope.contains("--non-members"),
        "{scope}"
    );
    assert_eq!(v["figures"], 3, "histogram, typicality, grid: no ROC");
    let h = headings(&v);
    for absent in [
        "Expected signs (docs/science.md#expected-signs)",
        "Tests against the reference set",
        "Membership evaluation",
    ] {
        assert!(!h.iter().any(|x| x == absent), "{absent} in {h:?}");
    }
    assert!(
        h.iter()
            .any(|x| x == "Highest and lowest scores, by class (inputs set)"),
        "{h:?}"
    );
    let text = captions(&v);
    for absent in [
        "candidate",
        "shared",
        "extra",
        "canar",
        "independent",
        "memorized most",
    ] {
        assert!(!text.contains(absent), "caption about {absent}: {text}");
    }
    assert!(text.contains("no evidence of memorization"), "{text}");
    assert!(
        v["runRecord"]["f (the encoder audited)"].is_string(),
        "{}",
        v["runRecord"]
    );
}

/// The default bundle's f alone, as a one-model bundle (no g, the same split and canaries).
fn one_model_bundle(dir: &Path) -> PathBuf {
    let b = dir.join("one-model");
    copy_tree(Path::new(BUNDLE), &b);
    std::fs::remove_file(b.join("g0.onnx")).expect("rm g0");
    let mut m: Value = serde_json::from_str(&read(&b, "sslmem.json")).expect("manifest");
    m.as_object_mut().expect("object").remove("g");
    std::fs::write(b.join("sslmem.json"), m.to_string()).expect("write");
    b
}

/// `(input, field)` of each JSON line of `scores.jsonl` in `out`.
fn field_by_input(out: &Path, field: &str) -> Vec<(String, Value)> {
    read(out, "scores.jsonl")
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("json");
            (
                v["input"].as_str().expect("input").to_string(),
                v[field].clone(),
            )
        })
        .collect()
}

/// A bundle with f only audits with one-model fields: f's alignment is the pair's `align_f`
/// for every example, the percentile against the reference set is the hand count over the
/// other reference images, the estimators say which is which, and nothing is called SSLMem.
#[test]
fn a_one_model_audit_calibrates_align_f_on_its_reference() {
    let dir = tempfile::tempdir().expect("tempdir");
    let om = one_model_bundle(dir.path());
    let (pair_out, om_out) = (dir.path().join("pair"), dir.path().join("om"));
    let o = sslmem().args(args(&pair_out, "12")).output().expect("run");
    assert!(o.status.success(), "{}", stderr(&o));
    let mut a = args(&om_out, "12");
    a[2] = arg(&om).to_string();
    a.extend([
        "--reference".into(),
        "set:extra".into(),
        "--knn".into(),
        "3".into(),
    ]);
    let o = sslmem().args(&a).output().expect("run");
    assert!(o.status.success(), "{}", stderr(&o));
    let printed = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(printed.contains("one-model audit of"), "{printed}");
    assert!(
        !printed
            .lines()
            .any(|l| l.trim_start().starts_with("sslmem ")),
        "no SSLMem row: {printed}"
    );

    // The same f, the same views: the same alignment (canary inputs name their bundle).
    let strip = |v: Vec<(String, Value)>, b: &Path| -> Vec<(String, Value)> {
        v.into_iter()
            .map(|(k, x)| (k.replace(arg(b), "B"), x))
            .collect()
    };
    let pair_align = strip(field_by_input(&pair_out, "align_f"), Path::new(BUNDLE));
    let om_align = strip(field_by_input(&om_out, "align_f"), &om);
    assert_eq!(pair_align.len(), om_align.len());
    for ((pk, pv), (ok, ov)) in pair_align.iter().zip(&om_align) {
        assert_eq!(pk, ok);
        let (p, o) = (pv.as_f64().expect("f64"), ov.as_f64().expect("f64"));
        assert!((p - o).abs() < 1e-6, "{pk}: pair {p} vs one-model {o}");
    }

    // The percentile of each extra image among the other extra images, by hand.
    let rows: Vec<Value> = read(&om_out, "scores.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let extra: Vec<&Value> = rows.iter().filter(|r| r["set"] == "extra").collect();
    assert_eq!(extra.len(), 12);
    for r in &extra {
        let a = r["align_f"].as_f64().expect("align");
        let others: Vec<f64> = extra
            .iter()
            .filter(|o| o["input"] != r["input"])
            .map(|o| o["align_f"].as_f64().expect("align"))
            .collect();
        let below = others.iter().filter(|&&o| o < a).count() as f64
            + 0.5 * others.iter().filter(|&&o| o == a).count() as f64;
        let want = below / others.len() as f64;
        let got = r["align_f_percentile"].as_f64().expect("percentile");
        assert!(
            (got - want).abs() < 1e-12,
            "{}: {got} vs {want}",
            r["input"]
        );
        assert!(r["knn_gap"].is_f64() && r.get("score").is_none());
    }
    let header = read(&om_out, "scores.csv")
        .lines()
        .next()
        .expect("header")
        .to_string();
    assert_eq!(header, sslmem::audit::one_model::COLUMNS.join(","));

    let s: Value = serde_json::from_str(&read(&om_out, "summary.json")).expect("summary");
    assert_eq!(
        s["params"]["reference"],
        serde_json::json!({"set": "extra"})
    );
    assert_eq!(s["params"]["knn"], 3);
    assert_eq!(s["one_model"]["reference_images"], 12);
    assert!(s["membership"].as_array().expect("list").is_empty());
    assert!(s["checks"].as_array().expect("list").is_empty());
    let names: Vec<&str> = s["estimators"]
        .as_array()
        .expect("estimators")
        .iter()
        .map(|e| e["estimator"].as_str().expect("name"))
        .collect();
    assert_eq!(
        names,
        [
            "align-f",
            "align-f-percentile",
            "knn-gap",
            "align-f",
            "align-f-percentile",
            "knn-gap"
        ]
    );
    let report = read(&om_out, "report.html");
    assert!(report.contains("One-model audit (no SSLMem score)"));
    assert!(report.contains("fig-roc-estimators"));
    assert!(om_out.join("figures/roc-estimators.png").is_file());

    // The same command again finds the audit finished; a reference f saw is refused.
    let o = sslmem().args(&a).output().expect("run");
    assert!(o.status.success(), "{}", stderr(&o));
    let mut bad = args(&dir.path().join("bad"), "4");
    bad.extend(["--reference".into(), "set:candidate".into()]);
    let o = sslmem().args(&bad).output().expect("run");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("f was trained on the candidate set"),
        "{}",
        stderr(&o)
    );
}

/// A pair audited with a reference of inputs: the reference is scored as its own set, every
/// example gets the calibrated columns, and the four estimators are compared.
#[test]
fn a_pair_audit_with_a_reference_compares_the_four_estimators() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("a");
    let mut a = args(&out, "8");
    a.extend([
        "--sets".into(),
        "candidate,extra".into(),
        "--reference".into(),
        "fashion-mnist:test[5000:5010]".into(),
    ]);
    let o = sslmem().args(&a).output().expect("run");
    assert!(o.status.success(), "{}", stderr(&o));
    let rows: Vec<Value> = read(&out, "scores.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(rows.iter().filter(|r| r["set"] == "reference").count(), 8);
    assert!(rows
        .iter()
        .all(|r| r["align_f_percentile"].is_f64() && r["knn_gap"].is_f64() && r["score"].is_f64()));
    let s: Value = serde_json::from_str(&read(&out, "summary.json")).expect("summary");
    let names: Vec<&str> = s["estimators"]
        .as_array()
        .expect("estimators")
        .iter()
        .map(|e| e["estimator"].as_str().expect("name"))
        .collect();
    assert_eq!(
        names,
        ["sslmem", "align-f", "align-f-percentile", "knn-gap"]
    );
    // SSLMem's evaluation is the audit's membership evaluation.
    assert_eq!(s["estimators"][0]["auc"], s["membership"][0]["auc"]);
    let printed = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(printed.contains("estimators compared"), "{printed}");
    assert!(read(&out, "report.html").contains("Estimators compared: how much g buys"));

    // An audit compared with itself agrees perfectly; the reference against the candidates
    // shares no image.
    let o = sslmem()
        .args([
            "compare",
            arg(&out),
            arg(&out),
            "--top",
            "0.25,0.5",
            "--json",
        ])
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", stderr(&o));
    let c: Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(c["n"], 8);
    assert!((c["spearman"]["rho"].as_f64().expect("rho") - 1.0).abs() < 1e-12);
    assert_eq!(c["top"][0]["k"], 2);
    assert_eq!(c["top"][0]["overlap"], 2);
    assert_eq!(c["top"][1]["overlap"], 4);
    let o = sslmem()
        .args(["compare", arg(&out), arg(&out), "--set", "shared"])
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no image of"), "{}", stderr(&o));
}
