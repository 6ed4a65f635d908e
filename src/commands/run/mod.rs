//! `berth run`: a one-off command (a rake task, `bin/rails runner`, a backfill) run once as a task
//! of a service's revision, with that service's network settings and capacity (never Spot), its
//! log lines streamed live, and berth's exit code the command's own.
//!
//! It takes no lock: it changes no service. But while a deploy holds the environment between
//! registering its revisions and rolling them out, the service's revision is on its way out, and
//! `run` refuses unless `--revision` names one. A `clientToken` makes the start idempotent: a
//! rerun with the same token follows the task the first run started (ECS keeps a token 24 hours).

mod decide;

use std::future::Future;

use aws_sdk_ecs::Client;
use aws_sdk_ecs::types::{Service, Task};
use serde::Serialize;

use crate::aws::{self, arn, failed, services};
use crate::env_vars;
use crate::error::Error;
use crate::flags::RunOptions;
use crate::report::Reporter;
use crate::settings::Settings;
use crate::state::lock;
use crate::state::record::{self, ExitCodes};
use crate::state::{self, Place, Store};
use crate::task::decide::{capacity, exit_codes, stopped_by_ecs, verdict};
use crate::task::logs::{LogStream, Tail};
use crate::task::{self, Ended, OneOff, Watching};
use crate::taskdef::{self, Described};
use decide::{Token, TokenSource};

/// Log lines kept for the tail shown again when the command fails.
const TAIL: usize = 20;

/// What ran, and how it ended: the result of `berth run`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Ran {
    pub env: String,
    pub cluster: String,
    pub service: String,
    /// The revision's ARN.
    pub revision: String,
    pub container: String,
    /// The command; empty for `--attach` of a task whose command berth did not read.
    pub command: Vec<String>,
    pub task_arn: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
    /// The task was started before (same token, or `--attach`): this run followed it.
    pub attached: bool,
    /// `--detach`: started, not followed.
    pub detached: bool,
    /// ECS's `lastStatus` when berth stopped following.
    pub status: String,
    /// The command's container's exit code.
    pub exit_code: Option<i32>,
    pub exit_codes: ExitCodes,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped_reason: Option<String>,
}

/// The AWS clients a run uses.
struct Clients {
    ecs: Client,
    logs: aws_sdk_cloudwatchlogs::Client,
}

/// Runs (or attaches to) the task; `Ok` with the failure beside the result once a task exists,
/// a plain error before.
pub async fn run(
    settings: &Settings,
    options: &RunOptions,
    reporter: &dyn Reporter,
    interrupted: impl Future<Output = ()>,
) -> Result<(Ran, Option<Error>), Error> {
    let name = checked_service(settings, options)?;
    let how = match &options.attach {
        Some(task) => How::Attach(task),
        None => How::Start(checked_token(settings, options, &name)?),
    };
    let config = aws::sdk_config(settings).await?;
    let clients = Clients {
        ecs: aws::ecs_client(&config),
        logs: aws::logs_client(&config),
    };
    let service = services::describe(&clients.ecs, &settings.cluster, std::slice::from_ref(&name))
        .await
        .map_err(|error| aws::blame_unknown_region(error, &settings.region))?
        .remove(&name)
        .unwrap_or_else(|| Service::builder().build());
    let mut ran = Ran {
        env: settings.env.clone(),
        cluster: settings.cluster.clone(),
        service: name,
        command: options.command.clone(),
        ..Ran::default()
    };
    let (revision, task_arn) = match how {
        How::Attach(task) => attached(&clients.ecs, settings, options, task, &mut ran).await?,
        How::Start(token) => {
            let revision = revision(&clients.ecs, &config, settings, options, &service).await?;
            let container = decide::container(
                &revision,
                options.container.as_deref(),
                &settings.migration.container,
            )
            .map_err(|names| no_container(&revision, options, settings, &names))?;
            ran.revision.clone_from(&revision.arn);
            ran.container = container;
            ran.client_token = Some(token.client_token.clone());
            let task_arn =
                start(&clients.ecs, settings, &service, &token, &mut ran, reporter).await?;
            (revision, task_arn)
        }
    };
    ran.task_arn.clone_from(&task_arn);
    if options.detach {
        ran.detached = true;
        ran.status = "PROVISIONING".to_owned();
        reporter.info(&format!(
            "task `{}` goes on in ECS: `berth run --env {} --attach {}` follows it",
            arn::short(&task_arn),
            settings.env,
            arn::short(&task_arn)
        ));
        return Ok((ran, None));
    }
    let failure = tokio::select! {
        followed = follow(&clients, settings, options, &revision, &mut ran, reporter) => followed?,
        () = interrupted => {
            reporter.info(&format!(
                "task `{}` goes on in ECS: `berth run --env {} --attach {}` follows it again, `aws ecs stop-task --cluster {} --task {}` stops it",
                arn::short(&task_arn), settings.env, arn::short(&task_arn), settings.cluster, arn::short(&task_arn)
            ));
            Some(Error::Interrupted)
        }
    };
    Ok((ran, failure))
}

/// Start a task with this token, or follow one started before.
enum How<'a> {
    Start(Token),
    Attach(&'a str),
}

/// The service asked for, one of the environment's; the command there unless attaching.
fn checked_service(settings: &Settings, options: &RunOptions) -> Result<String, Error> {
    if options.attach.is_none() && options.command.is_empty() {
        return Err(Error::Mismatch {
            problem: "`berth run` needs a command after `--`".to_owned(),
            hint: format!(
                "berth run --env {} -- bin/rails runner 'puts User.count'",
                settings.env
            ),
        });
    }
    let name = options
        .service
        .clone()
        .unwrap_or_else(|| settings.services.first().cloned().unwrap_or_default());
    if !settings.services.contains(&name) {
        return Err(Error::Mismatch {
            problem: format!("`--service {name}` is not a service of `{}`", settings.env),
            hint: format!(
                "name one of its services (`services` in berth.toml): {}",
                crate::text::code_list(&settings.services)
            ),
        });
    }
    Ok(name)
}

/// The token of this start, checked before any AWS call.
fn checked_token(settings: &Settings, options: &RunOptions, service: &str) -> Result<Token, Error> {
    let container = options
        .container
        .as_deref()
        .unwrap_or(&settings.migration.container);
    let command = options.command.join("\u{0}");
    let what = [settings.env.as_str(), service, container, command.as_str()];
    let job = env_vars::var(env_vars::CIRCLE_WORKFLOW_JOB_ID);
    decide::token(
        options.client_token.as_deref(),
        job.as_deref(),
        &what,
        &lock::run_id(),
    )
    .map_err(|problem| Error::Mismatch {
        problem,
        hint: "a rerun with the same token follows the task the first run started; use a name of the job, such as `backfill-${CIRCLE_WORKFLOW_WORKSPACE_ID}`".to_owned(),
    })
}

/// The revision to run: `--revision`, else the service's, refused while a deploy is between
/// registering revisions and rolling them out. It must be ACTIVE: ECS runs no new task of an
/// INACTIVE one.
async fn revision(
    ecs: &Client,
    config: &aws_config::SdkConfig,
    settings: &Settings,
    options: &RunOptions,
    service: &Service,
) -> Result<Described, Error> {
    let current = service.task_definition().unwrap_or_default();
    let name = match &options.revision {
        Some(asked) => {
            let family = arn::short(current).split(':').next().unwrap_or_default();
            decide::revision_name(asked, family)
        }
        None => {
            refuse_in_flight(config, settings).await?;
            current.to_owned()
        }
    };
    let revision = taskdef::describe(ecs, &name).await.map_err(|error| match error {
        Error::Aws {
            environment: false,
            source,
            ..
        } => Error::Mismatch {
            problem: format!(
                "revision `{name}` cannot be run: {}",
                crate::text::with_causes(source.as_ref())
            ),
            hint: "`--revision` takes `family:N`, `N` (of the service's family) or an ARN; `berth status` shows what the services run".to_owned(),
        },
        other => other,
    })?;
    if revision.status() == Some("INACTIVE") {
        return Err(Error::Mismatch {
            problem: format!(
                "revision `{}` is INACTIVE (deregistered): ECS runs no new task of it",
                arn::short(&revision.arn)
            ),
            hint: "name an ACTIVE revision with `--revision`, or leave it out to run the service's"
                .to_owned(),
        });
    }
    Ok(revision)
}

/// Refuses while a deploy of the environment holds its lock between register and rollout.
async fn refuse_in_flight(
    config: &aws_config::SdkConfig,
    settings: &Settings,
) -> Result<(), Error> {
    let Some(store) = Store::find(config, Place::of(settings)).await? else {
        return Ok(());
    };
    let file = lock::read(&store).await?;
    let Some(holder) = file.holder else {
        return Ok(());
    };
    let record = record::read(&store, &holder.deploy_id).await?;
    match decide::in_flight(Some(&holder), record.as_ref(), state::now()) {
        None => Ok(()),
        Some(why) => Err(Error::DeployInFlight {
            env: settings.env.clone(),
            why,
        }),
    }
}

fn no_container(
    revision: &Described,
    options: &RunOptions,
    settings: &Settings,
    names: &[String],
) -> Error {
    let asked = options
        .container
        .as_deref()
        .unwrap_or(&settings.migration.container);
    Error::Mismatch {
        problem: format!(
            "revision `{}` has no container `{asked}`",
            arn::short(&revision.arn)
        ),
        hint: format!(
            "name one of its containers with `--container`: {}",
            crate::text::code_list(names)
        ),
    }
}

/// Starts the task, or finds the one this token started: running (`ListTasks` by its
/// `startedBy`), or stopped (`RunTask` hands back a token's task for 24 hours).
async fn start(
    ecs: &Client,
    settings: &Settings,
    service: &Service,
    token: &Token,
    ran: &mut Ran,
    reporter: &dyn Reporter,
) -> Result<String, Error> {
    let running = ecs
        .list_tasks()
        .cluster(&settings.cluster)
        .started_by(&token.started_by)
        .send()
        .await
        .map_err(|e| failed("looking for this token's task", e))?;
    if let Some(found) = running.task_arns().first() {
        reporter.info(&format!(
            "task `{}` of this client token is running: following it, not starting another",
            arn::short(found)
        ));
        ran.attached = true;
        return Ok(found.clone());
    }
    let one = OneOff {
        cluster: &settings.cluster,
        revision: &ran.revision,
        service,
        capacity: capacity(service, None),
        container: &ran.container,
        command: &ran.command,
        started_by: &token.started_by,
        token: &token.client_token,
    };
    let asked = std::time::SystemTime::now();
    let output = match task::run_task(ecs, &one).send().await {
        Ok(output) => output,
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_conflict_exception()) =>
        {
            return Err(Error::Mismatch {
                problem: format!(
                    "client token `{}` started a task with other parameters before (another command, container or revision)",
                    token.client_token
                ),
                hint:
                    "pass another `--client-token` to run this command; ECS keeps a token 24 hours"
                        .to_owned(),
            });
        }
        Err(e) => return Err(not_started(failed("starting the task", e))),
    };
    let task_arn = task::started(&output).map_err(|failure| Error::TaskFailed {
        summary: match failure {
            Some(failure) => format!("ECS could not place the task: {failure}"),
            None => "ECS answered `RunTask` with neither a task nor a failure".to_owned(),
        },
        hint: "check the cluster's capacity and the service's network settings; nothing ran"
            .to_owned(),
        exit_code: None,
    })?;
    let earlier = output
        .tasks()
        .first()
        .is_some_and(|task| decide::started_before(task, asked));
    ran.attached = earlier;
    reporter.info(&started_line(settings, &task_arn, token, ran, earlier));
    Ok(task_arn)
}

/// `RunTask` refused outright (bad network settings, no such capacity provider): nothing ran.
fn not_started(error: Error) -> Error {
    match error {
        Error::Aws {
            action,
            environment: false,
            source,
            ..
        } => Error::TaskFailed {
            summary: format!("{action} failed: {}", crate::text::with_causes(source.as_ref())),
            hint: "the task takes the service's network settings, platform and capacity (never Spot); nothing ran".to_owned(),
            exit_code: None,
        },
        other => other,
    }
}

fn started_line(
    settings: &Settings,
    task_arn: &str,
    token: &Token,
    ran: &Ran,
    earlier: bool,
) -> String {
    let id = arn::short(task_arn);
    if earlier {
        return format!(
            "task `{id}` was started before with this client token: following it, not starting another"
        );
    }
    let again = match token.from {
        TokenSource::ThisRun => format!(
            "`berth run --env {} --attach {id}` follows it",
            settings.env
        ),
        TokenSource::Flag | TokenSource::CircleJob => {
            "a rerun with the same client token follows it".to_owned()
        }
    };
    format!(
        "task `{id}` started: `{}` in `{}` of `{}`; {again}",
        crate::text::shell_words(&ran.command),
        ran.container,
        arn::short(&ran.revision)
    )
}

/// `--attach TASK`: the task as ECS knows it, its revision, and the container that runs its
/// command (its overrides', else `--container`, else the migration's).
async fn attached(
    ecs: &Client,
    settings: &Settings,
    options: &RunOptions,
    task_id: &str,
    ran: &mut Ran,
) -> Result<(Described, String), Error> {
    let Some(found) = task::describe(ecs, &settings.cluster, task_id).await? else {
        return Err(Error::Mismatch {
            problem: format!(
                "cluster `{}` has no task `{task_id}`",
                settings.cluster
            ),
            hint: "ECS forgets a stopped task after about an hour; `aws ecs list-tasks` lists the running ones".to_owned(),
        });
    };
    let revision = taskdef::describe(ecs, found.task_definition_arn().unwrap_or_default()).await?;
    let container = options
        .container
        .clone()
        .or_else(|| decide::overridden(&found))
        .unwrap_or_else(|| settings.migration.container.clone());
    if let Some(command) = found
        .overrides()
        .and_then(|o| {
            o.container_overrides()
                .iter()
                .find(|c| c.name() == Some(&container))
        })
        .map(|c| c.command().to_vec())
    {
        ran.command = command;
    }
    ran.revision.clone_from(&revision.arn);
    ran.container = container;
    ran.attached = true;
    Ok((revision, found.task_arn().unwrap_or(task_id).to_owned()))
}

/// Follows the task to its end; the failure, if the command did not exit 0.
async fn follow(
    clients: &Clients,
    settings: &Settings,
    options: &RunOptions,
    revision: &Described,
    ran: &mut Ran,
    reporter: &dyn Reporter,
) -> Result<Option<Error>, Error> {
    let limit = options.timeout.unwrap_or(settings.timeouts.migration);
    let watching = Watching {
        cluster: &settings.cluster,
        timeouts: &settings.timeouts,
        limit,
        what: "task",
    };
    let mut stream = LogStream::new("run", revision, &ran.container, &ran.task_arn);
    let mut tail = Tail::new(TAIL);
    let ended = task::follow(
        (&clients.ecs, &clients.logs),
        watching,
        &ran.task_arn,
        (&mut stream, &mut tail),
        reporter,
    )
    .await?;
    let id = arn::short(&ran.task_arn).to_owned();
    let task = match ended {
        Ended::Stopped(task) => task,
        Ended::Running(task) => {
            ran.status = task.last_status().unwrap_or("RUNNING").to_owned();
            return Ok(Some(Error::TaskFailed {
                summary: format!(
                    "task `{id}` is still {} after {}; it was left running",
                    ran.status,
                    crate::text::short_duration(limit)
                ),
                hint: format!(
                    "`berth run --env {} --attach {id}` follows it again; `--timeout` sets how long berth follows",
                    settings.env
                ),
                exit_code: None,
            }));
        }
        Ended::Gone => {
            return Ok(Some(Error::TaskFailed {
                summary: format!("task `{id}` is gone: ECS no longer knows it"),
                hint: "ECS forgets a stopped task after about an hour; its logs are in CloudWatch"
                    .to_owned(),
                exit_code: None,
            }));
        }
    };
    Ok(judged(revision, &task, &tail, ran, reporter))
}

/// The stopped task judged as a migration is: the command's container decides, by its exit
/// code, which becomes berth's.
fn judged(
    revision: &Described,
    task: &Task,
    tail: &Tail,
    ran: &mut Ran,
    reporter: &dyn Reporter,
) -> Option<Error> {
    ran.status = task.last_status().unwrap_or("STOPPED").to_owned();
    ran.exit_codes = exit_codes(task);
    ran.exit_code = ran.exit_codes.get(&ran.container).copied().flatten();
    ran.stop_code = task.stop_code().map(|c| c.as_str().to_owned());
    ran.stopped_reason = task.stopped_reason().map(str::to_owned);
    let id = arn::short(&ran.task_arn).to_owned();
    match verdict(revision, &ran.container, task) {
        Ok(_) => {
            for line in stopped_by_ecs(revision, &ran.container, task) {
                reporter.info(&line);
            }
            reporter.info(&format!("task `{id}`: `{}` exited 0", ran.container));
            None
        }
        Err(summary) => {
            if !tail.is_empty() {
                reporter.info("last log lines:");
                for line in tail.lines() {
                    reporter.output("run", line);
                }
            }
            // The command's own code, when it ran and failed; 3 (the task failed otherwise)
            // when it exited 0 or never ran.
            let exit_code = ran
                .exit_code
                .filter(|code| *code != 0)
                .map(|code| u8::try_from(code).unwrap_or(u8::MAX));
            let hint = if task.stop_code().map(|c| c.as_str()) == Some("TaskFailedToStart") {
                "the task never started: ECS's reason above says why (an image it cannot pull, a secret it cannot read, no capacity)".to_owned()
            } else if matches!(ran.exit_code, Some(126 | 127)) {
                "the command could not be run (exit 126 or 127: not found or not executable in the image)".to_owned()
            } else {
                "the log lines above say why".to_owned()
            };
            Some(Error::TaskFailed {
                summary: format!("task `{id}` {summary}"),
                hint,
                exit_code,
            })
        }
    }
}
