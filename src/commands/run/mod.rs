//! `berth run`: a one-off command (a rake task, `bin/rails runner`, a backfill) run once as a task
//! of a service's revision, with that service's network settings and capacity (never Spot), its
//! log lines streamed live, and berth's exit code the command's own.
//!
//! It takes no lock: it changes no service. But while a deploy holds the environment between
//! registering its revisions and rolling them out, the service's revision is on its way out, and
//! `run` refuses unless `--revision` names one. A `clientToken` makes the start idempotent: a
//! rerun with the same token follows the task the first run started (ECS keeps a token 24 hours).

mod decide;
mod follow;
mod start;

use std::future::Future;

use aws_sdk_ecs::Client;
use aws_sdk_ecs::types::Service;
use serde::Serialize;

use crate::aws::{self, arn, services};
use crate::env_vars;
use crate::error::Error;
use crate::flags::RunOptions;
use crate::report::Reporter;
use crate::settings::Settings;
use crate::state::lock;
use crate::state::record::{self, ExitCodes};
use crate::state::{self, Place, Store};
use crate::task;
use crate::taskdef::{self, Described};
use decide::{Token, TokenSource};

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
        // The token's form is checked before any AWS call; a derived one names the revision too.
        None => How::Start(checked_token(settings, options, (&name, ""))?),
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
            let token = match token.from {
                TokenSource::CircleJob => {
                    checked_token(settings, options, (&ran.service, &revision.arn))?
                }
                _ => token,
            };
            ran.client_token = Some(token.client_token.clone());
            let task_arn =
                start::start(&clients.ecs, settings, &service, &token, &mut ran, reporter).await?;
            (revision, task_arn)
        }
    };
    ran.task_arn.clone_from(&task_arn);
    if options.detach && detached(settings, &mut ran, reporter) {
        return Ok((ran, None));
    }
    let failure = tokio::select! {
        followed = follow::follow(&clients, settings, options, &revision, &mut ran, reporter) => {
            followed.unwrap_or_else(|error| Some(not_followed(settings, &task_arn, &error)))
        }
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

/// `--detach`: the task left to run, said, unless it was started before and has ended already
/// (then it is judged, not left). True when detached.
fn detached(settings: &Settings, ran: &mut Ran, reporter: &dyn Reporter) -> bool {
    // The status as the start saw it: `RunTask`'s answer, or the running task it found.
    if ran.status == "STOPPED" {
        return false;
    }
    ran.detached = true;
    let id = arn::short(&ran.task_arn);
    reporter.info(&format!(
        "task `{id}` goes on in ECS: `berth run --env {} --attach {id}` follows it",
        settings.env
    ));
    true
}

/// Following a task that exists failed (CloudWatch or ECS refused a read): the result is still
/// written, and the error says how to follow it again.
fn not_followed(settings: &Settings, task_arn: &str, error: &Error) -> Error {
    let id = arn::short(task_arn);
    Error::TaskFailed {
        summary: format!(
            "following task `{id}` failed: {}",
            crate::text::with_causes(error)
        ),
        hint: format!(
            "the task goes on in ECS: `berth run --env {} --attach {id}` follows it again",
            settings.env
        ),
        exit_code: None,
    }
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
fn checked_token(
    settings: &Settings,
    options: &RunOptions,
    (service, revision): (&str, &str),
) -> Result<Token, Error> {
    let container = options
        .container
        .as_deref()
        .unwrap_or(&settings.migration.container);
    let command = options.command.join("\u{0}");
    let what = [
        settings.env.as_str(),
        service,
        revision,
        container,
        command.as_str(),
    ];
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
    if let Some(command) = decide::command_of(&found, &container) {
        ran.command = command;
    }
    ran.status = found.last_status().unwrap_or_default().to_owned();
    ran.revision.clone_from(&revision.arn);
    ran.container = container;
    ran.attached = true;
    Ok((revision, found.task_arn().unwrap_or(task_id).to_owned()))
}
