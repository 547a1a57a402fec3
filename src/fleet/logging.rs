//! Logs of the long-running processes (`steward serve`, `steward agent`) through `tracing`:
//! levels, UTC timestamps and fields (`node`, `task`, `run`), to standard error, for people
//! by default or as one JSON object per line (`--log-format json`). `STEWARD_LOG` sets the
//! filter (`tracing-subscriber`'s `EnvFilter` syntax: `warn`, `info,steward=debug`), `info`
//! when unset. Results go to standard output; logs never do.

use std::fmt;

use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The environment variable holding the log filter.
pub const FILTER_VAR: &str = "STEWARD_LOG";

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `2026-12-03T10:00:00.123Z  INFO steward serve: MESSAGE key=value`.
    #[default]
    Human,
    /// One JSON object per line: `timestamp`, `level`, `message` and the fields.
    Json,
}

/// Why logging could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoggingError {
    /// `STEWARD_LOG` does not parse as a filter.
    #[error("{FILTER_VAR}=`{text}` is not a log filter: {source}")]
    Filter {
        /// The variable's value.
        text: String,
        /// Why it does not parse.
        source: tracing_subscriber::filter::ParseError,
    },
}

/// Starts logging for `process` (`serve` or `agent`). `Err` names a filter that does not
/// parse; a second call in one process is a no-op.
pub fn init(process: &'static str, format: LogFormat) -> Result<(), LoggingError> {
    let filter = match std::env::var(FILTER_VAR) {
        Ok(text) if !text.trim().is_empty() => EnvFilter::try_new(text.trim())
            .map_err(|source| LoggingError::Filter { text, source })?,
        _ => EnvFilter::new("info"),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false);
    // Only the first subscriber of a process is installed (tests may start two).
    let _ = match format {
        LogFormat::Human => builder.event_format(Human { process }).try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_target(false)
            .with_timer(tracing_subscriber::fmt::time::ChronoUtc::new(
                TIMESTAMP.to_string(),
            ))
            .try_init(),
    };
    Ok(())
}

/// RFC 3339 UTC with milliseconds, as every timestamp steward writes.
const TIMESTAMP: &str = "%Y-%m-%dT%H:%M:%S%.3fZ";

/// The human line: timestamp, level, `steward PROCESS:`, the message and its fields.
struct Human {
    process: &'static str,
}

impl<S, N> FormatEvent<S, N> for Human
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(
            writer,
            "{} {:>5} steward {}: ",
            chrono::Utc::now().format(TIMESTAMP),
            event.metadata().level(),
            self.process
        )?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}
