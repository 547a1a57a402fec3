//! `group`: a local group, managed with the system's own tools.

use crate::diag::Diagnostic;
use crate::resource::{
    AttrType, Candidate, ENSURE_PRESENT_ABSENT, NameRule, ResourceType, TypeSchema, absent_with,
    attr,
};

pub(crate) struct Group;

static SCHEMA: TypeSchema = TypeSchema {
    doc: "a local group; NAME is the group name",
    name_rule: NameRule::Account,
    attrs: &[
        ENSURE_PRESENT_ABSENT,
        attr(
            "gid",
            AttrType::Int {
                min: 0,
                max: 4_294_967_294,
            },
            "numeric group id",
        ),
        attr("system", AttrType::Bool, "create as a system group"),
    ],
    exclusive: &[],
};

impl ResourceType for Group {
    fn provider(&self) -> &dyn crate::resource::provider::Provider {
        self
    }

    fn kind(&self) -> &'static str {
        "group"
    }

    fn schema(&self) -> &TypeSchema {
        &SCHEMA
    }

    fn validate(&self, res: &Candidate<'_>, acc: &mut Vec<Diagnostic>) {
        absent_with(res, &["gid", "system"], acc);
    }
}

// Placeholder until the system providers land (helper task in progress).
impl crate::resource::provider::Provider for Group {
    fn read(
        &self,
        _ctx: &crate::resource::provider::ProviderCtx<'_>,
        _res: &crate::model::Resource,
    ) -> Result<crate::resource::change::State, crate::resource::provider::ProviderError> {
        Err(crate::resource::provider::ProviderError::Unsupported {
            message: "group provider pending".into(),
        })
    }

    fn apply(
        &self,
        _ctx: &crate::resource::provider::ProviderCtx<'_>,
        _res: &crate::model::Resource,
    ) -> Result<crate::resource::provider::Applied, crate::resource::provider::ProviderError> {
        Err(crate::resource::provider::ProviderError::Unsupported {
            message: "group provider pending".into(),
        })
    }
}
