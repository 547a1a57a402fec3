//! The two value grammars documents and flags share: a duration and a rate.
//!
//! A document's `timeout: 90`, `run --timeout 90`, `token create --ttl 1h30m` and
//! `serve --agent-cert-lifetime 30d` read durations here; an association's `max_errors: 10%`
//! and `run --max-errors 10%` read rates here. Callers put the error in place: a document
//! locates it at the value, a flag names itself.
//!
//! **Architecture Invariant:** one grammar each; no caller parses a duration or a rate itself.

use std::time::Duration;

use super::Rate;

/// The smallest `max_concurrency`, as a count or a percentage.
pub const MAX_CONCURRENCY_MIN: u32 = 1;
/// The smallest `max_errors`, as a count or a percentage.
pub const MAX_ERRORS_MIN: u32 = 0;
/// The largest percentage of a rate.
pub const PERCENT_MAX: u8 = 100;

/// The units a duration may use, longest spelling first within each unit (humantime's names
/// for a second and longer; months and years are left out: their length is an average).
pub const DURATION_UNITS: &[&str] = &[
    "seconds", "second", "secs", "sec", "s", "minutes", "minute", "mins", "min", "m", "hours",
    "hour", "hrs", "hr", "h", "days", "day", "d", "weeks", "week", "wks", "wk", "w",
];

/// [`DURATION_UNITS`] as a pattern's alternation.
macro_rules! units {
    () => {
        "(?:seconds|second|secs|sec|s|minutes|minute|mins|min|m|hours|hour|hrs|hr|h|days|day|d|weeks|week|wks|wk|w)"
    };
}

/// What [`duration`] accepts, as a JSON Schema (and `regex`) pattern: whole seconds, or parts
/// of a number and a unit, with spaces allowed between and inside them.
pub const DURATION_PATTERN: &str = concat!(
    "^(?:[0-9]+|[0-9]+ *",
    units!(),
    "(?: *[0-9]+ *",
    units!(),
    ")*)$"
);

/// What [`duration`] accepts and makes at least one second: a number that is not all zeros
/// somewhere.
pub const POSITIVE_DURATION_PATTERN: &str = concat!(
    "^(?:0*[1-9][0-9]*|(?:[0-9]+ *",
    units!(),
    " *)*0*[1-9][0-9]* *",
    units!(),
    "(?: *[0-9]+ *",
    units!(),
    ")*)$"
);

/// Why a duration does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not the grammar: empty, a unit it does not know, a fraction, a sign.
    #[error(
        "`{0}` is not a duration: write seconds (90) or numbers with units (30s, 5m, 1h30m, 2d, 1w)"
    )]
    Syntax(String),
    /// More seconds than steward counts.
    #[error("`{0}` is too long a duration")]
    Overflow(String),
}

/// Reads a duration: a whole number of seconds (`90`), or one or more parts of a number and a
/// unit (`30s`, `5m`, `1h30m`, `1h 30m`, `2 days`, `1w`), summed.
///
/// The units are [`DURATION_UNITS`]; humantime sums the parts. The total fits an `i64` of
/// seconds, as documents store it.
pub fn duration(text: &str) -> Result<Duration, DurationError> {
    if !is_duration_syntax(text) {
        return Err(DurationError::Syntax(text.to_string()));
    }
    let parsed = if text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse::<u64>().ok().map(Duration::from_secs)
    } else {
        humantime::parse_duration(text).ok()
    };
    parsed
        .filter(|d| i64::try_from(d.as_secs()).is_ok())
        .ok_or_else(|| DurationError::Overflow(text.to_string()))
}

/// Whether `text` has the shape of [`DURATION_PATTERN`], checked by hand (the model takes no
/// regex): humantime alone would also take fractions (`1.5h`), spaces inside a number (`1 0m`)
/// and units shorter than a second.
fn is_duration_syntax(text: &str) -> bool {
    let mut rest = text;
    let mut parts = 0;
    loop {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return false;
        }
        rest = &rest[digits..];
        if parts == 0 && rest.is_empty() {
            return true; // Bare seconds.
        }
        rest = rest.trim_start_matches(' ');
        let letters = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        if !DURATION_UNITS.contains(&&rest[..letters]) {
            return false;
        }
        rest = &rest[letters..];
        parts += 1;
        if rest.is_empty() {
            return true;
        }
        rest = rest.trim_start_matches(' ');
    }
}

/// Why a rate does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateError {
    /// Neither a count nor a percentage, or below the smallest allowed.
    #[error(
        "`{text}` is not a rate: write a count ({min} or more) such as 2, or a percentage such as 20%"
    )]
    Syntax {
        /// What was given.
        text: String,
        /// The smallest count or percentage allowed.
        min: u32,
    },
}

/// Reads a rate: a count of at least `min` (`2`), or a percentage from `min` to
/// [`PERCENT_MAX`] (`20%`, spaces allowed before the `%`).
pub fn rate(text: &str, min: u32) -> Result<Rate, RateError> {
    let parsed = match text.strip_suffix('%') {
        Some(percent) => percent
            .trim()
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= PERCENT_MAX && u32::from(*p) >= min)
            .map(Rate::Percent),
        None => text
            .parse::<u32>()
            .ok()
            .filter(|n| *n >= min)
            .map(Rate::Count),
    };
    parsed.ok_or_else(|| RateError::Syntax {
        text: text.to_string(),
        min,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seconds(text: &str) -> Option<u64> {
        duration(text).ok().map(|d| d.as_secs())
    }

    #[test]
    fn durations() {
        assert_eq!(seconds("90"), Some(90));
        assert_eq!(seconds("0"), Some(0));
        assert_eq!(seconds("30s"), Some(30));
        assert_eq!(seconds("5m"), Some(300));
        assert_eq!(seconds("1h30m"), Some(5400));
        assert_eq!(seconds("1h 30m"), Some(5400));
        assert_eq!(seconds("2 days"), Some(172_800));
        assert_eq!(seconds("1w"), Some(604_800));
        for bad in [
            "",
            " ",
            "m",
            "5 minutes ago",
            "1.5h",
            "1 0m",
            "500ms",
            "-5",
            "+5",
            "5M",
            "1y",
            " 5m",
            "5m ",
            "5mm",
            "h5",
        ] {
            assert!(duration(bad).is_err(), "{bad:?}");
        }
        assert!(matches!(
            duration("99999999999999999999"),
            Err(DurationError::Overflow(_))
        ));
        assert!(matches!(
            duration("9999999999999999w"),
            Err(DurationError::Overflow(_))
        ));
    }

    #[test]
    fn rates() {
        assert_eq!(rate("2", 1), Ok(Rate::Count(2)));
        assert_eq!(rate("50%", 1), Ok(Rate::Percent(50)));
        assert_eq!(rate("50 %", 1), Ok(Rate::Percent(50)));
        assert_eq!(rate("0", 0), Ok(Rate::Count(0)));
        for bad in ["0", "0%", "101%", "x", "", "-1", "2.5", "%"] {
            assert!(rate(bad, 1).is_err(), "{bad:?}");
        }
    }
}
