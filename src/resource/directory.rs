//! `directory`: a directory's existence, mode and ownership, optionally purged.

use crate::diag::Diagnostic;
use crate::model::Resource;
use crate::resource::{
    AttrType, Candidate, ENSURE_PRESENT_ABSENT, GROUP, ImplicitDep, MODE, NameRule, OWNER,
    ResourceType, TypeSchema, absent_with, attr, path_deps,
};

pub(crate) struct Directory;

static SCHEMA: TypeSchema = TypeSchema {
    doc: "a directory; NAME is its absolute path",
    name_rule: NameRule::AbsPath,
    attrs: &[
        ENSURE_PRESENT_ABSENT,
        MODE,
        OWNER,
        GROUP,
        attr(
            "purge",
            AttrType::Bool,
            "remove entries that no resource manages",
        ),
    ],
    exclusive: &[],
};

impl ResourceType for Directory {
    fn kind(&self) -> &'static str {
        "directory"
    }

    fn schema(&self) -> &TypeSchema {
        &SCHEMA
    }

    fn validate(&self, res: &Candidate<'_>, acc: &mut Vec<Diagnostic>) {
        absent_with(res, &["mode", "owner", "group", "purge"], acc);
        if res.id.name == "/" && res.str("ensure") == Some("absent") {
            acc.push(Diagnostic::error(
                "schema::refused",
                res.span,
                "refusing to remove `/`",
            ));
        }
    }

    fn implicit_deps(&self, res: &Resource) -> Vec<ImplicitDep> {
        path_deps(res, &res.id.name)
    }
}
