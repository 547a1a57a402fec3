//! `steward show PLAN`: a saved plan printed again, as `plan` printed it or as its JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::local::SavedPlan;
use crate::report::plan::{PlanParameter, SavedView, Style};

use super::{Context, Exit, OutputFormat, print_stdout, usage_error};

#[derive(clap::Args, Debug)]
pub(crate) struct ShowArgs {
    /// A plan saved with `steward plan -o FILE`.
    pub(crate) plan: PathBuf,
    /// `human` (as `plan` printed it) or `json` (the saved plan itself).
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub(crate) format: OutputFormat,
}

/// Prints a saved plan; a file that is not one is an error naming it.
pub(crate) fn show(ctx: &Context, args: &ShowArgs) -> std::io::Result<Exit> {
    let path = &args.plan;
    if path.is_dir() {
        return usage_error(&format!(
            "{} is a directory, not a saved plan (made by `steward plan -o FILE`)",
            path.display()
        ));
    }
    let text = match SavedPlan::read_text(path) {
        Ok(Some((_, text))) => text,
        Ok(None) => {
            return usage_error(&format!(
                "{} is not a saved steward plan (made by `steward plan -o FILE`)",
                path.display()
            ));
        }
        Err(err) => return usage_error(&err.to_string()),
    };
    match args.format {
        OutputFormat::Json => print_stdout(&text),
        OutputFormat::Human => match serde_json::from_str::<SavedView>(&text) {
            Ok(view) => {
                let mut out = crate::report::plan::saved_human(&view, Style::new(ctx.stdout_color));
                if let Ok(made) = serde_json::from_str::<MadeWith>(&text) {
                    out.push_str(&made.footer(path));
                }
                print_stdout(&out)
            }
            Err(err) => usage_error(&format!(
                "{}:{}:{}: not a readable steward plan: {err}",
                path.display(),
                err.line(),
                err.column()
            )),
        },
    }
}

/// What a saved plan was made with, for the lines `show` prints after the plan: what
/// `apply PLAN` will check and what it needs given again.
#[derive(serde::Deserialize)]
struct MadeWith {
    #[serde(default)]
    project: String,
    #[serde(default)]
    root: String,
    #[serde(default)]
    target: Vec<String>,
    #[serde(default)]
    parameters: Option<BTreeMap<String, PlanParameter>>,
}

impl MadeWith {
    fn footer(&self, path: &Path) -> String {
        let mut out = format!(
            "\nSaved plan {}: made from the project `{}`",
            path.display(),
            self.project
        );
        if !self.root.is_empty() && self.root != "/" {
            let _ = write!(out, ", --root {}", self.root);
        }
        if !self.target.is_empty() {
            let _ = write!(out, ", --target {}", self.target.join(","));
        }
        out.push_str(".\n");
        let parameters = self.parameters.as_ref().filter(|all| !all.is_empty());
        let mut sensitive = Vec::new();
        if let Some(parameters) = parameters {
            let shown: Vec<String> = parameters
                .iter()
                .map(|(name, value)| match value {
                    PlanParameter::Value(text) if text.contains(char::is_control) => {
                        format!("{name}={}", text.escape_debug())
                    }
                    PlanParameter::Value(text) => format!("{name}={text}"),
                    PlanParameter::Hash(_) => {
                        sensitive.push(name.as_str());
                        format!("{name}=(sensitive)")
                    }
                })
                .collect();
            let _ = writeln!(out, "Parameters: {}.", shown.join(", "));
        }
        let _ = write!(out, "Apply it with `steward apply {}`", path.display());
        if !sensitive.is_empty() {
            let _ = write!(
                out,
                " and the sensitive parameters again ({})",
                sensitive.join(", ")
            );
        }
        out.push_str(".\n");
        out
    }
}
