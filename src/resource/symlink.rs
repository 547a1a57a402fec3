//! `symlink`: a symbolic link and where it points.

use crate::diag::Diagnostic;
use crate::model::Resource;
use crate::resource::{
    AttrType, Candidate, ENSURE_PRESENT_ABSENT, ImplicitDep, NameRule, ResourceType, TypeSchema,
    absent_with, attr, parent_directories, required_when_present,
};

pub(crate) struct Symlink;

static SCHEMA: TypeSchema = TypeSchema {
    doc: "a symbolic link; NAME is the link's absolute path",
    name_rule: NameRule::AbsPath,
    attrs: &[
        ENSURE_PRESENT_ABSENT,
        attr("target", AttrType::String, "what the link points to"),
    ],
    exclusive: &[],
};

impl ResourceType for Symlink {
    fn provider(&self) -> &dyn crate::resource::provider::Provider {
        self
    }

    fn kind(&self) -> &'static str {
        "symlink"
    }

    fn schema(&self) -> &TypeSchema {
        &SCHEMA
    }

    fn validate(&self, res: &Candidate<'_>, acc: &mut Vec<Diagnostic>) {
        required_when_present(res, "target", acc);
        absent_with(res, &["target"], acc);
        if res.str("target") == Some("") {
            acc.push(Diagnostic::error(
                "schema::invalid_value",
                res.span_of("target"),
                "`target` is empty",
            ));
        }
    }

    fn implicit_deps(&self, res: &Resource) -> Vec<ImplicitDep> {
        vec![ImplicitDep {
            candidates: parent_directories(&res.id.name),
            reason: "inside directory",
        }]
    }
}

// Placeholder until the symlink provider lands.
impl crate::resource::provider::Provider for Symlink {
    fn read(
        &self,
        _ctx: &crate::resource::provider::ProviderCtx<'_>,
        _res: &crate::model::Resource,
    ) -> Result<crate::resource::change::State, crate::resource::provider::ProviderError> {
        Err(crate::resource::provider::ProviderError::Unsupported {
            message: "symlink provider pending".into(),
        })
    }

    fn apply(
        &self,
        _ctx: &crate::resource::provider::ProviderCtx<'_>,
        _res: &crate::model::Resource,
    ) -> Result<crate::resource::provider::Applied, crate::resource::provider::ProviderError> {
        Err(crate::resource::provider::ProviderError::Unsupported {
            message: "symlink provider pending".into(),
        })
    }
}
