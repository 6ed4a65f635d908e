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
pub mod plan;
pub mod push;
pub mod release;
pub mod rollout;
pub mod settings;
pub mod taskdef;

pub use error::{Error, ExitStatus};
pub use flags::{Command, Flags, OutputFormat};

/// What a successful command produced, for [`output::write_result`].
#[derive(Debug)]
pub enum Outcome {
    Deploy { report: Box<pipeline::Report> },
    Config { settings: Box<settings::Settings> },
}

/// Runs one berth command. Settings are resolved and checked before anything else happens.
pub async fn run(flags: &Flags, reporter: &dyn output::Reporter) -> Result<Outcome, Error> {
    match flags.command {
        Command::Config => Ok(Outcome::Config {
            settings: Box::new(settings::load(flags)?),
        }),
        Command::Deploy => {
            let settings = settings::load(flags)?;
            let report = pipeline::deploy(&settings, flags.deploy, reporter).await?;
            Ok(Outcome::Deploy {
                report: Box::new(report),
            })
        }
    }
}
