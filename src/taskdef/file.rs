//! Task definitions kept in the repository, with `${VAR}` templating from berth's environment.

use std::path::Path;

use serde_json::{Map, Value};

use super::{Described, tags_of};
use crate::error::Error;

/// A task definition kept in the repository: a `RegisterTaskDefinition` request as JSON (or a
/// `DescribeTaskDefinition` response, `taskDefinition` and `tags`), with `${VAR}` replaced by the
/// variable from berth's environment, for the variables `vars` lists.
pub fn from_file(path: &Path, vars: &[String]) -> Result<Described, Error> {
    let text = fs_err::read_to_string(path).map_err(|error| Error::Mismatch {
        problem: error.to_string(),
        hint: "check `task_definitions` in berth.toml".to_owned(),
    })?;
    parse_file(path, &text, vars, |name| std::env::var(name).ok())
}

/// The task definition that `text`, the content of `path`, holds, with `${VAR}` replaced by
/// `lookup(VAR)` for the variables `vars` lists. A name it does not list is an error, not an
/// empty value: a file must not pick up whatever happens to be in berth's environment (CI
/// tokens, AWS credentials).
pub fn parse_file(
    path: &Path,
    text: &str,
    vars: &[String],
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Described, Error> {
    let file = path.display();
    let text = substitute(text, |name| {
        if name.starts_with("AWS_") {
            return Err(Error::Mismatch {
                problem: format!("`{file}` uses `${{{name}}}`: `AWS_*` variables are never substituted"),
                hint: "give the task an IAM role (`taskRoleArn`) instead of credentials; write `$${` for a literal `${`".to_owned(),
            });
        }
        if !vars.iter().any(|var| var == name) {
            return Err(Error::Mismatch {
                problem: format!(
                    "`{file}` uses `${{{name}}}`, which `task_definition_vars` does not list"
                ),
                hint: format!(
                    "add `{name}` to `task_definition_vars` in berth.toml, or write `$${{{name}}}` for a literal `${{{name}}}`"
                ),
            });
        }
        lookup(name).ok_or_else(|| Error::Mismatch {
            problem: format!("`{file}` uses `${{{name}}}`, which is not set"),
            hint: format!("export `{name}` before running berth"),
        })
    })?;
    let value: Value = serde_json::from_str(&text).map_err(|error| Error::Mismatch {
        problem: format!("`{}` is not valid JSON: {error}", path.display()),
        hint: "the file holds one task definition as JSON, as `aws ecs register-task-definition --cli-input-json` takes it".to_owned(),
    })?;
    let (definition, tags) = match value {
        Value::Object(mut map) if map.contains_key("taskDefinition") => {
            let tags = map.remove("tags");
            match map.remove("taskDefinition") {
                Some(Value::Object(definition)) => (definition, tags),
                _ => (Map::new(), tags),
            }
        }
        Value::Object(mut map) => {
            let tags = map.remove("tags");
            (map, tags)
        }
        _ => (Map::new(), None),
    };
    if definition.get("family").and_then(Value::as_str).is_none() {
        return Err(Error::Mismatch {
            problem: format!("`{}` has no `family`", path.display()),
            hint: "a task definition needs `family` and `containerDefinitions`".to_owned(),
        });
    }
    Ok(Described {
        arn: path.display().to_string(),
        definition,
        tags: tags_of(tags.as_ref()),
    })
}

/// Replaces each `${NAME}` by `lookup(NAME)`, JSON-escaped, and `$${` by a literal `${`; the
/// error is the first that `lookup` gives.
pub fn substitute<E>(text: &str, lookup: impl Fn(&str) -> Result<String, E>) -> Result<String, E> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        if rest[..start].ends_with('$') {
            // `$${`: the first `$` escapes the second.
            out.push_str(&rest[..start - 1]);
            out.push_str("${");
            rest = &rest[start + 2..];
            continue;
        }
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let name = &after[..end];
        let value = lookup(name)?;
        // JSON-escape the value: it lands inside a JSON string.
        let escaped = serde_json::to_string(&value).unwrap_or_default();
        out.push_str(&escaped[1..escaped.len() - 1]);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitutes_variables_as_json_strings() {
        let lookup = |name: &str| match name {
            "ACCOUNT" => Ok("123".to_owned()),
            "QUOTE" => Ok("a\"b".to_owned()),
            _ => Err(name.to_owned()),
        };
        assert_eq!(
            substitute(
                r#"{"arn": "arn:aws:iam::${ACCOUNT}:role/x", "q": "${QUOTE}"}"#,
                lookup
            ),
            Ok(r#"{"arn": "arn:aws:iam::123:role/x", "q": "a\"b"}"#.to_owned())
        );
        assert_eq!(substitute("${MISSING}", lookup), Err("MISSING".to_owned()));
        assert_eq!(
            substitute("no vars $HOME", lookup),
            Ok("no vars $HOME".to_owned())
        );
    }

    /// One row per shape a kept file can have, and per way it can be wrong.
    #[test]
    fn a_kept_file_is_a_request_or_a_describe_response() {
        let lookup = |name: &str| (name != "MISSING").then(|| "123".to_owned());
        let vars = ["ACCOUNT".to_owned(), "MISSING".to_owned()];
        /// The family and tag keys read, or a part of the error.
        type Want = Result<(&'static str, &'static [&'static str]), &'static str>;
        let rows: [(&str, &str, Want); 6] = [
            (
                "a RegisterTaskDefinition request",
                r#"{"family": "web", "taskRoleArn": "arn:aws:iam::${ACCOUNT}:role/web", "tags": [{"key": "team", "value": "core"}]}"#,
                Ok(("web", &["team"])),
            ),
            (
                "a DescribeTaskDefinition response",
                r#"{"taskDefinition": {"family": "web", "revision": 3}, "tags": [{"key": "berth:deploy-id", "value": "x"}]}"#,
                Ok(("web", &["berth:deploy-id"])),
            ),
            (
                "no family",
                r#"{"containerDefinitions": []}"#,
                Err("has no `family`"),
            ),
            ("not JSON", "family: web", Err("is not valid JSON")),
            ("not an object", "[]", Err("has no `family`")),
            (
                "a variable that is not set",
                r#"{"family": "${MISSING}"}"#,
                Err("uses `${MISSING}`, which is not set"),
            ),
        ];
        for (case, text, want) in rows {
            let parsed = parse_file(Path::new("ecs/web.json"), text, &vars, lookup);
            match (parsed, want) {
                (Ok(described), Ok((family, tags))) => {
                    assert_eq!(described.family(), family, "{case}");
                    assert_eq!(described.arn, "ecs/web.json", "{case}");
                    assert_eq!(
                        described
                            .tags
                            .keys()
                            .map(String::as_str)
                            .collect::<Vec<_>>(),
                        tags,
                        "{case}"
                    );
                    assert!(!described.definition.contains_key("tags"), "{case}");
                }
                (Err(error), Err(part)) => {
                    let message = error.to_string();
                    assert!(message.contains("`ecs/web.json`"), "{case}: {message}");
                    assert!(message.contains(part), "{case}: {message}");
                }
                (got, _) => panic!("{case}: got {got:?}"),
            }
        }
        let substituted = parse_file(
            Path::new("ecs/web.json"),
            r#"{"family": "web", "taskRoleArn": "arn:aws:iam::${ACCOUNT}:role/web"}"#,
            &vars,
            lookup,
        )
        .unwrap();
        assert_eq!(
            substituted.definition["taskRoleArn"],
            "arn:aws:iam::123:role/web"
        );
    }

    /// `${VAR}` takes only listed variables, never `AWS_*`; `$${` is a literal `${`.
    #[test]
    fn only_listed_variables_are_substituted() {
        let lookup = |name: &str| Some(format!("<{name}>"));
        let vars = ["CHANNEL".to_owned()];
        let parse = |text: &str| parse_file(Path::new("web.json"), text, &vars, lookup);
        let rows = [
            (
                "a listed variable",
                r#"{"family": "${CHANNEL}"}"#,
                Ok("<CHANNEL>"),
            ),
            (
                "an escaped one is literal",
                r#"{"family": "$${CHANNEL}"}"#,
                Ok("${CHANNEL}"),
            ),
            (
                "one the settings do not list",
                r#"{"family": "${CIRCLE_TOKEN}"}"#,
                Err("uses `${CIRCLE_TOKEN}`, which `task_definition_vars` does not list"),
            ),
            (
                "an AWS credential",
                r#"{"family": "${AWS_SECRET_ACCESS_KEY}"}"#,
                Err("uses `${AWS_SECRET_ACCESS_KEY}`: `AWS_*` variables are never substituted"),
            ),
        ];
        for (case, text, want) in rows {
            match (parse(text), want) {
                (Ok(described), Ok(family)) => assert_eq!(described.family(), family, "{case}"),
                (Err(error), Err(part)) => {
                    assert!(error.to_string().contains(part), "{case}: {error}")
                }
                (got, _) => panic!("{case}: {got:?}"),
            }
        }
    }
}
