//! Starting `berth run`'s task: the one this token started before, if ECS knows it, else
//! `RunTask` with the token.

use aws_sdk_ecs::Client;
use aws_sdk_ecs::types::Service;

use super::Ran;
use super::decide::{self, Token, TokenSource};
use crate::aws::{arn, failed};
use crate::error::Error;
use crate::report::Reporter;
use crate::settings::Settings;
use crate::task::decide::capacity;
use crate::task::{self, OneOff};

/// Starts the task, or finds the one this token started: running (`ListTasks` by its
/// `startedBy`), or stopped (`RunTask` hands back a token's task for 24 hours).
pub(super) async fn start(
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
        same_run(ecs, settings, found, token, ran).await?;
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
    let answered = output.tasks().first();
    let earlier = answered.is_some_and(|task| decide::started_before(task, asked));
    ran.attached = earlier;
    ran.status = answered
        .and_then(|task| task.last_status())
        .unwrap_or("PROVISIONING")
        .to_owned();
    reporter.info(&started_line(settings, &task_arn, token, ran, earlier));
    Ok(task_arn)
}

/// The running task this token started runs what this run asks (the revision, and the command
/// in the container): else following it would report another command's exit code as this one's.
async fn same_run(
    ecs: &Client,
    settings: &Settings,
    found: &str,
    token: &Token,
    ran: &mut Ran,
) -> Result<(), Error> {
    let Some(task) = task::describe(ecs, &settings.cluster, found).await? else {
        return Ok(());
    };
    ran.status = task.last_status().unwrap_or_default().to_owned();
    let command = decide::command_of(&task, &ran.container);
    if task.task_definition_arn() == Some(ran.revision.as_str())
        && command.as_ref() == Some(&ran.command)
    {
        return Ok(());
    }
    Err(Error::Mismatch {
        problem: format!(
            "client token `{}` started task `{}`, which runs another command, container or revision (`{}`)",
            token.client_token,
            arn::short(found),
            arn::short(task.task_definition_arn().unwrap_or_default())
        ),
        hint: "pass another `--client-token` to run this command, or `--attach` that task to follow it".to_owned(),
    })
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
