//! The shape of the code, read from its source: the library's modules import each
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

/// The library's files (not the binaries'), each with its path relative to `src/`, its path
/// and its code with comment lines removed.
fn library() -> Vec<(String, PathBuf, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files
        .into_iter()
        .filter_map(|p| {
            let rel = p.strip_prefix(&src).ok()?.to_string_lossy().into_owned();
            if rel == "main.rs" || rel.starts_with("cli/") || rel.starts_with("bin/") {
                return None;
            }
            let code: String = std::fs::read_to_string(&p)
                .expect("read")
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            Some((rel, p, code))
        })
        .collect()
}

/// A library file's top-level module (`service` for `service/v1/score.rs`).
fn top_module(rel: &str) -> String {
    rel.split('/')
        .next()
        .unwrap_or_default()
        .trim_end_matches(".rs")
        .to_string()
}

/// The code of a file without its unit tests (`#[cfg(test)] mod tests { .. }`, at the end of
/// a file by this project's habit): what the module itself imports.
fn without_tests(code: &str) -> &str {
    match code.find("#[cfg(test)]\nmod tests") {
        Some(i) => &code[..i],
        None => code,
    }
}

/// A source file's module path: `src/service/v1/score.rs` is `["service", "v1", "score"]`,
/// `src/service/mod.rs` is `["service"]`.
fn module_path(rel: &str) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .trim_end_matches(".rs")
        .split('/')
        .map(String::from)
        .collect();
    if parts.last().is_some_and(|l| l == "mod") {
        parts.pop();
    }
    parts
}

fn ident_at(code: &[u8], mut i: usize) -> (String, usize) {
    let start = i;
    while i < code.len() && (code[i].is_ascii_alphanumeric() || code[i] == b'_') {
        i += 1;
    }
    (String::from_utf8_lossy(&code[start..i]).into_owned(), i)
}

fn skip_ws(code: &[u8], mut i: usize) -> usize {
    while i < code.len() && code[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// Reads a path `a::b::{c, d::e}` (a use tree) starting at `i`, appending every leaf path to
/// `out` with `prefix` in front; returns where it stopped.
fn read_tree(code: &[u8], i: usize, prefix: &[String], out: &mut Vec<Vec<String>>) -> usize {
    let mut path = prefix.to_vec();
    let mut i = skip_ws(code, i);
    loop {
        if code.get(i) == Some(&b'{') {
            i += 1;
            loop {
                i = skip_ws(code, i);
                if code.get(i) == Some(&b'}') {
                    return i + 1;
                }
                i = read_tree(code, i, &path, out);
                i = skip_ws(code, i);
                match code.get(i) {
                    Some(b',') => i += 1,
                    Some(b'}') => return i + 1,
                    _ => return i,
                }
            }
        }
        let (id, j) = ident_at(code, i);
        if id.is_empty() {
            out.push(path);
            return j;
        }
        path.push(id);
        if code.get(j..j + 2) == Some(b"::") {
            i = skip_ws(code, j + 2);
        } else {
            // `as alias` and the rest of the statement are not part of the path.
            out.push(path);
            return j;
        }
    }
}

/// Every path `code` (the module `me`, whose sub-modules are `children`) refers to through
/// `crate::..`, `super::..`, `self::..` or `child::..`, use trees expanded, each made absolute
/// (names from the crate root, items included).
fn referenced_paths(me: &[String], children: &[String], code: &str) -> Vec<Vec<String>> {
    let bytes = code.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let boundary = i == 0 || {
            let p = bytes[i - 1];
            !(p.is_ascii_alphanumeric() || p == b'_' || p == b':')
        };
        if !boundary || !bytes[i].is_ascii_alphabetic() {
            i += 1;
            continue;
        }
        let (first, j) = ident_at(bytes, i);
        if bytes.get(j..j + 2) != Some(b"::") {
            i = j;
            continue;
        }
        // Where the path starts: `self` of the file `a/b.rs` is `a::b`, `super` its parent;
        // `child::x` is `self::child::x`.
        let (mut base, mut k) = match first.as_str() {
            "crate" => (Vec::new(), j + 2),
            "self" => (me.to_vec(), j + 2),
            "super" => (me[..me.len().saturating_sub(1)].to_vec(), j + 2),
            c if children.iter().any(|x| x == c) => (me.to_vec(), i),
            _ => {
                i = j;
                continue;
            }
        };
        // `super::super::x`
        loop {
            let (id, e) = ident_at(bytes, k);
            if id == "super" && bytes.get(e..e + 2) == Some(b"::") {
                base.pop();
                k = e + 2;
            } else {
                break;
            }
        }
        let mut leaves = Vec::new();
        let e = read_tree(bytes, k, &base, &mut leaves);
        out.extend(leaves);
        i = e.max(j);
    }
    out
}

/// The library's import graph, module by module (a file, or a folder's `mod.rs`):
/// `module -> modules it imports`, where a path counts as the deepest module it names.
fn module_graph() -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let sources: Vec<(Vec<String>, String)> = library()
        .into_iter()
        .map(|(rel, _, code)| (module_path(&rel), code))
        .collect();
    let modules: BTreeSet<Vec<String>> = sources.iter().map(|(m, _)| m.clone()).collect();
    let mut graph = BTreeMap::new();
    for (me, code) in &sources {
        let children: Vec<String> = modules
            .iter()
            .filter(|m| m.len() == me.len() + 1 && m.starts_with(me))
            .filter_map(|m| m.last().cloned())
            .collect();
        let mut deps = BTreeSet::new();
        for path in referenced_paths(me, &children, without_tests(code)) {
            let deepest = (1..=path.len())
                .rev()
                .map(|n| path[..n].to_vec())
                .find(|p| modules.contains(p));
            if let Some(d) = deepest.filter(|d| d != me) {
                deps.insert(d);
            }
        }
        graph.insert(me.clone(), deps);
    }
    graph
}

/// A cycle of `g`, as the nodes along it, found by depth-first search.
fn find_cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
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
    g.keys()
        .find_map(|n| visit(n, g, &mut Vec::new(), &mut done))
}

#[test]
fn modules_import_each_other_without_a_cycle_at_every_level() {
    let graph = module_graph();
    // For every folder (the crate root included): its sub-modules, each with everything
    // below it, as one graph, `a -> b` when code under `a` imports something under `b`. The
    // folder's own `mod.rs`, which declares its sub-modules and wires them together, is not a
    // node of that graph: its sub-modules may use what it defines.
    let mut folders: BTreeSet<Vec<String>> = BTreeSet::new();
    for m in graph.keys() {
        for n in 0..m.len() {
            folders.insert(m[..n].to_vec());
        }
    }
    for folder in &folders {
        let child = |m: &Vec<String>| -> Option<String> {
            (m.len() > folder.len() && m.starts_with(folder)).then(|| m[folder.len()].clone())
        };
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (m, deps) in &graph {
            let Some(a) = child(m) else { continue };
            let entry = g.entry(a.clone()).or_default();
            entry.extend(deps.iter().filter_map(&child).filter(|b| *b != a));
        }
        if let Some(c) = find_cycle(&g) {
            let at = if folder.is_empty() {
                "the library's top-level modules".to_string()
            } else {
                format!("the modules of crate::{}", folder.join("::"))
            };
            panic!("import cycle among {at}: {}", c.join(" -> "));
        }
    }
    let key = |p: &str| p.split("::").map(String::from).collect::<Vec<_>>();
    assert!(
        graph.contains_key(&key("engine")) && folders.len() > 5,
        "the walk found the library's modules and folders"
    );
    assert!(
        graph[&key("service::openapi")].contains(&key("service::v1")),
        "the graph sees imports below the top level: {:?}",
        graph[&key("service::openapi")]
    );
}

#[test]
fn the_library_has_no_command_line() {
    for (_, path, code) in library() {
        assert!(
            !code.contains("crate::cli") && !code.contains("clap"),
            "{} uses clap or a command line: clap types live with the binaries (src/cli/, \
             src/bin/), which parse into the library's types (enums through \
             sslmem::choice::Choice)",
            path.display()
        );
    }
}

#[test]
fn only_the_engine_feeds_encoders() {
    for (rel, path, code) in library() {
        // The runtime defines sessions, the bundle loads them, the engine runs them.
        let top = top_module(&rel);
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

/// Where a function's name starts in the line `t` (trimmed) that declares one: after any of
/// `pub`, `pub(...)`, `const`, `async`, `unsafe`, `extern "ABI"` and then `fn `.
fn fn_name_start(t: &str) -> Option<&str> {
    let mut rest = t;
    loop {
        if let Some(r) = rest.strip_prefix("fn ") {
            return Some(r);
        }
        let next = if let Some(r) = rest.strip_prefix("pub(") {
            r.split_once(") ").map(|(_, after)| after)
        } else if let Some(r) = rest.strip_prefix("extern \"") {
            r.split_once("\" ").map(|(_, after)| after)
        } else {
            ["pub ", "const ", "async ", "unsafe "]
                .iter()
                .find_map(|p| rest.strip_prefix(p))
        };
        rest = next?;
    }
}

/// Functions of `code` as `(name, first line, lines)`, read from rustfmt's layout: a `fn`
/// line and the first line after it at its indentation that closes it.
fn functions(code: &str) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = code.lines().collect();
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let t = l.trim_start();
        let indent = &l[..l.len() - t.len()];
        let sig = fn_name_start(t);
        let Some(rest) = sig else { continue };
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let close = format!("{indent}}}");
        if let Some(end) = lines[i..].iter().position(|x| *x == close) {
            out.push((name, i, end + 1));
        }
    }
    out
}

#[test]
fn no_function_is_over_100_lines_without_a_reason_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut long = Vec::new();
    let mut seen = 0;
    for p in files {
        let code = std::fs::read_to_string(&p).expect("read");
        let lines: Vec<&str> = code.lines().collect();
        for (name, start, n) in functions(&code) {
            seen += 1;
            if n <= 100 {
                continue;
            }
            // The comments and attributes right above the function.
            let above = lines[..start]
                .iter()
                .rev()
                .take_while(|l| {
                    let t = l.trim_start();
                    t.starts_with("//") || t.starts_with("#[")
                })
                .any(|l| l.contains("Over 100 lines"));
            if !above {
                long.push(format!("{}: fn {name} ({n} lines)", p.display()));
            }
        }
    }
    assert!(seen > 500, "the walk found the functions ({seen})");
    assert_eq!(
        fn_name_start("pub(crate) async fn run() {"),
        Some("run() {")
    );
    assert_eq!(fn_name_start("pub const unsafe fn x()"), Some("x()"));
    assert_eq!(fn_name_start("let f = |x| x;"), None);
    assert!(
        long.is_empty(),
        "functions over 100 lines without a comment above saying why (`// Over 100 lines: ...`): \
         split them, or say why they are one piece:\n{}",
        long.join("\n")
    );
}
