//! berth deploys a Dockerised Rails app to AWS ECS/Fargate.
//!
//! The flow: [`cli`] turns arguments into [`Flags`]; [`settings`] turns flags, `berth.toml` and
//! `BERTH_*` variables into validated [`settings::Settings`]; [`pipeline`] runs the deploy and
//! reports through [`report::Reporter`]; [`error`] says how it ended; [`output`] shows it.
//!
//! Dependencies point one way, down this list (`tests/architecture.rs` checks it):
//! - the binary and [`output`], the terminal: the only code that knows indicatif or stdout;
//! - [`pipeline`], which runs the steps in order and decides what to skip, beside [`plan`],
//!   [`status`] and [`rollback`];
//! - the steps: [`build`], [`cache`] and [`push`] (Docker), [`register`], [`rollout`], [`migrate`] (ECS),
//!   [`schedules`] (EventBridge);
//!   a step never imports the pipeline, and keeps its decisions in pure functions
//!   ([`rollout`]'s verdict, [`migrate`]'s decision, [`taskdef::next_revision`]);
//! - what the steps share: [`current`] (the AWS state a deploy starts from), [`taskdef`],
//!   [`services`], [`ecr`], [`logs`], [`release`], [`context`], [`dockerfile`];
//! - the edges and the words: [`aws`], [`docker`], [`settings`], [`error`], [`report`], [`text`],
//!   [`arn`].

pub mod arn;
pub mod aws;
pub mod build;
pub mod cache;
pub mod cleanup;
pub mod cli;
pub mod context;
pub mod current;
pub mod docker;
pub mod dockerfile;
pub mod dockerignore;
pub mod ecr;
pub mod env_vars;
pub mod error;
pub mod flags;
pub mod init;
pub mod logs;
pub mod migrate;
pub mod output;
pub mod pipeline;
pub mod plan;
pub mod push;
pub mod register;
pub mod release;
pub mod report;
pub mod rollback;
pub mod rollout;
pub mod schedules;
pub mod services;
pub mod settings;
pub mod state;
pub mod status;
pub mod summary;
pub mod taskdef;
pub mod text;
pub mod wire;

pub use error::{Error, ExitStatus};
pub use flags::{Command, Flags, OutputFormat};

/// What a command produced, for [`output::write_result`].
#[derive(Debug)]
pub enum Outcome {
    /// A deploy that ran: its record, and how it failed if it did. Settings errors, found before
    /// it runs, are plain errors.
    Deploy {
        report: Box<pipeline::Report>,
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
    /// `berth unlock`: the holder released, `None` when the lock was free.
    Unlock {
        env: String,
        released: Option<state::lock::Holder>,
    },
}

/// Runs one berth command. Settings are resolved and checked before anything else happens.
pub async fn run(flags: &Flags, reporter: &dyn report::Reporter) -> Result<Outcome, Error> {
    match flags.command {
        Command::Config => Ok(Outcome::Config {
            settings: Box::new(settings::load(flags)?),
        }),
        Command::Deploy => {
            let settings = settings::load(flags)?;
            let interrupted = stop_requested();
            let (report, result) =
                pipeline::deploy(&settings, flags.deploy, reporter, interrupted).await;
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
            unlock(&settings, flags.yes, reporter).await
        }
        Command::Init => Ok(Outcome::Init {
            written: Box::new(init::init(flags, reporter).await?),
        }),
        Command::Plan => {
            let settings = settings::load(flags)?;
            Ok(Outcome::Plan {
                plan: Box::new(plan::plan(&settings, flags.deploy, reporter).await?),
            })
        }
    }
}

/// Releases the environment's lock whoever holds it, after asking (or with `--yes`).
async fn unlock(
    settings: &settings::Settings,
    yes: bool,
    reporter: &dyn report::Reporter,
) -> Result<Outcome, Error> {
    let config = aws::sdk_config(settings).await?;
    let none = || Outcome::Unlock {
        env: settings.env.clone(),
        released: None,
    };
    let Some(store) = state::Store::find(&config, settings).await? else {
        return Ok(none());
    };
    let file = state::lock::read(&store).await?;
    let Some(holder) = file.holder else {
        return Ok(none());
    };
    let now = state::now();
    let question = format!(
        "`{}` is locked by {}; its lease {}. Release it? A deploy still running would go on without the lock",
        settings.env,
        holder.describe(now),
        if holder.expires > now {
            format!(
                "runs out in {}",
                text::short_duration(std::time::Duration::from_secs(holder.expires - now))
            )
        } else {
            "has run out".to_owned()
        }
    );
    if !yes {
        match reporter.confirm(&question) {
            Some(true) => {}
            Some(false) => {
                return Err(Error::Mismatch {
                    problem: format!("`{}` left locked", settings.env),
                    hint: "nothing was changed".to_owned(),
                });
            }
            None => {
                return Err(Error::Mismatch {
                    problem: format!(
                        "`{}` is locked by {}, and berth asks before releasing a lock",
                        settings.env,
                        holder.describe(now)
                    ),
                    hint: "pass `--yes` to release it without asking (stdin is not a terminal)"
                        .to_owned(),
                });
            }
        }
    }
    Ok(Outcome::Unlock {
        env: settings.env.clone(),
        released: state::lock::force_release(&store, &holder.run).await?,
    })
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
            } => Err(error),
            Self::Plan { plan } if !plan.changes => Ok(ExitStatus::NothingToDeploy),
            _ => Ok(ExitStatus::Success),
        }
    }
}
