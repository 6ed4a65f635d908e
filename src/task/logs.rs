//! The CloudWatch Logs of one container of one task, read as they come, as the `awslogs` log
//! driver writes them: group `awslogs-group`, stream `<awslogs-stream-prefix>/<container>/<task-id>`.

use std::collections::VecDeque;

use serde_json::Value;

use crate::aws::arn;
use crate::aws::failed;
use crate::error::Error;
use crate::report::Reporter;
use crate::taskdef::Described;

/// The log stream of one container of one task, and how far it has been read.
#[derive(Debug)]
pub struct LogStream {
    /// Shown before each line: `migrate | …`.
    label: &'static str,
    /// Group and stream; `None` when the container does not log to CloudWatch.
    target: Option<(String, String)>,
    token: Option<String>,
}

impl LogStream {
    pub fn new(label: &'static str, revision: &Described, container: &str, task_arn: &str) -> Self {
        let options = revision
            .container(container)
            .and_then(|c| c.get("logConfiguration"))
            .filter(|config| config.get("logDriver").and_then(Value::as_str) == Some("awslogs"))
            .and_then(|config| config.get("options"));
        let option = |key: &str| {
            options
                .and_then(|o| o.get(key))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let task_id = arn::short(task_arn);
        let target = option("awslogs-group").map(|group| {
            let stream = match option("awslogs-stream-prefix") {
                Some(prefix) => format!("{prefix}/{container}/{task_id}"),
                None => task_id.to_owned(),
            };
            (group, stream)
        });
        Self {
            label,
            target,
            token: None,
        }
    }

    /// Reports new lines and keeps them in `tail`; true when there were some. A stream that does
    /// not exist yet is empty. `to_end`: pages are read until the stream has no more; else one
    /// page, as a look at a running task takes (what is left comes with the next look).
    pub async fn read(
        &mut self,
        logs: &aws_sdk_cloudwatchlogs::Client,
        tail: &mut Tail,
        reporter: &dyn Reporter,
        to_end: bool,
    ) -> Result<bool, Error> {
        let Some((group, stream)) = &self.target else {
            return Ok(false);
        };
        let mut any = false;
        loop {
            let response = logs
                .get_log_events()
                .log_group_name(group)
                .log_stream_name(stream)
                .start_from_head(true)
                .set_next_token(self.token.clone())
                .send()
                .await;
            let output = match response {
                Ok(output) => output,
                Err(error)
                    if error
                        .as_service_error()
                        .is_some_and(|e| e.is_resource_not_found_exception()) =>
                {
                    return Ok(any);
                }
                Err(error) => {
                    return Err(failed(format!("reading log stream `{stream}`"), error));
                }
            };
            let events = output.events();
            for event in events {
                let line = event.message().unwrap_or_default().trim_end().to_owned();
                reporter.output(self.label, &line);
                tail.push(line);
            }
            let next = output.next_forward_token().map(str::to_owned);
            let same_token = next == self.token;
            self.token = next;
            if events.is_empty() || same_token {
                return Ok(any);
            }
            any = true;
            if !to_end {
                return Ok(any);
            }
        }
    }
}

/// The last lines read, shown again when the task fails.
#[derive(Debug)]
pub struct Tail {
    lines: VecDeque<String>,
    keep: usize,
}

impl Tail {
    pub fn new(keep: usize) -> Self {
        Self {
            lines: VecDeque::with_capacity(keep),
            keep,
        }
    }

    pub fn push(&mut self, line: String) {
        if self.lines.len() == self.keep {
            self.lines.pop_front();
        }
        if self.keep > 0 {
            self.lines.push_back(line);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    pub fn lines(&self) -> impl Iterator<Item = &str> {
        self.lines.iter().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::{LogStream, Tail};
    use crate::taskdef::Described;

    const TASK: &str = "arn:aws:ecs:us-east-1:1:task/berth-stg/0123abcd";

    fn revision(log_configuration: Value) -> Described {
        Described::from_json(
            "arn:aws:ecs:us-east-1:1:task-definition/web:8",
            json!({
                "family": "web",
                "containerDefinitions": [{"name": "app", "logConfiguration": log_configuration}]
            }),
        )
    }

    #[test]
    fn the_stream_is_named_as_the_awslogs_driver_names_it() {
        let cases = [
            (
                "prefix, container and task id",
                json!({"logDriver": "awslogs", "options": {"awslogs-group": "/ecs/web", "awslogs-stream-prefix": "ecs"}}),
                Some(("/ecs/web", "ecs/app/0123abcd")),
            ),
            (
                "no prefix: the task id alone",
                json!({"logDriver": "awslogs", "options": {"awslogs-group": "/ecs/web"}}),
                Some(("/ecs/web", "0123abcd")),
            ),
            (
                "another driver: nothing to read",
                json!({"logDriver": "json-file", "options": {"awslogs-group": "/ecs/web"}}),
                None,
            ),
            ("no log configuration", Value::Null, None),
        ];
        for (case, config, want) in cases {
            let stream = LogStream::new("migrate", &revision(config), "app", TASK);
            let got = stream
                .target
                .as_ref()
                .map(|(group, stream)| (group.as_str(), stream.as_str()));
            assert_eq!(got, want, "{case}");
        }
        let other = LogStream::new("migrate", &revision(Value::Null), "worker", TASK);
        assert!(other.target.is_none(), "a container the revision lacks");
    }

    #[test]
    fn the_tail_keeps_the_last_lines_in_order() {
        let mut tail = Tail::new(3);
        assert!(tail.is_empty());
        for n in 1..=5 {
            tail.push(format!("line {n}"));
        }
        assert_eq!(
            tail.lines().collect::<Vec<_>>(),
            ["line 3", "line 4", "line 5"]
        );
        let mut none = Tail::new(0);
        none.push("dropped".to_owned());
        assert!(none.is_empty());
    }
}
