use std::process::ExitCode;

use berth::output;
use berth::{Error, ExitStatus};

fn main() -> ExitCode {
    // Usage errors end here: clap prints them and exits with code 2.
    let flags = berth::cli::parse();
    output::init_logging();

    let reporter = output::reporter();
    let result = tokio::runtime::Runtime::new()
        .map_err(Error::Runtime)
        .and_then(|runtime| {
            runtime.block_on(async {
                tokio::select! {
                    result = berth::run(&flags, reporter.as_ref()) => result,
                    Ok(()) = tokio::signal::ctrl_c() => Err(Error::Interrupted),
                }
            })
        });
    // The live view ends before the result and any error are written.
    drop(reporter);
    let result = result.and_then(|outcome| {
        output::write_result(flags.output, &outcome)?;
        outcome.into_result()
    });

    match result {
        Ok(()) => ExitStatus::Success.into(),
        Err(error) => {
            output::write_error(&error);
            error.exit_status().into()
        }
    }
}
