//! The `sslmem-train` binary (feature `train`): parse arguments ([`cli`]; the recipe's flags
//! in [`recipe_args`], the methods' in [`method_args`]), hand over to the library's trainer.

// The library's named enums as clap values: the same file as `sslmem`'s.
#[path = "../../cli/choice_arg.rs"]
mod choice_arg;
mod cli;
mod method_args;
mod recipe_args;

use clap::Parser;

fn main() -> std::process::ExitCode {
    sslmem::train::malloc::keep_freed_memory();
    sslmem::runtime::disable_ort_telemetry();
    cli::main(cli::TrainCli::parse())
}
