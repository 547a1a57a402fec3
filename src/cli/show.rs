//! `steward show PLAN`: a saved plan printed again, as `plan` printed it or as its JSON.

use std::path::PathBuf;

use crate::local::SavedPlan;
use crate::report::plan::{SavedView, Style};

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
            Ok(view) => print_stdout(&crate::report::plan::saved_human(
                &view,
                Style::new(ctx.stdout_color),
            )),
            Err(err) => usage_error(&format!(
                "{}:{}:{}: not a readable steward plan: {err}",
                path.display(),
                err.line(),
                err.column()
            )),
        },
    }
}
