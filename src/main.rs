//! `threadcenter-bench`: parse the command line, run the subcommand, print the error chain.

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = <threadcenter::cli::Cli as clap::Parser>::parse();
    match threadcenter::cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("threadcenter-bench: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
