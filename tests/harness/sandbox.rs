//! The sandbox around the app: its environment, its admin API, the calls it counted and the faults
//! it injects.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use super::{App, ROOT, text};

impl App {
    /// This app's AWS calls per operation, plus the registry's manifest pushes of its repository.
    pub fn counters(&self) -> Counters {
        let port = self.var("BERTH_SANDBOX_PORT");
        let mine = admin(
            &port,
            "GET",
            &format!("/_sandbox/counters?app={}", self.name),
            None,
        );
        let all = admin(&port, "GET", "/_sandbox/counters", None);
        // Pushes by tag: the deploys' images, and berth's stage cache images apart.
        let by_tag = format!("registry:push:{}:", self.name);
        let (mut pushes, mut cache_pushes) = (0, 0);
        for (key, count) in all.as_object().into_iter().flatten() {
            let count = count.as_u64().unwrap_or(0);
            match key.strip_prefix(&by_tag) {
                Some(tag) if tag.starts_with(berth::steps::image::cache::TAG_PREFIX) => {
                    cache_pushes += count
                }
                Some(_) => pushes += count,
                None => {}
            }
        }
        Counters {
            calls: mine,
            pushes,
            cache_pushes,
        }
    }

    /// Forgets this app's fault rules.
    pub fn clear_faults(&self) {
        admin(
            &self.var("BERTH_SANDBOX_PORT"),
            "DELETE",
            &format!("/_sandbox/faults?app={}", self.name),
            None,
        );
    }

    /// Adds a sandbox fault rule that only this app's calls meet.
    pub fn fault(&self, mut rule: Value) -> Value {
        rule["app"] = Value::from(self.name.clone());
        admin(
            &self.var("BERTH_SANDBOX_PORT"),
            "POST",
            "/_sandbox/faults",
            Some(&rule),
        )
    }
}

pub struct Counters {
    pub calls: Value,
    /// Manifests pushed by tag to the app's repository, berth's cache images left out.
    pub pushes: u64,
    /// Manifests pushed to the app's repository as `berth-cache-…` tags.
    pub cache_pushes: u64,
}

impl Counters {
    pub fn get(&self, key: &str) -> u64 {
        self.calls[key].as_u64().unwrap_or(0)
    }

    /// Calls per operation since `before`, the operations called at all.
    pub fn since(&self, before: &Counters) -> std::collections::BTreeMap<String, u64> {
        self.calls
            .as_object()
            .into_iter()
            .flatten()
            .map(|(key, _)| (key.clone(), self.get(key) - before.get(key)))
            .filter(|(_, calls)| *calls > 0)
            .collect()
    }

    /// Asserts that none of `operations` was called, and nothing was pushed, since `before`.
    pub fn assert_none_since(&self, before: &Counters, operations: &[&str]) {
        for operation in operations {
            assert_eq!(
                self.get(operation),
                before.get(operation),
                "{operation} was called again"
            );
        }
        assert_eq!(self.pushes, before.pushes, "the image was pushed again");
    }
}

/// `export K=V` lines of `sandboxctl env`.
pub fn sandbox_env() -> Vec<(String, String)> {
    let out = Command::new(Path::new(ROOT).join("sandbox/sandboxctl"))
        .arg("env")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sandboxctl env: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
        .lines()
        .filter_map(|line| line.strip_prefix("export "))
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// One call to the sandbox's admin API (`/_sandbox/…`), its JSON answer.
pub fn admin(port: &str, method: &str, path: &str, body: Option<&Value>) -> Value {
    use std::io::{Read, Write};
    let mut stream =
        std::net::TcpStream::connect(format!("127.0.0.1:{port}")).unwrap_or_else(|e| {
            panic!("the sandbox is not running on port {port}: {e}; run `sandbox/sandboxctl start`")
        });
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    serde_json::from_str(response.split_once("\r\n\r\n").unwrap().1).unwrap()
}
