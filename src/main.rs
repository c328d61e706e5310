//! The `sslmem` binary: parse arguments, hand over to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    sslmem::runtime::disable_ort_telemetry();
    sslmem::cli::main(sslmem::cli::Cli::parse())
}
