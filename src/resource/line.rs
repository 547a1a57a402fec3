//! `line`: one line in a file, optionally replacing the line that matches `match`.

use crate::diag::Diagnostic;
use crate::model::{Resource, ResourceId};
use crate::resource::{
    AttrType, Candidate, ENSURE_PRESENT_ABSENT, ImplicitDep, NameRule, ResourceType, TypeSchema,
    attr, check_abs_path, required_when_present,
};

pub(crate) struct Line;

static SCHEMA: TypeSchema = TypeSchema {
    doc: "a line in an existing file; NAME is the file's path unless `path` is given",
    name_rule: NameRule::Label,
    attrs: &[
        ENSURE_PRESENT_ABSENT,
        attr("path", AttrType::AbsPath, "the file (default: NAME)"),
        attr("line", AttrType::String, "the exact line"),
        attr(
            "match",
            AttrType::Regex,
            "a regular expression; the first matching line is replaced",
        ),
    ],
    exclusive: &[],
};

/// The file a `line` resource edits.
fn path_of(res: &Resource) -> &str {
    res.attr_str("path").unwrap_or(&res.id.name)
}

impl ResourceType for Line {
    fn provider(&self) -> &dyn crate::resource::provider::Provider {
        self
    }

    fn kind(&self) -> &'static str {
        "line"
    }

    fn schema(&self) -> &TypeSchema {
        &SCHEMA
    }

    fn validate(&self, res: &Candidate<'_>, acc: &mut Vec<Diagnostic>) {
        required_when_present(res, "line", acc);
        if !res.attrs.contains_key("path")
            && let Err(problem) = check_abs_path(&res.id.name)
        {
            acc.push(
                Diagnostic::error(
                    "schema::invalid_name",
                    res.span,
                    format!("invalid name for `line`: {problem}"),
                )
                .with_help("NAME is the file's absolute path; give `path` to use a label as NAME"),
            );
        }
        if let Some(line) = res.str("line")
            && line.contains('\n')
        {
            acc.push(Diagnostic::error(
                "schema::invalid_value",
                res.span_of("line"),
                "`line` contains a newline",
            ));
        }
    }

    fn implicit_deps(&self, res: &Resource) -> Vec<ImplicitDep> {
        vec![ImplicitDep {
            candidates: vec![ResourceId::new("file", path_of(res))],
            reason: "edits file",
        }]
    }
}

// Placeholder until the line provider lands.
impl crate::resource::provider::Provider for Line {
    fn read(
        &self,
        _ctx: &crate::resource::provider::ProviderCtx<'_>,
        _res: &crate::model::Resource,
    ) -> Result<crate::resource::change::State, crate::resource::provider::ProviderError> {
        Err(crate::resource::provider::ProviderError::Unsupported {
            message: "line provider pending".into(),
        })
    }

    fn apply(
        &self,
        _ctx: &crate::resource::provider::ProviderCtx<'_>,
        _res: &crate::model::Resource,
    ) -> Result<crate::resource::provider::Applied, crate::resource::provider::ProviderError> {
        Err(crate::resource::provider::ProviderError::Unsupported {
            message: "line provider pending".into(),
        })
    }
}
