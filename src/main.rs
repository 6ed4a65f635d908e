use std::process::ExitCode;

use berth::Error;
use berth::output;

fn main() -> ExitCode {
    // Usage errors end here: clap prints them and exits with code 2.
    let flags = berth::cli::parse();
    output::init_logging();

    let console = output::console();
    let result = tokio::runtime::Runtime::new()
        .map_err(Error::Runtime)
        .and_then(|runtime| {
            // Ctrl-C or SIGTERM ends a deploy with its record written (exit 130); see `commands::deploy`.
            runtime.block_on(berth::run(&flags, console.as_ref(), console.as_ref()))
        });
    // The live view ends before the result and any error are written.
    drop(console);
    let result = result.and_then(|outcome| {
        output::write_result(flags.output, &outcome)?;
        outcome.into_result()
    });

    match result {
        Ok(status) => status.into(),
        Err(error) => {
            output::write_error(&error);
            error.exit_status().into()
        }
    }
}
