//! `steward facts`: the facts steward knows of this machine, as documents read them
//! (`node.hostname`, `node.os.family`, ...).

use crate::model::Facts;

use super::{Context, Exit, OutputFormat, print_stdout};

#[derive(clap::Args, Debug)]
pub(crate) struct FactsArgs {
    /// `human` (a table) or `json` (the same shape as the `node` template variable).
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
    let addresses = if facts.addresses.is_empty() {
        "(none known)".to_string()
    } else {
        facts.addresses.join(", ")
    };
    let rows = [
        ("node.hostname", facts.hostname.as_str()),
        ("node.os.family", facts.os_family.as_str()),
        ("node.os.release", facts.os_release.as_str()),
        ("node.arch", facts.arch.as_str()),
        ("node.addresses", addresses.as_str()),
    ];
    rows.iter()
        .map(|(name, value)| format!("{name:<16} {value}\n"))
        .collect()
}

fn json(facts: &Facts) -> String {
    let value = serde_json::json!({
        "hostname": facts.hostname,
        "os": { "family": facts.os_family, "release": facts.os_release },
        "arch": facts.arch,
        "addresses": facts.addresses,
    });
    format!("{value:#}\n")
}
