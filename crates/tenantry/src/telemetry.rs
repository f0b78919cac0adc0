//! Logging set-up.

use std::io::IsTerminal;

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Log lines waiting for the writer thread; beyond it lines are dropped, never waited for.
const BUFFERED_LINES: usize = 16_384;

/// Installs the global subscriber: `LOG_LEVEL` filter, text or JSON lines on stderr.
/// Colours only when stderr is a terminal.
///
/// Lines are written by a thread of their own through a bounded buffer, so a slow, full or
/// closed stderr (a pipe nobody reads) never blocks a request, a job or the shutdown: when
/// the buffer is full, lines are dropped. Keep the guard until exit; dropping it flushes
/// what is buffered (waiting at most a second).
pub(crate) fn init(level: &str, format: LogFormat) -> Option<WorkerGuard> {
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(BUFFERED_LINES)
        .thread_name("tenantry-log")
        .finish(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(writer);
    // A second init (tests, embedding) keeps the first subscriber.
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
    installed.is_ok().then_some(guard)
}

/// An error and its causes on one line, for logs.
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
