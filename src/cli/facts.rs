//! `steward facts`: the facts steward knows of this machine, as documents read them
//! (`node.hostname`, `node.os.family`, ...).

use crate::model::Facts;

use super::{Context, Exit, OutputFormat, print_stdout};

#[derive(clap::Args, Debug)]
pub(crate) struct FactsArgs {
    /// `human` (a table) or `json` (`format_version`, `kind`, then the `node` template
    /// variable's fields).
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub(crate) format: OutputFormat,
}

/// Prints the local node's facts, read under `--root` as `plan` reads them.
pub(crate) fn facts(ctx: &Context, args: &FactsArgs) -> std::io::Result<Exit> {
    let facts = crate::facts::local(&ctx.root);
    print_stdout(&match args.format {
        OutputFormat::Human => human(&facts),
        OutputFormat::Json => json(&facts),
    })
}

/// One line per fact, named as a template reads it.
fn human(facts: &Facts) -> String {
    let known = |value: String| {
        if value.is_empty() {
            "(unknown)".to_string()
        } else {
            value
        }
    };
    let addresses = if facts.addresses.is_empty() {
        "(none known)".to_string()
    } else {
        facts.addresses.join(", ")
    };
    let interfaces = if facts.interfaces.is_empty() {
        "(none known)".to_string()
    } else {
        facts
            .interfaces
            .iter()
            .map(|(name, addresses)| format!("{name}: {}", addresses.join(", ")))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let memory = facts
        .memory
        .map(|bytes| format!("{bytes} ({})", binary_size(bytes)));
    let rows = [
        ("node.hostname", facts.hostname.clone()),
        ("node.os.family", facts.os_family.clone()),
        ("node.os.release", known(facts.os_release.clone())),
        ("node.arch", facts.arch.clone()),
        ("node.addresses", addresses),
        ("node.interfaces", interfaces),
        (
            "node.cpus",
            known(facts.cpus.map(|n| n.to_string()).unwrap_or_default()),
        ),
        ("node.memory", known(memory.unwrap_or_default())),
        ("node.kernel", known(facts.kernel.clone())),
        ("node.virtual", known(facts.virtualization.clone())),
    ];
    rows.iter()
        .map(|(name, value)| format!("{name:<16} {value}\n"))
        .collect()
}

/// Bytes for people, in the largest binary unit that keeps at least 1: `15.6 GiB`.
fn binary_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn json(facts: &Facts) -> String {
    let value = serde_json::json!({
        "hostname": facts.hostname,
        "os": { "family": facts.os_family, "release": facts.os_release },
        "arch": facts.arch,
        "addresses": facts.addresses,
        "interfaces": facts.interfaces,
        "cpus": facts.cpus,
        "memory": facts.memory,
        "kernel": facts.kernel,
        "virtual": facts.virtualization,
    });
    super::output::json_answer("steward-facts", value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(binary_size(0), "0 B");
        assert_eq!(binary_size(1023), "1023 B");
        assert_eq!(binary_size(1536), "1.5 KiB");
        assert_eq!(binary_size(16_318_412 * 1024), "15.6 GiB");
        assert_eq!(binary_size(u64::MAX), "16777216.0 TiB");
    }
}
