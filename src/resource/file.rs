//! `file`: a regular file's content, mode and ownership.

use crate::diag::Diagnostic;
use crate::model::Resource;
use crate::resource::{
    AttrType, Candidate, ENSURE_PRESENT_ABSENT, GROUP, ImplicitDep, MODE, NameRule, OWNER,
    ResourceType, TypeSchema, absent_with, attr, path_deps,
};

pub(crate) struct File;

static SCHEMA: TypeSchema = TypeSchema {
    doc: "a regular file; NAME is its absolute path",
    name_rule: NameRule::AbsPath,
    attrs: &[
        ENSURE_PRESENT_ABSENT,
        attr(
            "content",
            AttrType::String,
            "the file's exact content (a template)",
        ),
        attr(
            "source",
            AttrType::ProjectPath,
            "copy this file from the project",
        ),
        attr(
            "template",
            AttrType::ProjectPath,
            "render this minijinja template from the project",
        ),
        MODE,
        OWNER,
        GROUP,
        attr(
            "backup",
            AttrType::Bool,
            "keep replaced content under the state directory (default true)",
        ),
    ],
    exclusive: &[&["content", "source", "template"]],
};

impl ResourceType for File {
    fn provider(&self) -> &dyn crate::resource::provider::Provider {
        self
    }

    fn kind(&self) -> &'static str {
        "file"
    }

    fn schema(&self) -> &TypeSchema {
        &SCHEMA
    }

    fn validate(&self, res: &Candidate<'_>, acc: &mut Vec<Diagnostic>) {
        absent_with(
            res,
            &["content", "source", "template", "mode", "owner", "group"],
            acc,
        );
    }

    fn implicit_deps(&self, res: &Resource) -> Vec<ImplicitDep> {
        path_deps(res, &res.id.name)
    }
}

// Placeholder until the file provider lands.
impl crate::resource::provider::Provider for File {
    fn read(
        &self,
        _ctx: &crate::resource::provider::ProviderCtx<'_>,
        _res: &crate::model::Resource,
    ) -> Result<crate::resource::change::State, crate::resource::provider::ProviderError> {
        Err(crate::resource::provider::ProviderError::Unsupported {
            message: "file provider pending".into(),
        })
    }

    fn apply(
        &self,
        _ctx: &crate::resource::provider::ProviderCtx<'_>,
        _res: &crate::model::Resource,
    ) -> Result<crate::resource::provider::Applied, crate::resource::provider::ProviderError> {
        Err(crate::resource::provider::ProviderError::Unsupported {
            message: "file provider pending".into(),
        })
    }
}
