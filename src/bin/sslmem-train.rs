//! The `sslmem-train` binary (feature `train`): parse arguments, hand over to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    sslmem::runtime::disable_ort_telemetry();
    sslmem::train::cli::main(sslmem::train::cli::TrainCli::parse())
}
