//! The shape of `src/`, read from its source: dependencies between modules point one way.
//!
//! A module is a file `src/NAME.rs` or a folder `src/NAME/`; the crate root is `lib`. A module
//! depends on another when its code (tests and macro arguments included; comments, strings and
//! doc text not) names a path to it: `crate::other`, `crate::{other, …}`, `super::other` where
//! `super` is the crate root, and in the root `other::` or `self::other`. Files are read with
//! `proc-macro2`'s tokenizer, so comments and literals never count and `use` groups may span
//! lines. The rules are the house style's: no cycle, no step importing the pipeline, no module
//! importing the terminal module `output` (the binary alone uses it), and every module in a layer
//! that depends only on its own layer and those below.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use proc_macro2::{Delimiter, Spacing, TokenStream, TokenTree};

/// The pipeline's steps: each is driven by `pipeline` and never drives it.
const STEPS: &[&str] = &[
    "build",
    "cache",
    "push",
    "register",
    "rollout",
    "migrate",
    "schedules",
    "cleanup",
];

/// `src/`'s modules, top to bottom (the layers `src/lib.rs` describes). A new module takes its
/// place here.
const LAYERS: &[&[&str]] = &[
    // The terminal and what it prints.
    &["output", "summary"],
    // The library's entry and the command line.
    &["lib", "cli"],
    &["pipeline", "status", "rollback", "plan", "init"],
    STEPS,
    // What the steps share.
    &[
        "current",
        "taskdef",
        "services",
        "ecr",
        "logs",
        "release",
        "context",
        "dockerignore",
        "dockerfile",
        "state",
    ],
    // The edges and the words.
    &[
        "aws", "docker", "settings", "flags", "env_vars", "error", "report", "text", "arn", "wire",
    ],
];

type Graph = BTreeMap<String, BTreeSet<String>>;

#[test]
fn no_module_depends_on_itself_through_others() {
    let graph = graph();
    let cycles = cycles(&graph);
    assert!(
        cycles.is_empty(),
        "import cycles in src/: {cycles:?}\nedges: {graph:#?}"
    );
}

#[test]
fn steps_never_import_the_pipeline() {
    let graph = graph();
    for step in STEPS {
        let uses = graph
            .get(*step)
            .unwrap_or_else(|| panic!("no module `{step}` in src/"));
        assert!(
            !uses.contains("pipeline"),
            "`{step}` imports `pipeline`, which drives it: move the shared types below both"
        );
    }
}

#[test]
fn only_the_binary_knows_the_terminal() {
    let graph = graph();
    let users: Vec<&String> = graph
        .iter()
        .filter(|(_, uses)| uses.contains("output"))
        .map(|(module, _)| module)
        .collect();
    assert!(
        users.is_empty(),
        "{users:?} import `output`: the core reports through `report::Reporter`"
    );
}

#[test]
fn every_module_depends_only_on_its_layer_and_those_below() {
    let layer_of = |module: &str| LAYERS.iter().position(|layer| layer.contains(&module));
    let graph = graph();
    for (module, uses) in &graph {
        let Some(layer) = layer_of(module) else {
            panic!("`{module}` is in no layer: add it to LAYERS in tests/architecture.rs")
        };
        for used in uses {
            let below = layer_of(used).unwrap_or_else(|| panic!("`{used}` is in no layer"));
            assert!(
                below >= layer,
                "`{module}` (layer {layer}) imports `{used}` (layer {below}), which is above it"
            );
        }
    }
}

#[test]
fn the_reader_finds_cycles() {
    let edges = |pairs: &[(&str, &str)]| {
        let mut graph = Graph::new();
        for (from, to) in pairs {
            graph
                .entry((*from).to_owned())
                .or_default()
                .insert((*to).to_owned());
            graph.entry((*to).to_owned()).or_default();
        }
        graph
    };
    assert!(cycles(&edges(&[("a", "b"), ("b", "c")])).is_empty());
    assert_eq!(
        cycles(&edges(&[("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")])),
        [vec!["a", "b", "c", "a"]]
    );
    let names: BTreeSet<String> = [
        "error", "arn", "text", "output", "pipeline", "ecr", "report", "aws",
    ]
    .map(str::to_owned)
    .into();
    let read = |source: &str, depth: usize| {
        let tokens: TokenStream = source.parse().unwrap();
        let mut found = BTreeSet::new();
        references(tokens, depth, &names, &mut found);
        found.into_iter().collect::<Vec<_>>()
    };
    let file = r##"
        use crate::error::Error; // crate::output
        /// [`crate::pipeline`] /* crate::report */
        use crate::{
            arn,
            text::{code_list, short_duration},
            ecr::{self, Image},
        };
        const URL: &str = "unix:///run/x.sock"; let y = crate::aws::failed;
        let s = r#"crate::pipeline"#; let c = '{';
        let x = crate::Outcome::Config;
        pub(crate) fn f() {}
        mod tests {
            use super::*;
            use super::super::report::Reporter;
        }
    "##;
    assert_eq!(
        read(file, 1),
        ["arn", "aws", "ecr", "error", "lib", "report", "text"]
    );
    assert_eq!(
        read(
            "use super::pipeline::Report; fn f() { super::super::output::x(); }",
            1
        ),
        ["pipeline"],
        "in a file below src/, `super` is the root"
    );
    assert_eq!(
        read("use super::super::output::x; use super::text;", 2),
        ["output"],
        "in a folder's file, `super::super` is the root"
    );
    assert_eq!(
        read(
            "pub use error::Error; pub mod arn; fn f() { self::text::x(); crate::aws::y(); a::text::z(); }",
            0
        ),
        ["aws", "error", "text"],
        "in the root, a module's own name starts a path"
    );
}

/// Module → the modules it names.
fn graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files: BTreeMap<String, Vec<(TokenStream, usize)>> = BTreeMap::new();
    for entry in fs_err::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let rust = path.extension().is_some_and(|ext| ext == "rs");
        if !(rust || path.is_dir()) {
            continue;
        }
        let module = path.file_stem().unwrap().to_string_lossy().into_owned();
        if module == "main" {
            continue; // the binary, outside the library
        }
        let depth = usize::from(module != "lib");
        files
            .entry(module)
            .or_default()
            .extend(sources(&path, depth));
    }
    let names: BTreeSet<String> = files.keys().cloned().collect();
    files
        .into_iter()
        .map(|(module, sources)| {
            let mut uses = BTreeSet::new();
            for (tokens, depth) in sources {
                references(tokens, depth, &names, &mut uses);
            }
            uses.remove(&module);
            (module, uses)
        })
        .collect()
}

/// The tokens of a `.rs` file, or of every `.rs` file under a folder, each with its depth below
/// the crate root: 1 for `src/x.rs` and `src/x/mod.rs`, 2 for `src/x/y.rs`.
fn sources(path: &Path, depth: usize) -> Vec<(TokenStream, usize)> {
    if path.is_dir() {
        fs_err::read_dir(path)
            .unwrap()
            .flat_map(|entry| sources(&entry.unwrap().path(), depth + 1))
            .collect()
    } else if path.extension().is_some_and(|ext| ext == "rs") {
        let depth = if path.file_name().is_some_and(|name| name == "mod.rs") {
            depth - 1
        } else {
            depth
        };
        let text = fs_err::read_to_string(path).unwrap();
        let tokens = text
            .parse()
            .unwrap_or_else(|error| panic!("{}: {error:?}", path.display()));
        vec![(tokens, depth)]
    } else {
        Vec::new()
    }
}

/// Adds to `found` the modules that the paths in `tokens` name. `depth` is how far below the
/// crate root the code is: that many `super`s lead to the root. Items of the root
/// (`crate::Outcome`) count as `lib`.
fn references(
    tokens: TokenStream,
    depth: usize,
    modules: &BTreeSet<String>,
    found: &mut BTreeSet<String>,
) {
    let tokens: Vec<TokenTree> = tokens.into_iter().collect();
    let ident = |at: usize| match tokens.get(at) {
        Some(TokenTree::Ident(ident)) => Some(ident.to_string()),
        _ => None,
    };
    let path_sep = |at: usize| {
        matches!(
            (tokens.get(at), tokens.get(at + 1)),
            (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b)))
                if a.as_char() == ':' && b.as_char() == ':' && a.spacing() == Spacing::Joint
        )
    };
    let mut at = 0;
    while at < tokens.len() {
        // An inline module (`mod tests { … }`) is one level deeper.
        if ident(at).as_deref() == Some("mod")
            && ident(at + 1).is_some()
            && let Some(TokenTree::Group(group)) = tokens.get(at + 2)
            && group.delimiter() == Delimiter::Brace
        {
            references(group.stream(), depth + 1, modules, found);
            at += 3;
            continue;
        }
        let starts_path = at < 2 || !path_sep(at - 2);
        let word = ident(at);
        if starts_path && let Some(word) = word {
            // How many segments lead to the crate root, if this path starts there.
            let root = match word.as_str() {
                "crate" => Some(1),
                "super" => {
                    let mut supers = 1;
                    while path_sep(at + 3 * supers - 2)
                        && ident(at + 3 * supers).as_deref() == Some("super")
                    {
                        supers += 1;
                    }
                    (supers == depth).then_some(supers)
                }
                "self" if depth == 0 => Some(1),
                name if depth == 0 && modules.contains(name) && path_sep(at + 1) => Some(0),
                _ => None,
            };
            if let Some(segments) = root {
                let next = at + 3 * segments;
                if segments == 0 {
                    found.insert(word);
                } else if path_sep(next - 2) {
                    root_item(tokens.get(next), modules, found);
                }
                at = next.max(at + 1);
                continue;
            }
        }
        if let Some(TokenTree::Group(group)) = tokens.get(at) {
            references(group.stream(), depth, modules, found);
        }
        at += 1;
    }
}

/// What follows `crate::`: a module, an item of the root, or a `{…}` group of either.
fn root_item(token: Option<&TokenTree>, modules: &BTreeSet<String>, found: &mut BTreeSet<String>) {
    match token {
        Some(TokenTree::Ident(ident)) => {
            let name = ident.to_string();
            if modules.contains(&name) {
                found.insert(name);
            } else if name != "self" {
                found.insert("lib".to_owned());
            }
        }
        Some(TokenTree::Group(group)) if group.delimiter() == Delimiter::Brace => {
            let items: Vec<TokenTree> = group.stream().into_iter().collect();
            for item in items.split(|t| matches!(t, TokenTree::Punct(p) if p.as_char() == ',')) {
                root_item(item.first(), modules, found);
            }
        }
        _ => {}
    }
}

/// Every cycle found by a depth-first walk, each as a path that ends where it starts.
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    fn walk(
        node: &str,
        graph: &Graph,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        found: &mut Vec<Vec<String>>,
    ) {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            found.push(cycle);
            return;
        }
        if done.contains(node) {
            return;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            walk(next, graph, path, done, found);
        }
        path.pop();
        done.insert(node.to_owned());
    }
    let mut found = Vec::new();
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        walk(node, graph, &mut Vec::new(), &mut done, &mut found);
    }
    found
}
