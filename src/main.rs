//! The `followupd` binary: parse the command line and hand it to the
//! library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    followupd::cli::main(followupd::cli::Cli::parse())
}
