//! One file per command: [`deploy`], [`plan`], [`status`], [`rollback`], [`run`], [`init`],
//! [`unlock`], [`config`]. A command turns flags into validated settings, runs, and hands back an
//! [`Outcome`]; the binary writes it and picks the exit code.

pub mod config;
pub mod deploy;
pub mod init;
pub mod plan;
pub mod rollback;
pub mod run;
pub mod status;
pub mod unlock;

use crate::error::{Error, ExitStatus};
use crate::flags::{Command, Flags};
use crate::report;
use crate::settings;
use crate::state;

/// What a command produced, for [`crate::output::write_result`].
#[derive(Debug)]
pub enum Outcome {
    /// A deploy that ran: its record, and how it failed if it did. Settings errors, found before
    /// it runs, are plain errors.
    Deploy {
        report: Box<deploy::Report>,
        failure: Option<Error>,
    },
    Config {
        settings: Box<settings::Settings>,
    },
    Status {
        status: Box<status::Status>,
    },
    Rollback {
        report: Box<rollback::Report>,
        failure: Option<Error>,
    },
    Plan {
        plan: Box<plan::Plan>,
    },
    Init {
        written: Box<init::Written>,
    },
    /// `berth run`: the task and how it ended; how it failed, if it did. Errors found before a
    /// task existed are plain errors.
    Run {
        ran: Box<run::Ran>,
        failure: Option<Error>,
    },
    /// `berth unlock`: the holder released, `None` when the lock was free.
    Unlock {
        env: String,
        released: Option<state::lock::Holder>,
    },
}

/// Runs one berth command. Settings are resolved and checked before anything else happens.
pub async fn run(
    flags: &Flags,
    reporter: &dyn report::Reporter,
    prompt: &dyn report::Prompt,
) -> Result<Outcome, Error> {
    match flags.command {
        Command::Config => Ok(Outcome::Config {
            settings: Box::new(config::config(flags)?),
        }),
        Command::Deploy | Command::Continue => {
            let settings = settings::load(flags)?;
            let interrupted = stop_requested();
            let (report, result) =
                deploy::deploy(&settings, flags.deploy, reporter, interrupted).await;
            Ok(Outcome::Deploy {
                report: Box::new(report),
                failure: result.err(),
            })
        }
        Command::Status => {
            let settings = settings::load(flags)?;
            Ok(Outcome::Status {
                status: Box::new(status::read(&settings).await?),
            })
        }
        Command::Rollback => {
            let settings = settings::load(flags)?;
            let (report, result) = rollback::rollback(
                &settings,
                flags.deploy,
                flags.rollback_to.as_deref(),
                reporter,
                stop_requested(),
            )
            .await;
            Ok(Outcome::Rollback {
                report: Box::new(report),
                failure: result.err(),
            })
        }
        Command::Unlock => {
            let settings = settings::load(flags)?;
            let unlocked = unlock::unlock(&settings, flags.yes, prompt).await?;
            Ok(Outcome::Unlock {
                env: unlocked.env,
                released: unlocked.released,
            })
        }
        Command::Init => Ok(Outcome::Init {
            written: Box::new(init::init(flags, reporter).await?),
        }),
        Command::Run => {
            let settings = settings::load(flags)?;
            let (ran, failure) =
                run::run(&settings, &flags.run, reporter, stop_requested()).await?;
            Ok(Outcome::Run {
                ran: Box::new(ran),
                failure,
            })
        }
        Command::Plan => {
            let settings = settings::load(flags)?;
            Ok(Outcome::Plan {
                plan: Box::new(plan::plan(&settings, flags.deploy, reporter).await?),
            })
        }
    }
}

/// Resolves when the user asks berth to stop: Ctrl-C at a terminal, or SIGTERM, which is how
/// CircleCI cancels a job (and how `timeout` and `kill` end a process).
async fn stop_requested() {
    use tokio::signal::unix::{SignalKind, signal};
    // Without a signal handler there is no signal to wait for.
    let terminate = async {
        match signal(SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        () = terminate => {}
        () = interrupt => {}
    }
}

impl Outcome {
    /// The command's own verdict, once its result is written.
    pub fn into_result(self) -> Result<ExitStatus, Error> {
        match self {
            Self::Deploy {
                failure: Some(error),
                ..
            }
            | Self::Rollback {
                failure: Some(error),
                ..
            }
            | Self::Run {
                failure: Some(error),
                ..
            } => Err(error),
            Self::Plan { plan } if !plan.changes => Ok(ExitStatus::NothingToDeploy),
            _ => Ok(ExitStatus::Success),
        }
    }
}
