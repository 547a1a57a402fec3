//! Checking and normalizing attribute values against their [`AttrType`].

use std::collections::BTreeMap;
use std::path::Path;

use crate::document::{self, Node};
use crate::model::{Value, grammar};
use crate::resource::{AttrType, check_abs_path};

/// A value that does not fit its type: what is wrong and how to fix it.
pub(crate) struct Mismatch {
    pub message: String,
    pub help: Option<String>,
}

impl Mismatch {
    fn new(message: impl Into<String>) -> Mismatch {
        Mismatch {
            message: message.into(),
            help: None,
        }
    }

    fn help(mut self, help: impl Into<String>) -> Mismatch {
        self.help = Some(help.into());
        self
    }
}

/// A rendered document value as a model value (maps sorted by key).
pub(crate) fn to_model(node: &Node) -> Value {
    match &node.value {
        document::Value::Null => Value::Null,
        document::Value::Bool(value) => Value::Bool(*value),
        document::Value::Int(value) => Value::Int(*value),
        document::Value::Float(value) => Value::Float(*value),
        document::Value::String(text) => Value::String(text.clone()),
        document::Value::List(items) => Value::List(items.iter().map(to_model).collect()),
        document::Value::Map(entries) => Value::Map(
            entries
                .iter()
                .map(|(key, value)| (key.name.clone(), to_model(value)))
                .collect(),
        ),
    }
}

fn found(node: &Node) -> String {
    format!("found {}", node.value.type_name())
}

/// Checks a rendered value against `ty` and returns its normalized form.
pub(crate) fn check(ty: AttrType, node: &Node) -> Result<Value, Mismatch> {
    let text = node.as_str();
    match ty {
        AttrType::String => match &node.value {
            document::Value::String(text) => Ok(Value::String(text.clone())),
            document::Value::Int(_) | document::Value::Float(_) | document::Value::Bool(_) => {
                Err(Mismatch::new(format!("expected a string, {}", found(node)))
                    .help("quote the value"))
            }
            _ => Err(Mismatch::new(format!("expected a string, {}", found(node)))),
        },
        AttrType::Bool => match &node.value {
            document::Value::Bool(value) => Ok(Value::Bool(*value)),
            document::Value::String(text)
                if matches!(
                    text.as_str(),
                    "yes" | "no" | "on" | "off" | "true" | "false"
                ) =>
            {
                Err(
                    Mismatch::new(format!("expected true or false, found the string {text:?}"))
                        .help("write true or false without quotes"),
                )
            }
            _ => Err(Mismatch::new(format!(
                "expected true or false, {}",
                found(node)
            ))),
        },
        AttrType::Int { min, max } => match &node.value {
            document::Value::Int(value) if (min..=max).contains(value) => Ok(Value::Int(*value)),
            document::Value::Int(value) => Err(Mismatch::new(format!(
                "{value} is out of range {min}..={max}"
            ))),
            _ => Err(Mismatch::new(format!(
                "expected an integer, {}",
                found(node)
            ))),
        },
        AttrType::Mode => match text {
            Some(text)
                if (3..=4).contains(&text.len())
                    && text.bytes().all(|b| (b'0'..=b'7').contains(&b)) =>
            {
                Ok(Value::String(format!("{text:0>4}")))
            }
            Some(text) => Err(Mismatch::new(format!("`{text}` is not an octal mode"))
                .help("write the permission bits in octal, such as \"0644\" or \"0755\"")),
            None => Err(
                Mismatch::new(format!("expected an octal mode string, {}", found(node)))
                    .help("quote the mode: \"0644\" (a bare number would not be read as octal)"),
            ),
        },
        AttrType::AbsPath => match text {
            Some(text) => check_abs_path(text)
                .map(|()| Value::String(text.to_string()))
                .map_err(Mismatch::new),
            None => Err(Mismatch::new(format!(
                "expected an absolute path, {}",
                found(node)
            ))),
        },
        AttrType::ProjectPath => match text {
            Some(text) => check_project_path(text).map(|()| Value::String(text.to_string())),
            None => Err(Mismatch::new(format!("expected a path, {}", found(node)))),
        },
        AttrType::Enum(values) => match text {
            Some(text) if values.contains(&text) => Ok(Value::String(text.to_string())),
            Some(text) => Err(Mismatch::new(format!("`{text}` is not allowed here"))
                .help(crate::diag::did_you_mean(text, values))),
            None => Err(Mismatch::new(format!(
                "expected one of {}, {}",
                values.join(", "),
                found(node)
            ))),
        },
        AttrType::StringList => match &node.value {
            document::Value::String(text) => Ok(Value::List(vec![Value::String(text.clone())])),
            document::Value::List(items) => items
                .iter()
                .map(|item| match &item.value {
                    document::Value::String(text) => Ok(Value::String(text.clone())),
                    _ => Err(Mismatch::new(format!(
                        "expected a list of strings, an item is {}",
                        item.value.type_name()
                    ))),
                })
                .collect::<Result<_, _>>()
                .map(Value::List),
            _ => Err(Mismatch::new(format!(
                "expected a list of strings, {}",
                found(node)
            ))),
        },
        AttrType::StringMap => string_map(node).map(|map| {
            Value::Map(
                map.into_iter()
                    .map(|(k, v)| (k, Value::String(v)))
                    .collect(),
            )
        }),
        AttrType::Command => command(node),
        AttrType::Duration => duration(node),
        AttrType::Regex => match text {
            Some(text) => regex::Regex::new(text)
                .map(|_| Value::String(text.to_string()))
                .map_err(|err| {
                    Mismatch::new(format!(
                        "invalid regular expression: {}",
                        first_line(&err.to_string())
                    ))
                }),
            None => Err(Mismatch::new(format!(
                "expected a regular expression, {}",
                found(node)
            ))),
        },
        AttrType::PackageEnsure => match text {
            Some(text @ ("present" | "absent" | "latest")) => Ok(Value::String(text.to_string())),
            Some(text) if is_version(text) => Ok(Value::String(text.to_string())),
            Some(text) => Err(Mismatch::new(format!(
                "`{text}` is neither present, absent, latest nor a version"
            ))
            .help(crate::diag::did_you_mean(
                text,
                &["present", "absent", "latest"],
            ))),
            None => Err(Mismatch::new(format!(
                "expected present, absent, latest or a version, {}",
                found(node)
            ))
            .help("quote version numbers: \"1.2-3\"")),
        },
    }
}

/// [`AttrType::Mode`] as a JSON Schema pattern.
pub(crate) const MODE_PATTERN: &str = "^[0-7]{3,4}$";

/// A [`AttrType::Duration`] string as a JSON Schema pattern, and one of at least one second
/// ([`AttrRule::Positive`]).
///
/// [`AttrRule::Positive`]: crate::resource::AttrRule::Positive
pub(crate) use crate::model::grammar::{DURATION_PATTERN, POSITIVE_DURATION_PATTERN};

/// [`is_version`] as a JSON Schema pattern: without an epoch; with an all-digit epoch
/// (`1:2.0`); or with a first `:` after something that is not an epoch (`1a:b`).
pub(crate) const VERSION_PATTERN: &str = concat!(
    "^(?:[0-9][A-Za-z0-9.+~-]*",
    "|[0-9]+:[0-9][A-Za-z0-9.+~:-]*",
    "|[0-9]+[A-Za-z.+~-][A-Za-z0-9.+~-]*:[A-Za-z0-9.+~:-]*)$"
);

/// [`check_project_path`] as a JSON Schema pattern: not empty, not absolute.
pub(crate) const PROJECT_PATH_PATTERN: &str = "^[^/]";

/// A command string that [`check`] accepts, as a JSON Schema pattern: it splits like a
/// shell would (`shlex`: quotes closed, no trailing backslash, `#` starts a comment at the
/// start of a word) and its first word, the program, is not empty.
pub(crate) const COMMAND_PATTERN: &str = concat!(
    // Blanks and whole comment lines before the program.
    r#"^(?:[ \t\n]|#[^\n]*\n)*"#,
    // The program: a word with at least one character (`''`, `""` and `\<newline>` give none).
    r#"(?:[^ \t\n'"\\#]|\\[^\n]|'[^']+'|"(?:\\\n)*(?:[^"\\]|\\[^\n])(?:[^"\\]|\\[\s\S])*""#,
    r#"|(?:''|""|\\\n|"(?:\\\n)+")+(?:[^ \t\n'"\\]|\\[^\n]|'[^']+'|"(?:\\\n)*(?:[^"\\]|\\[^\n])(?:[^"\\]|\\[\s\S])*"))"#,
    r#"(?:[^ \t\n'"\\]|\\[\s\S]|'[^']*'|"(?:[^"\\]|\\[\s\S])*")*"#,
    // Further words or comments, each after blanks.
    r#"(?:[ \t\n]+(?:#[^\n]*|(?:[^ \t\n'"\\#]|\\[\s\S]|'[^']*'|"(?:[^"\\]|\\[\s\S])*")"#,
    r#"(?:[^ \t\n'"\\]|\\[\s\S]|'[^']*'|"(?:[^"\\]|\\[\s\S])*")*))*"#,
    r#"[ \t\n]*$"#
);

fn first_line(text: &str) -> String {
    text.lines().last().unwrap_or(text).trim().to_string()
}

/// A Debian version: starts with a digit (after an optional `epoch:`), then version characters.
fn is_version(text: &str) -> bool {
    let rest = match text.split_once(':') {
        Some((epoch, rest)) if epoch.bytes().all(|b| b.is_ascii_digit()) && !epoch.is_empty() => {
            rest
        }
        _ => text,
    };
    rest.starts_with(|c: char| c.is_ascii_digit())
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".+~-:".contains(c))
}

/// A path relative to its document that cannot leave the project lexically.
pub(crate) fn check_project_path(text: &str) -> Result<(), Mismatch> {
    let path = Path::new(text);
    if text.is_empty() {
        return Err(Mismatch::new("the path is empty"));
    }
    if path.is_absolute() {
        return Err(Mismatch::new(format!(
            "`{text}` is absolute; project files are named relative to the document"
        ))
        .help("write the path relative to this document's directory"));
    }
    Ok(())
}

/// A map whose values are strings (numbers and booleans are written as text).
pub(crate) fn string_map(node: &Node) -> Result<BTreeMap<String, String>, Mismatch> {
    let Some(entries) = node.as_map() else {
        return Err(Mismatch::new(format!("expected a map, {}", found(node))));
    };
    entries
        .iter()
        .map(|(key, value)| {
            let text = match &value.value {
                document::Value::String(text) => text.clone(),
                document::Value::Int(number) => number.to_string(),
                document::Value::Float(number) => number.to_string(),
                document::Value::Bool(flag) => flag.to_string(),
                other => {
                    return Err(Mismatch::new(format!(
                        "`{}` must be a string, found {}",
                        key.name,
                        other.type_name()
                    )));
                }
            };
            Ok((key.name.clone(), text))
        })
        .collect()
}

fn command(node: &Node) -> Result<Value, Mismatch> {
    let argv: Vec<String> = match &node.value {
        document::Value::String(text) => shlex::split(text).ok_or_else(|| {
            Mismatch::new("the command has an unclosed quote")
                .help("close the quote, or give the command as a list")
        })?,
        document::Value::List(items) => items
            .iter()
            .map(|item| match &item.value {
                document::Value::String(text) => Ok(text.clone()),
                document::Value::Int(number) => Ok(number.to_string()),
                other => Err(Mismatch::new(format!(
                    "command arguments must be strings, found {}",
                    other.type_name()
                ))),
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(Mismatch::new(format!(
                "expected a command, {}",
                found(node)
            )));
        }
    };
    if argv.first().is_none_or(|program| program.is_empty()) {
        return Err(Mismatch::new("the command is empty"));
    }
    Ok(Value::List(argv.into_iter().map(Value::String).collect()))
}

fn duration(node: &Node) -> Result<Value, Mismatch> {
    let help =
        "write seconds as a number, or a string such as \"30s\", \"5m\", \"1h30m\" or \"2d\"";
    match &node.value {
        document::Value::Int(seconds) if *seconds >= 0 => Ok(Value::Int(*seconds)),
        document::Value::String(text) => match grammar::duration(text) {
            // `duration` keeps the seconds within an `i64`.
            Ok(duration) => Ok(Value::Int(
                i64::try_from(duration.as_secs()).unwrap_or(i64::MAX),
            )),
            Err(err) => Err(Mismatch::new(err.to_string()).help(help)),
        },
        _ => Err(Mismatch::new(format!("expected a duration, {}", found(node))).help(help)),
    }
}

/// Checks a declared parameter type; `None` when the name is not a type.
pub(crate) fn param_type_matches(ty: &str, value: &Value) -> Option<bool> {
    Some(match ty {
        "string" => matches!(value, Value::String(_)),
        "number" => matches!(value, Value::Int(_) | Value::Float(_)),
        "bool" => matches!(value, Value::Bool(_)),
        "list" => matches!(value, Value::List(_)),
        "map" => matches!(value, Value::Map(_)),
        _ => return None,
    })
}

/// The parameter types.
pub(crate) const PARAM_TYPES: &[&str] = &["string", "number", "bool", "list", "map"];

/// The JSON types a default of parameter type `ty` may be written as ([`param_type_matches`]
/// after lowering's coercion: a list parameter given one string is a list of one).
pub(crate) fn param_json_types(ty: &str) -> &'static [&'static str] {
    match ty {
        "string" => &["string"],
        "number" => &["number"],
        "bool" => &["boolean"],
        "list" => &["array", "string"],
        "map" => &["object"],
        _ => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::{SourceId, Span};

    fn string(text: &str) -> Node {
        Node {
            span: Span::new(SourceId(0), 0, 0),
            value: document::Value::String(text.into()),
        }
    }

    #[test]
    fn modes_normalize() {
        assert_eq!(
            check(AttrType::Mode, &string("644")).ok(),
            Some(Value::String("0644".into()))
        );
        assert!(check(AttrType::Mode, &string("0844")).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(
            check(AttrType::Duration, &string("5m")).ok(),
            Some(Value::Int(300))
        );
        assert_eq!(
            check(AttrType::Duration, &string("5 minutes")).ok(),
            Some(Value::Int(300))
        );
        assert!(check(AttrType::Duration, &string("5 minutes ago")).is_err());
    }

    #[test]
    fn commands_split_without_shell() {
        let argv = check(AttrType::Command, &string("sysctl --system 'a b'")).ok();
        let expected = ["sysctl", "--system", "a b"]
            .map(|s| Value::String(s.into()))
            .to_vec();
        assert_eq!(argv, Some(Value::List(expected)));
        assert!(check(AttrType::Command, &string("echo 'x")).is_err());
    }

    #[test]
    fn project_paths_stay_inside() {
        assert!(check_project_path("templates/a.j2").is_ok());
        assert!(check_project_path("../templates/a.j2").is_ok());
        assert!(check_project_path("/etc/passwd").is_err());
    }

    fn matches(pattern: &str, text: &str) -> bool {
        regex::Regex::new(pattern).unwrap().is_match(text)
    }

    /// Each JSON Schema pattern here gives [`check`]'s verdict on a list of samples.
    #[test]
    fn patterns_match_checks() {
        let cases: [(AttrType, &str, &[&str]); 5] = [
            (
                AttrType::Mode,
                MODE_PATTERN,
                &[
                    "644", "0644", "0755", "7777", "64", "0844", "01777", "a644", "",
                ],
            ),
            (
                AttrType::Duration,
                DURATION_PATTERN,
                &[
                    "0", "30", "30s", "5m", "2h", "5 m", "m", "", "5d", "+5", "05s", "1h30m",
                    "1h 30m", "2 days", "1w", "1.5h", "1 0m", "500ms", "5M", " 5m", "5m ", "0s0m",
                    "5mm", "h5",
                ],
            ),
            (
                AttrType::PackageEnsure,
                VERSION_PATTERN,
                &[
                    "1.2.3-1",
                    "1:2.0~rc1",
                    "1:x",
                    "1a:b",
                    "a:1",
                    ":1",
                    "1:2:3",
                    "1",
                    "1.0+dfsg",
                    "1_0",
                    "v1",
                    "1:",
                ],
            ),
            (
                AttrType::ProjectPath,
                PROJECT_PATH_PATTERN,
                &["a.j2", "../a", "/etc/passwd", ""],
            ),
            (
                AttrType::Command,
                COMMAND_PATTERN,
                &[
                    "ls",
                    "ls -l",
                    "  ls",
                    "",
                    "   ",
                    "''",
                    "\"\"",
                    "'' x",
                    "''x",
                    "\"\" x",
                    "echo 'x",
                    "echo \"x",
                    "echo \\",
                    "echo \\ x",
                    "# comment",
                    "# comment\nls",
                    "ls # comment",
                    "ls #'x",
                    "a#'b",
                    "\"a b\" c",
                    "'a'\"b\"",
                    "\\\nls",
                    "\\\n",
                    "\"\\\n\"",
                    "\"\\\nx\"",
                    "sh -c 'echo \"hi\"'",
                    "echo \"a\\\"b\"",
                    "#",
                    "\tls",
                    "ls\r",
                    "\"\\",
                ],
            ),
        ];
        for (ty, pattern, samples) in cases {
            for sample in samples {
                let accepted = match ty {
                    AttrType::PackageEnsure => is_version(sample),
                    _ => check(ty, &string(sample)).is_ok(),
                };
                assert_eq!(matches(pattern, sample), accepted, "{ty:?} {sample:?}");
            }
        }
        for sample in [
            "0",
            "00s",
            "1",
            "1s",
            "10m",
            "01h",
            "0s0m",
            "0s 1m",
            "1h0m",
            "0h 00m 10s",
            "010",
            "0 s",
        ] {
            let positive = check(AttrType::Duration, &string(sample))
                .is_ok_and(|value| value.as_int().is_some_and(|n| n > 0));
            assert_eq!(
                matches(POSITIVE_DURATION_PATTERN, sample),
                positive,
                "{sample:?}"
            );
        }
    }

    #[test]
    fn versions() {
        assert!(is_version("1.2.3-1"));
        assert!(is_version("1:2.0~rc1"));
        assert!(!is_version("lastest"));
    }
}
