//! berth deploys a Dockerised Rails app to AWS ECS/Fargate.
//!
//! The flow: [`cli`] turns arguments into [`Flags`]; [`settings`] turns flags, `berth.toml` and
//! `BERTH_*` variables into validated [`settings::Settings`]; [`pipeline`] runs the deploy and
//! reports through [`output::Reporter`]; [`error`] says how it ended.

pub mod aws;
pub mod build;
pub mod cli;
pub mod context;
pub mod docker;
pub mod dockerignore;
pub mod ecr;
pub mod env_vars;
pub mod error;
pub mod flags;
pub mod migrate;
pub mod output;
pub mod pipeline;
pub mod push;
pub mod register;
pub mod release;
pub mod rollout;
pub mod settings;
pub mod summary;
pub mod taskdef;

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
}

/// Runs one berth command. Settings are resolved and checked before anything else happens.
pub async fn run(flags: &Flags, reporter: &dyn output::Reporter) -> Result<Outcome, Error> {
    match flags.command {
        Command::Config => Ok(Outcome::Config {
            settings: Box::new(settings::load(flags)?),
        }),
        Command::Deploy => {
            let settings = settings::load(flags)?;
            let interrupted = async {
                // Without a signal handler there is no Ctrl-C to wait for.
                if tokio::signal::ctrl_c().await.is_err() {
                    std::future::pending::<()>().await;
                }
            };
            let (report, result) =
                pipeline::deploy(&settings, flags.deploy, reporter, interrupted).await;
            Ok(Outcome::Deploy {
                report: Box::new(report),
                failure: result.err(),
            })
        }
    }
}

impl Outcome {
    /// The command's own verdict, once its result is written.
    pub fn into_result(self) -> Result<(), Error> {
        match self {
            Self::Deploy {
                failure: Some(error),
                ..
            } => Err(error),
            _ => Ok(()),
        }
    }
}
