//! The shape of the code, read from its source: the library's top-level modules import each
//! other without a cycle, the library never imports a command line (clap's `Parser`, `Args`
//! and `Subcommand` types live in the binaries), and only the engine feeds encoders (the
//! runtime defines the sessions and the bundle's load-time contract check runs them once).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read src").flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The library's files (not the binaries'), each with its top-level module and its code with
/// comments removed.
fn library() -> Vec<(String, PathBuf, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files
        .into_iter()
        .filter_map(|p| {
            let rel = p.strip_prefix(&src).ok()?.to_string_lossy().into_owned();
            if rel == "main.rs"
                || rel == "lib.rs"
                || rel.starts_with("cli/")
                || rel.starts_with("bin/")
            {
                return None;
            }
            let top = rel.split('/').next()?.trim_end_matches(".rs").to_string();
            let code: String = std::fs::read_to_string(&p)
                .expect("read")
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            Some((top, p, code))
        })
        .collect()
}

/// `crate::NAME` paths in the code.
fn imports(code: &str) -> BTreeSet<String> {
    code.match_indices("crate::")
        .map(|(i, m)| {
            code[i + m.len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .filter(|n| !n.is_empty())
        .collect()
}

#[test]
fn top_level_modules_have_no_import_cycle() {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (top, _, code) in library() {
        let deps = graph.entry(top.clone()).or_default();
        deps.extend(imports(&code).into_iter().filter(|d| *d != top));
    }
    // Depth-first search for a back edge, reporting the cycle.
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == n) {
            let mut cycle = path[i..].to_vec();
            cycle.push(n.to_string());
            return Some(cycle);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_string());
        for d in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(d, g, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for n in graph.keys() {
        if let Some(c) = visit(n, &graph, &mut Vec::new(), &mut done) {
            panic!(
                "import cycle among the library's modules: {}",
                c.join(" -> ")
            );
        }
    }
    assert!(
        graph.contains_key("engine"),
        "the walk found the library's modules"
    );
}

#[test]
fn the_library_has_no_command_line() {
    for (_, path, code) in library() {
        assert!(
            !imports(&code).contains("cli"),
            "{} imports a command line",
            path.display()
        );
        for clap_type in ["Parser", "Args", "Subcommand"] {
            let derive = code.contains(&format!("derive({clap_type}"))
                || code.contains(&format!(", {clap_type})"))
                || code.contains(&format!(", {clap_type},"));
            assert!(
                !derive,
                "{} derives clap's {clap_type}: clap types live with the binaries",
                path.display()
            );
        }
    }
}

#[test]
fn only_the_engine_feeds_encoders() {
    for (top, path, code) in library() {
        // The runtime defines sessions, the bundle loads them, the engine runs them.
        if top == "engine" || top == "runtime" || top == "bundle" {
            continue;
        }
        for call in ["EncoderSession", ".run_owned("] {
            assert!(
                !code.contains(call),
                "{} uses `{call}`: encoders are fed through crate::engine::Engine",
                path.display()
            );
        }
        // A session's `embed(data, [n, c, h, w], output)` takes a shape; the engine's do not.
        for (i, _) in code.match_indices(".embed(") {
            let call: String = code[i..]
                .split(';')
                .next()
                .unwrap_or_default()
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            assert!(
                !call.contains(",["),
                "{} feeds a session directly: {call}",
                path.display()
            );
        }
    }
}
