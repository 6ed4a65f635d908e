//! The shape of `src/`, read from its source: dependencies between rooms point one way.
//!
//! A room is a top-level file `src/NAME.rs` or folder `src/NAME/`, except in the folders of
//! [`GROUPS`], where each file or folder is a room of its own (`commands::deploy`,
//! `steps::rollout`, and `commands`/`steps` for the folder's `mod.rs`); the crate root is `lib`.
//! A room depends on another when its code (tests and macro arguments included; comments,
//! strings and doc text not) names a path into it: `crate::a::b`, `crate::{a, b::{c}}`,
//! `super::…`, `self::…`, or a child module by its name. Files are read with `proc-macro2`'s
//! tokenizer, so comments and literals never count and `use` groups may span lines. The rules
//! are the house style's: no cycle; commands above steps above the edges, and a step never
//! importing a command; no room but the binary's importing the terminal (`output`); a decision
//! file (`decide.rs`) that names no SDK client, no Docker and no output; and every room in a
//! layer that depends only on its own layer and those below.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use proc_macro2::{Delimiter, Spacing, TokenStream, TokenTree};

/// The folders whose files and folders are rooms of their own.
const GROUPS: &[&str] = &["commands", "steps"];

/// One room per command.
const COMMANDS: &[&str] = &[
    "commands",
    "commands::deploy",
    "commands::plan",
    "commands::status",
    "commands::rollback",
    "commands::run",
    "commands::init",
    "commands::unlock",
    "commands::config",
];

/// The pipeline's steps: each is driven by a command and never drives one.
const STEPS: &[&str] = &[
    "steps::prepare",
    "steps::promote",
    "steps::image",
    "steps::register",
    "steps::rollout",
    "steps::migrate",
    "steps::schedules",
    "steps::cleanup",
];

/// `src/`'s rooms, top to bottom (the map in `src/lib.rs`). A new room takes its place here.
const LAYERS: &[&[&str]] = &[
    // The terminal and what it prints.
    &["output"],
    // The library's entry and the command line.
    &["lib", "cli"],
    COMMANDS,
    STEPS,
    // What the steps share.
    &[
        "steps", "current", "task", "hooks", "taskdef", "release", "state",
    ],
    // The edges and the words.
    &[
        "aws", "docker", "settings", "flags", "env_vars", "error", "report", "text",
    ],
];

/// The files that decide, pure: the I/O around them asks AWS what is there, hands the answers in,
/// and acts on what comes back. Each has its table test beside it. Every `decide.rs` is here.
const DECISIONS: &[&str] = &[
    "commands/plan/diff.rs",
    "commands/rollback/decide.rs",
    "commands/run/decide.rs",
    "state/lock/decide.rs",
    "steps/cleanup/decide.rs",
    "steps/image/cache/decide.rs",
    "steps/migrate/decide.rs",
    "steps/promote/decide.rs",
    "steps/rollout/decide.rs",
    "steps/rollout/deployment/decide.rs",
    "steps/schedules/decide.rs",
    "task/decide.rs",
    "taskdef/mod.rs",
];

/// Words a decision file never holds: no waiting, no SDK client or call, no Docker, no terminal.
const IMPURE: &[&str] = &[
    "async",
    "await",
    "Client",
    "send",
    "aws_config",
    "bollard",
    "docker",
    "output",
    "tokio",
];

/// A file of `src/` holds at most this many lines of code (blank lines, comments and its
/// `#[cfg(test)]` part left out); a function at most `FUNCTION_BUDGET` lines, `fn` to `}`.
const FILE_BUDGET: usize = 450;
const FUNCTION_BUDGET: usize = 80;

type Graph = BTreeMap<String, BTreeSet<String>>;

#[test]
fn files_and_functions_stay_within_their_budgets() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut over = Vec::new();
    for path in files {
        let name = path.strip_prefix(&src).unwrap().display().to_string();
        let text = fs_err::read_to_string(&path).unwrap();
        let (code, functions) = measure(&text);
        if code > FILE_BUDGET {
            over.push(format!("{name}: {code} lines of code"));
        }
        for (function, lines) in functions {
            if lines > FUNCTION_BUDGET {
                over.push(format!("{name}: `{function}` is {lines} lines"));
            }
        }
    }
    assert!(
        over.is_empty(),
        "over budget ({FILE_BUDGET} lines a file, {FUNCTION_BUDGET} a function): {over:#?}"
    );
}

#[test]
fn the_budget_counts_code_and_functions_as_written() {
    let text = "//! doc\n\nuse x;\n\nfn short() {\n    // why\n    a();\n}\n\npub async fn long(\n    x: u8,\n) {\n    if x {\n    }\n}\n#[cfg(test)]\nmod tests {\n    fn t() {}\n}\n";
    let (code, functions) = measure(text);
    assert_eq!(code, 10);
    assert_eq!(
        functions,
        [("short".to_owned(), 4), ("long".to_owned(), 6)],
        "a function counts from `fn` to the closing brace at its indentation; the test part is left out"
    );
}

/// Every `.rs` file under `dir` but the test files (`tests.rs`).
fn rust_files(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
    for entry in fs_err::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, files);
        } else if path.extension().is_some_and(|ext| ext == "rs")
            && path.file_name().is_some_and(|name| name != "tests.rs")
        {
            files.push(path);
        }
    }
}

/// A file's lines of code before its `#[cfg(test)]` part, and each function's length in lines.
fn measure(text: &str) -> (usize, Vec<(String, usize)>) {
    let lines: Vec<&str> = text
        .lines()
        .take_while(|line| !line.starts_with("#[cfg(test)]"))
        .collect();
    let code = lines
        .iter()
        .filter(|line| {
            let line = line.trim();
            !line.is_empty() && !line.starts_with("//")
        })
        .count();
    let mut functions = Vec::new();
    for (at, line) in lines.iter().enumerate() {
        let indent = line.len() - line.trim_start().len();
        let words: Vec<&str> = line.trim_start().split([' ', '(', '<']).collect();
        let Some(fn_at) = words.iter().position(|word| *word == "fn") else {
            continue;
        };
        let before_fn = &words[..fn_at];
        let is_item = before_fn.iter().all(|word| {
            matches!(*word, "pub" | "async" | "const" | "unsafe" | "extern")
                || word.starts_with("pub(")
                || word.ends_with(')')
                || word.is_empty()
        });
        if !is_item || line.trim_end().ends_with(';') {
            continue;
        }
        let close = format!("{}}}", " ".repeat(indent));
        if let Some(end) = lines[at..].iter().position(|l| l.trim_end() == close) {
            functions.push((words[fn_at + 1].to_owned(), end + 1));
        }
    }
    (code, functions)
}

#[test]
fn decision_files_are_pure_and_each_has_its_tests() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for file in DECISIONS {
        let text = fs_err::read_to_string(src.join(file)).unwrap();
        let tokens: TokenStream = text.parse().unwrap();
        let mut words = BTreeSet::new();
        idents(tokens, &mut words);
        let impure: Vec<&&str> = IMPURE.iter().filter(|w| words.contains(**w)).collect();
        assert!(
            impure.is_empty(),
            "`src/{file}` decides, yet names {impure:?}: move the I/O to the module around it"
        );
        assert!(
            text.contains("#[cfg(test)]"),
            "`src/{file}` decides without a test beside it"
        );
    }
    let mut found = Vec::new();
    named_decide(&src, &src, &mut found);
    for file in found {
        assert!(
            DECISIONS.contains(&file.as_str()),
            "`src/{file}` is not in DECISIONS in tests/architecture.rs"
        );
    }
}

/// Every identifier in `tokens`, groups included.
fn idents(tokens: TokenStream, words: &mut BTreeSet<String>) {
    for token in tokens {
        match token {
            TokenTree::Ident(ident) => {
                words.insert(ident.to_string());
            }
            TokenTree::Group(group) => idents(group.stream(), words),
            _ => {}
        }
    }
}

/// The `decide.rs` files under `dir`, relative to `src`.
fn named_decide(src: &Path, dir: &Path, found: &mut Vec<String>) {
    for entry in fs_err::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            named_decide(src, &path, found);
        } else if path.file_name().is_some_and(|name| name == "decide.rs") {
            let relative = path.strip_prefix(src).unwrap();
            found.push(relative.to_string_lossy().into_owned());
        }
    }
}

#[test]
fn no_room_depends_on_itself_through_others() {
    let graph = graph();
    let cycles = cycles(&graph);
    assert!(
        cycles.is_empty(),
        "import cycles in src/: {cycles:?}\nedges: {graph:#?}"
    );
}

#[test]
fn steps_never_import_a_command() {
    let graph = graph();
    for step in STEPS {
        let uses = graph
            .get(*step)
            .unwrap_or_else(|| panic!("no room `{step}` in src/"));
        let commands: Vec<&String> = uses.iter().filter(|u| u.starts_with("commands")).collect();
        assert!(
            commands.is_empty(),
            "`{step}` imports {commands:?}, which drive it: move the shared types below both"
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
fn every_room_depends_only_on_its_layer_and_those_below() {
    let layer_of = |room: &str| LAYERS.iter().position(|layer| layer.contains(&room));
    let graph = graph();
    for (room, uses) in &graph {
        let Some(layer) = layer_of(room) else {
            panic!("`{room}` is in no layer: add it to LAYERS in tests/architecture.rs")
        };
        for used in uses {
            let below = layer_of(used).unwrap_or_else(|| panic!("`{used}` is in no layer"));
            assert!(
                below >= layer,
                "`{room}` (layer {layer}) imports `{used}` (layer {below}), which is above it"
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
}

#[test]
fn the_reader_finds_the_rooms_a_file_names() {
    let path = |p: &str| p.split("::").map(str::to_owned).collect::<Vec<_>>();
    let modules: BTreeSet<Vec<String>> = [
        "error",
        "text",
        "output",
        "report",
        "aws",
        "aws::ecr",
        "commands",
        "commands::deploy",
        "steps",
        "steps::image",
        "steps::image::build",
        "steps::rollout",
        "steps::rollout::decide",
    ]
    .map(path)
    .into();
    let read = |source: &str, here: &str| {
        let tokens: TokenStream = source.parse().unwrap();
        let here = if here.is_empty() {
            Vec::new()
        } else {
            path(here)
        };
        let mut found = BTreeSet::new();
        references(tokens, &here, &modules, &mut found);
        found
            .iter()
            .map(|p| room_of(p, &modules))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
    };
    let file = r##"
        use crate::error::Error; // crate::output
        /// [`crate::commands::deploy`] /* crate::report */
        use crate::{
            text::{code_list, short_duration},
            aws::{self, ecr::Image},
            steps::image::build::{BuildRequest},
        };
        const URL: &str = "unix:///run/x.sock"; let y = crate::aws::failed;
        let s = r#"crate::commands::deploy"#; let c = '{';
        let x = crate::Outcome::Config;
        pub(crate) fn f() {}
        mod tests {
            use super::*;
            use super::super::report::Reporter;
        }
    "##;
    assert_eq!(
        read(file, "steps::rollout"),
        [
            "aws",
            "error",
            "lib",
            "steps",
            "steps::image",
            "steps::rollout",
            "text"
        ],
        "`super` from an inline module of `steps::rollout` is `steps::rollout`, `super::super` is `steps`"
    );
    assert_eq!(
        read(
            "use super::decide::{Verdict}; fn f() { super::super::image::build::x(); }",
            "steps::rollout::decide"
        ),
        ["steps::image", "steps::rollout"],
        "`super` from a child module is its parent"
    );
    assert_eq!(
        read(
            "fn f() { decide::judge(); self::decide::x(); }",
            "steps::rollout"
        ),
        ["steps::rollout"],
        "a child module named by its name is in its parent's room"
    );
    assert_eq!(
        read(
            "pub use error::Error; pub mod text; fn f() { self::text::x(); crate::aws::y(); a::text::z(); }",
            ""
        ),
        ["aws", "error", "text"],
        "in the root, a module's own name starts a path"
    );
}

/// Room → the rooms it names.
fn graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &[], &mut files);
    let modules: BTreeSet<Vec<String>> = files.iter().map(|(module, _)| module.clone()).collect();
    let mut graph = Graph::new();
    for (module, tokens) in files {
        let room = room(&module);
        let mut paths = BTreeSet::new();
        references(tokens, &module, &modules, &mut paths);
        let uses = graph.entry(room.clone()).or_default();
        uses.extend(
            paths
                .iter()
                .map(|path| room_of(path, &modules))
                .filter(|used| *used != room),
        );
    }
    graph
}

/// The room a module is in: a folder of [`GROUPS`] holds a room per child, any other top-level
/// file or folder is one room, and the crate root is `lib`.
fn room(module: &[String]) -> String {
    match module {
        [] => "lib".to_owned(),
        [group, child, ..] if GROUPS.contains(&group.as_str()) => format!("{group}::{child}"),
        [top, ..] => top.clone(),
    }
}

/// The room of the module a path leads into: its longest prefix that is a module (`lib` for an
/// item of the crate root, such as `crate::Outcome`).
fn room_of(path: &[String], modules: &BTreeSet<Vec<String>>) -> String {
    let module = (0..=path.len())
        .rev()
        .map(|len| &path[..len])
        .find(|prefix| modules.contains(*prefix))
        .unwrap_or(&[]);
    room(module)
}

/// Every `.rs` file under `dir` with its module path: `src/lib.rs` is `[]`, `src/x.rs` and
/// `src/x/mod.rs` are `[x]`, `src/x/y.rs` is `[x, y]`. The binary's `main.rs` is left out.
fn sources(dir: &Path, at: &[String], files: &mut Vec<(Vec<String>, TokenStream)>) {
    for entry in fs_err::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        let mut module = at.to_vec();
        if path.is_dir() {
            module.push(stem);
            sources(&path, &module, files);
            continue;
        }
        if path.extension().is_none_or(|ext| ext != "rs") || (at.is_empty() && stem == "main") {
            continue;
        }
        if !(stem == "mod" || (at.is_empty() && stem == "lib")) {
            module.push(stem);
        }
        let text = fs_err::read_to_string(&path).unwrap();
        let tokens = text
            .parse()
            .unwrap_or_else(|error| panic!("{}: {error:?}", path.display()));
        files.push((module, tokens));
    }
}

/// Adds to `found` the absolute paths that the paths in `tokens` name, code in module `here`:
/// `crate::a::b`, `super::…` and `self::…` from `here`, and `a::…` where `a` is a child module
/// of `here`. An inline module (`mod tests { … }`) is one level deeper.
fn references(
    tokens: TokenStream,
    here: &[String],
    modules: &BTreeSet<Vec<String>>,
    found: &mut BTreeSet<Vec<String>>,
) {
    let tokens: Vec<TokenTree> = tokens.into_iter().collect();
    let ident = |at: usize| match tokens.get(at) {
        Some(TokenTree::Ident(ident)) => Some(ident.to_string()),
        _ => None,
    };
    let path_sep = |at: usize| is_path_sep(&tokens, at);
    let mut at = 0;
    while at < tokens.len() {
        if ident(at).as_deref() == Some("mod")
            && let Some(name) = ident(at + 1)
            && let Some(TokenTree::Group(group)) = tokens.get(at + 2)
            && group.delimiter() == Delimiter::Brace
        {
            let inner = [here, &[name]].concat();
            references(group.stream(), &inner, modules, found);
            at += 3;
            continue;
        }
        let starts_path = at < 2 || !path_sep(at - 2);
        if starts_path && let Some(word) = ident(at) {
            // Where the path starts, and how many tokens lead there.
            let start = match word.as_str() {
                "crate" => Some((Vec::new(), 1)),
                "super" => {
                    let mut supers = 1;
                    while path_sep(at + 3 * supers - 2)
                        && ident(at + 3 * supers).as_deref() == Some("super")
                    {
                        supers += 1;
                    }
                    (supers <= here.len())
                        .then(|| (here[..here.len() - supers].to_vec(), 3 * supers - 2))
                }
                "self" => Some((here.to_vec(), 1)),
                name if path_sep(at + 1)
                    && modules.contains(&[here, &[name.to_owned()]].concat()) =>
                {
                    Some((here.to_vec(), 0))
                }
                _ => None,
            };
            if let Some((base, skip)) = start {
                let rest = if skip == 0 { at } else { at + skip + 2 };
                if skip == 0 || path_sep(at + skip) {
                    at = tail(&tokens, rest, base, found);
                } else {
                    at += skip.max(1);
                }
                continue;
            }
        }
        if let Some(TokenTree::Group(group)) = tokens.get(at) {
            references(group.stream(), here, modules, found);
        }
        at += 1;
    }
}

fn is_path_sep(tokens: &[TokenTree], at: usize) -> bool {
    matches!(
        (tokens.get(at), tokens.get(at + 1)),
        (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b)))
            if a.as_char() == ':' && b.as_char() == ':' && a.spacing() == Spacing::Joint
    )
}

/// Reads the rest of a path from `at` (`a::b::c`, or a `{…}` group of such paths) onto `base`,
/// adds each whole path to `found`, and returns where the path ends.
fn tail(
    tokens: &[TokenTree],
    mut at: usize,
    mut path: Vec<String>,
    found: &mut BTreeSet<Vec<String>>,
) -> usize {
    loop {
        match tokens.get(at) {
            Some(TokenTree::Ident(ident)) => {
                let name = ident.to_string();
                if name != "self" {
                    path.push(name);
                }
                at += 1;
            }
            Some(TokenTree::Group(group)) if group.delimiter() == Delimiter::Brace => {
                let items: Vec<TokenTree> = group.stream().into_iter().collect();
                for item in items.split(|t| matches!(t, TokenTree::Punct(p) if p.as_char() == ','))
                {
                    tail(item, 0, path.clone(), found);
                }
                return at + 1;
            }
            _ => break,
        }
        if is_path_sep(tokens, at) {
            at += 2;
        } else {
            break;
        }
    }
    found.insert(path);
    at
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
