//! The shape of `src/`, read from its source: dependencies between modules point one way.
//!
//! A module is a file `src/NAME.rs` or a folder `src/NAME/`; the crate root is `lib`. A module
//! depends on another when its code (tests included, comments not) names `crate::other`, or, in
//! the root, `other::`. The rules are the house style's: no cycle, no step importing the pipeline,
//! no module but the binary using the terminal, and every module in a layer that depends only on
//! its own layer and those below.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The pipeline's steps: each is driven by `pipeline` and never drives it.
const STEPS: &[&str] = &["build", "push", "register", "rollout", "migrate"];

/// `src/`'s modules, top to bottom (as `src/lib.rs` describes them). A new module takes its place
/// here.
const LAYERS: &[&[&str]] = &[
    // The terminal and what it prints.
    &["output", "summary"],
    // The library's entry and the command line.
    &["lib", "cli"],
    &["pipeline"],
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
    ],
    // The edges and the words.
    &[
        "aws", "docker", "settings", "flags", "env_vars", "error", "report", "text", "arn",
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
    let source = "use crate::error::Error; // crate::output\n/// [`crate::pipeline`]\nuse crate::{arn, text::code_list};\nlet x = crate::Outcome::Config;";
    let names: BTreeSet<String> = ["error", "arn", "text", "output", "pipeline"]
        .map(str::to_owned)
        .into();
    assert_eq!(
        references(source, &names, false),
        ["arn", "error", "lib", "text"].map(str::to_owned).into()
    );
}

/// Module → the modules it names.
fn graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for entry in fs_err::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let module = if name == "lib" {
            "lib".to_owned()
        } else {
            name
        };
        if module == "main" {
            continue; // the binary, outside the library
        }
        files.entry(module).or_default().extend(sources(&path));
    }
    let names: BTreeSet<String> = files.keys().cloned().collect();
    files
        .iter()
        .map(|(module, texts)| {
            let mut uses = BTreeSet::new();
            for text in texts {
                uses.extend(references(text, &names, module == "lib"));
            }
            uses.remove(module);
            (module.clone(), uses)
        })
        .collect()
}

/// The text of a `.rs` file, or of every `.rs` file under a folder.
fn sources(path: &Path) -> Vec<String> {
    if path.is_dir() {
        fs_err::read_dir(path)
            .unwrap()
            .flat_map(|entry| sources(&entry.unwrap().path()))
            .collect()
    } else if path.extension().is_some_and(|ext| ext == "rs") {
        vec![fs_err::read_to_string(path).unwrap()]
    } else {
        Vec::new()
    }
}

/// The modules `text` names: `crate::name`, `crate::{a, b::c}`; in the root also `name::`.
/// Items of the root (`crate::Outcome`) count as `lib`. Comments are skipped.
fn references(text: &str, modules: &BTreeSet<String>, root: bool) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or_default();
        let code = code.trim();
        if root && (code.starts_with("pub mod ") || code.starts_with("mod ")) {
            continue;
        }
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let group = group.split('}').next().unwrap_or_default();
                for item in group.split(',') {
                    add(&mut found, modules, item.trim().split("::").next());
                }
            } else {
                add(&mut found, modules, Some(ident(rest)));
            }
        }
        if root {
            for module in modules {
                let named = code.match_indices(&format!("{module}::")).any(|(at, _)| {
                    !code[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':')
                });
                if named {
                    found.insert(module.clone());
                }
            }
        }
    }
    found
}

fn add(found: &mut BTreeSet<String>, modules: &BTreeSet<String>, name: Option<&str>) {
    match name.map(str::trim) {
        Some(name) if modules.contains(name) => {
            found.insert(name.to_owned());
        }
        Some("") | None => {}
        Some(_) => {
            found.insert("lib".to_owned());
        }
    }
}

fn ident(text: &str) -> &str {
    let end = text
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    &text[..end]
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
