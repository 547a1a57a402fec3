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
    fn provider(&self) -> &dyn crate::resource::provider::Provider {
        self
    }

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

// Placeholder until the directory provider lands.
impl crate::resource::provider::Provider for Directory {
    fn read(
        &self,
        _ctx: &crate::resource::provider::ProviderCtx<'_>,
        _res: &crate::model::Resource,
    ) -> Result<crate::resource::change::State, crate::resource::provider::ProviderError> {
        Err(crate::resource::provider::ProviderError::Unsupported {
            message: "directory provider pending".into(),
        })
    }

    fn apply(
        &self,
        _ctx: &crate::resource::provider::ProviderCtx<'_>,
        _res: &crate::model::Resource,
    ) -> Result<crate::resource::provider::Applied, crate::resource::provider::ProviderError> {
        Err(crate::resource::provider::ProviderError::Unsupported {
            message: "directory provider pending".into(),
        })
    }
}
