//! The layering rule of docs/ARCHITECTURE.md, checked: within each crate, no module import
//! circle. A module may use what its ancestors define or re-export; between any other modules
//! (siblings, cousins) the `use` declarations and qualified paths must point one way only.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every crate's source root in the workspace.
const SOURCE_ROOTS: &[&str] = &[
    "rmif-core/src",
    "rmif-macros/src",
    "rmif-registry/src",
    "rmif-registry/server/src",
    "rmif-registry/cli/src",
    "src",
    "benches/common",
    "benches/rpc",
    "benches/registry",
];

type Module = Vec<String>;

/// The modules under `root`, by path, with the file that holds each.
fn modules(root: &Path) -> BTreeMap<Module, PathBuf> {
    let mut found = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("a source directory") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(root).expect("under the root");
            let mut module: Module = relative
                .with_extension("")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(
                module.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                module.pop();
            }
            found.insert(module, path);
        }
    }
    found
}

/// `text` without comments and string literals (paths in them are not dependencies).
fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut previous = ' ';
                for c in chars.by_ref() {
                    if previous == '*' && c == '/' {
                        break;
                    }
                    previous = c;
                }
            }
            '"' => {
                let mut escaped = false;
                for c in chars.by_ref() {
                    if c == '"' && !escaped {
                        break;
                    }
                    escaped = c == '\\' && !escaped;
                }
                out.push_str("\"\"");
            }
            _ => out.push(c),
        }
    }
    out
}

/// Expands a use tree (`a::{b, c::{d, e}}`) into its paths.
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        return vec![tree.to_owned()];
    };
    let prefix = &tree[..open];
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let mut parts = Vec::new();
    let (mut depth, mut current) = (0, String::new());
    for c in inner.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    parts.push(current);
    parts
        .iter()
        .filter(|p| !p.trim().is_empty())
        .flat_map(|p| expand(p))
        .map(|p| format!("{prefix}{p}"))
        .collect()
}

/// The module a path written in `here` names (the longest module prefix of it), if any.
fn resolve(path: &str, here: &Module, modules: &BTreeMap<Module, PathBuf>) -> Option<Module> {
    let mut segments: Vec<&str> = path
        .split("::")
        .map(|s| s.split_whitespace().next().unwrap_or(""))
        .filter(|s| !s.is_empty())
        .collect();
    let mut base = here.clone();
    match segments.first().copied() {
        Some("crate") => {
            base.clear();
            segments.remove(0);
        }
        Some("self") => {
            segments.remove(0);
        }
        Some("super") => {
            while segments.first() == Some(&"super") {
                base.pop();
                segments.remove(0);
            }
        }
        Some(first) => {
            let mut child = base.clone();
            child.push(first.to_owned());
            if !modules.contains_key(&child) {
                return None; // another crate, or an item of this module
            }
        }
        None => return None,
    }
    let mut best = None;
    let mut candidate = base;
    if modules.contains_key(&candidate) {
        best = Some(candidate.clone());
    }
    for segment in segments {
        candidate.push(segment.to_owned());
        if modules.contains_key(&candidate) {
            best = Some(candidate.clone());
        }
    }
    best
}

/// Edges between modules, leaving out paths to a module's own ancestors.
fn edges(modules: &BTreeMap<Module, PathBuf>) -> BTreeMap<Module, BTreeSet<Module>> {
    let use_declaration = regex_lite::Regex::new(r"\buse\s+([^;]+);").expect("a valid pattern");
    let qualified = regex_lite::Regex::new(r"\b((?:crate|super|self)(?:::\w+)+)").expect("valid");
    let mut edges = BTreeMap::new();
    for (module, file) in modules {
        let code = code_only(&std::fs::read_to_string(file).expect("a readable source file"));
        let mut paths: Vec<String> = use_declaration
            .captures_iter(&code)
            .flat_map(|c| expand(&c[1]))
            .collect();
        paths.extend(qualified.captures_iter(&code).map(|c| c[1].to_owned()));
        let targets: BTreeSet<Module> = paths
            .iter()
            .filter_map(|path| resolve(path, module, modules))
            .filter(|target| target != module && !module.starts_with(target))
            .collect();
        edges.insert(module.clone(), targets);
    }
    edges
}

/// The circles among `edges`: strongly connected components of more than one module.
fn circles(edges: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    // Kosaraju: order by finishing time, then walk the reversed graph.
    fn visit(
        at: &Module,
        edges: &BTreeMap<Module, BTreeSet<Module>>,
        seen: &mut BTreeSet<Module>,
        order: &mut Vec<Module>,
    ) {
        if !seen.insert(at.clone()) {
            return;
        }
        for next in &edges[at] {
            visit(next, edges, seen, order);
        }
        order.push(at.clone());
    }
    let mut seen = BTreeSet::new();
    let mut order = Vec::new();
    for module in edges.keys() {
        visit(module, edges, &mut seen, &mut order);
    }
    let mut reversed: BTreeMap<Module, BTreeSet<Module>> =
        edges.keys().map(|m| (m.clone(), BTreeSet::new())).collect();
    for (from, targets) in edges {
        for to in targets {
            reversed
                .get_mut(to)
                .expect("every target is a module")
                .insert(from.clone());
        }
    }
    let mut assigned = BTreeSet::new();
    let mut found = Vec::new();
    for module in order.iter().rev() {
        let mut component = Vec::new();
        visit(module, &reversed, &mut assigned, &mut component);
        if component.len() > 1 {
            found.push(component);
        }
    }
    found
}

#[test]
fn no_crate_has_a_module_import_circle() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut report = Vec::new();
    for root in SOURCE_ROOTS {
        let modules = modules(&workspace.join(root));
        assert!(!modules.is_empty(), "{root} has no modules");
        for circle in circles(&edges(&modules)) {
            let names: Vec<String> = circle.iter().map(|m| m.join("::")).collect();
            report.push(format!("{root}: {}", names.join(" <-> ")));
        }
    }
    assert!(
        report.is_empty(),
        "module import circles:\n{}",
        report.join("\n")
    );
}

#[test]
fn the_check_finds_a_circle_between_siblings_and_allows_uses_of_ancestors() {
    let module = |path: &str| -> Module { path.split("::").map(str::to_owned).collect() };
    let mut edges: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for m in ["client", "client::a", "client::b", "server"] {
        edges.insert(module(m), BTreeSet::new());
    }
    // A child using its parent, and the parent its child: allowed (not edges).
    edges
        .get_mut(&module("client"))
        .unwrap()
        .insert(module("client::a"));
    assert!(circles(&edges).is_empty());
    // Two siblings using each other: a circle.
    edges
        .get_mut(&module("client::a"))
        .unwrap()
        .insert(module("client::b"));
    edges
        .get_mut(&module("client::b"))
        .unwrap()
        .insert(module("client::a"));
    assert_eq!(circles(&edges).len(), 1);
    assert_eq!(
        expand("crate::a::{b, c::{d, e}}"),
        ["crate::a::b", "crate::a::c::d", "crate::a::c::e"]
    );
}
