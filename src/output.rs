//! Front-end plumbing shared by the binaries and the library's long jobs: logging set-up and
//! progress bars. Nothing here computes.

use indicatif::{ProgressBar, ProgressStyle};

/// Log format on stderr.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

crate::choice!(LogFormat, "log format", {
    Text = "text" => "Human-readable lines (coloured on a terminal).",
    Json = "json" => "One JSON object per line.",
});

/// Logs to stderr, filtered by `RUST_LOG` (default `info`); colours only on a terminal.
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
    };
}

/// A progress bar on stderr for `n` items (hidden when stderr is not a terminal).
pub fn progress_bar(n: usize, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(n as u64);
    pb.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}
