//! `spp`, the controller and ops CLI of the spp socket server: parses the
//! arguments and runs them ([`spp_controller::main`]).

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    spp_controller::main(spp_controller::cli::Cli::parse())
}
