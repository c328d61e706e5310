//! The `sslmem` binary: parse arguments ([`cli`]), hand over to the library.

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    sslmem::runtime::disable_ort_telemetry();
    cli::main(cli::Cli::parse())
}
