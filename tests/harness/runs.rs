//! Running the real `berth` binary in the app, and what a run left: its exit code and output.

use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use super::common::{eventually, scrub};
use super::{App, text};

impl App {
    pub fn deploy(&self, args: &[&str]) -> Run {
        self.deploy_with(args, &[])
    }

    pub fn deploy_with(&self, args: &[&str], vars: &[(&str, &str)]) -> Run {
        self.run("deploy", args, vars)
    }

    /// Runs `berth NAME ARGS` (`status`, `rollback`, `unlock`, …) to its end.
    pub fn run(&self, name: &str, args: &[&str], vars: &[(&str, &str)]) -> Run {
        let began = Instant::now();
        let output = self
            .subcommand(name, args, vars)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let run = Run {
            elapsed: began.elapsed(),
            ended: SystemTime::now(),
            code: output.status.code(),
            stderr: text(&output.stderr),
            stdout: text(&output.stdout),
        };
        println!(
            "--- berth {name} {args:?} → {:?} in {:?}\n{}",
            run.code, run.elapsed, run.stderr
        );
        run
    }

    /// `berth deploy --output json` in the app (`--env stg` unless `args` name one), with the
    /// sandbox's environment only.
    pub fn command(&self, args: &[&str], vars: &[(&str, &str)]) -> Command {
        self.subcommand("deploy", args, vars)
    }

    /// `berth NAME --output json` in the app, as [`App::command`] runs `deploy`.
    pub fn subcommand(&self, name: &str, args: &[&str], vars: &[(&str, &str)]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_berth"));
        // Flags go before `--`: what follows is `berth run`'s command.
        let split = args.iter().position(|a| *a == "--").unwrap_or(args.len());
        let (flags, after) = args.split_at(split);
        command.current_dir(self.dir.path()).arg(name).args(flags);
        if !flags.contains(&"--output") {
            command.args(["--output", "json"]);
        }
        if !flags.contains(&"--env") {
            command.args(["--env", "stg"]);
        }
        command.args(after);
        scrub(&mut command)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("AWS_SDK_UA_APP_ID", &self.name)
            .env("CI", "true")
            .env("NO_COLOR", "1")
            .envs(vars.iter().copied());
        command
    }

    /// Runs `berth deploy` again and asserts that it made none of the `calls` and pushed nothing.
    pub fn rerun_without(&self, args: &[&str], calls: &[&str]) -> Run {
        let counted = self.counters();
        let run = self.deploy(args);
        self.counters().assert_none_since(&counted, calls);
        run
    }

    /// Starts `berth deploy` (as [`App::command`]) with stdout and stderr piped.
    pub fn spawn(&self, args: &[&str], vars: &[(&str, &str)]) -> std::process::Child {
        self.command(args, vars)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Runs `berth deploy` and sends it `signal` (`KILL`, `TERM`, `INT`) as soon as a line of its
    /// stderr meets `at`. Fails the test when berth ends or 4 minutes pass first.
    pub fn interrupt(
        &self,
        args: &[&str],
        vars: &[(&str, &str)],
        at: &dyn Fn(&str) -> bool,
        signal: &str,
    ) -> Run {
        self.interrupt_in_flight(args, vars, at, None, signal)
    }

    /// As [`App::interrupt`], once the line was seen and then the sandbox has counted one more
    /// call of `in_flight` (`ecs:RunTask`) from this app: a call the sandbox holds (a latency
    /// fault) is then under way when the signal lands.
    pub fn interrupt_in_flight(
        &self,
        args: &[&str],
        vars: &[(&str, &str)],
        at: &dyn Fn(&str) -> bool,
        in_flight: Option<&str>,
        signal: &str,
    ) -> Run {
        self.deploy_watching(args, vars, at, in_flight, &|pid| {
            let sent = Command::new("kill")
                .args([&format!("-{signal}"), &pid.to_string()])
                .status()
                .unwrap();
            assert!(sent.success());
        })
    }

    /// Runs `berth deploy` to its end, and calls `act` with its process id once a line of its
    /// stderr meets `at` (and, with `in_flight`, the sandbox counted one more such call). Fails
    /// the test when berth ends or 4 minutes pass first.
    pub fn deploy_watching(
        &self,
        args: &[&str],
        vars: &[(&str, &str)],
        at: &dyn Fn(&str) -> bool,
        in_flight: Option<&str>,
        act: &dyn Fn(u32),
    ) -> Run {
        use std::io::BufRead;
        let began = Instant::now();
        let calls = |operation: &str| self.counters().get(operation);
        let before = in_flight.map(calls);
        let mut child = self.spawn(args, vars);
        let stderr = child.stderr.take().unwrap();
        let (lines, seen) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut all = String::new();
            for line in std::io::BufReader::new(stderr).lines() {
                let line = line.unwrap();
                let _ = lines.send(line.clone());
                all.push_str(&line);
                all.push('\n');
            }
            all
        });
        let deadline = Instant::now() + Duration::from_secs(240);
        loop {
            match seen.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if at(&line) => break,
                Ok(_) => {}
                Err(_) => {
                    let _ = child.kill();
                    panic!(
                        "berth ended or stalled before the line to act at:\n{}",
                        reader.join().unwrap()
                    );
                }
            }
        }
        if let (Some(operation), Some(before)) = (in_flight, before) {
            eventually(
                deadline.saturating_duration_since(Instant::now()),
                Duration::from_millis(20),
                || {
                    if calls(operation) == before {
                        Err(format!("`{operation}` was never called"))
                    } else {
                        Ok(())
                    }
                },
            );
        }
        act(child.id());
        let output = child.wait_with_output().unwrap();
        let run = Run {
            elapsed: began.elapsed(),
            ended: SystemTime::now(),
            code: output.status.code(),
            stderr: reader.join().unwrap(),
            stdout: text(&output.stdout),
        };
        println!(
            "--- berth deploy {args:?} (acted at a line) → {:?} in {:?}\n{}",
            run.code, run.elapsed, run.stderr
        );
        run
    }
}

pub struct Run {
    pub elapsed: Duration,
    pub ended: SystemTime,
    pub code: Option<i32>,
    pub stderr: String,
    pub stdout: String,
}

impl Run {
    /// The `error: …` line of a run that failed.
    pub fn error_line(&self) -> &str {
        self.stderr
            .lines()
            .find(|l| l.starts_with("error: "))
            .unwrap_or_else(|| panic!("no `error:` line in:\n{}", self.stderr))
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }

    /// Asserts that each of `steps` reported its result already in AWS.
    pub fn assert_skipped(&self, steps: &[&str]) {
        for step in steps {
            assert!(
                self.stderr.contains(&format!("{step}: already done")),
                "{step} was not skipped"
            );
        }
    }
}
