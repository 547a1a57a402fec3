//! `user`: a local account, managed with the system's own tools.

use crate::diag::Diagnostic;
use crate::model::{Resource, ResourceId, Value};
use crate::resource::{
    AttrType, Candidate, ENSURE_PRESENT_ABSENT, ImplicitDep, NameRule, ResourceType, TypeSchema,
    absent_with, attr,
};

pub(crate) struct User;

static SCHEMA: TypeSchema = TypeSchema {
    doc: "a local user account; NAME is the login name",
    name_rule: NameRule::Account,
    attrs: &[
        ENSURE_PRESENT_ABSENT,
        attr(
            "uid",
            AttrType::Int {
                min: 0,
                max: 4_294_967_294,
            },
            "numeric user id",
        ),
        attr("group", AttrType::String, "primary group name"),
        attr("groups", AttrType::StringList, "supplementary groups"),
        attr("home", AttrType::AbsPath, "home directory"),
        attr("shell", AttrType::AbsPath, "login shell"),
        attr("comment", AttrType::String, "the GECOS comment"),
        attr("system", AttrType::Bool, "create as a system account"),
    ],
    exclusive: &[],
};

impl ResourceType for User {
    fn provider(&self) -> &dyn crate::resource::provider::Provider {
        self
    }

    fn kind(&self) -> &'static str {
        "user"
    }

    fn schema(&self) -> &TypeSchema {
        &SCHEMA
    }

    fn validate(&self, res: &Candidate<'_>, acc: &mut Vec<Diagnostic>) {
        absent_with(
            res,
            &[
                "uid", "group", "groups", "home", "shell", "comment", "system",
            ],
            acc,
        );
    }

    fn implicit_deps(&self, res: &Resource) -> Vec<ImplicitDep> {
        let mut groups: Vec<&str> = res.attr_str("group").into_iter().collect();
        if let Some(Value::List(items)) = res.attr("groups") {
            groups.extend(items.iter().filter_map(Value::as_str));
        }
        groups
            .into_iter()
            .map(|group| ImplicitDep {
                candidates: vec![ResourceId::new("group", group)],
                reason: "member of group",
            })
            .collect()
    }
}

// Placeholder until the system providers land (helper task in progress).
impl crate::resource::provider::Provider for User {
    fn read(
        &self,
        _ctx: &crate::resource::provider::ProviderCtx<'_>,
        _res: &crate::model::Resource,
    ) -> Result<crate::resource::change::State, crate::resource::provider::ProviderError> {
        Err(crate::resource::provider::ProviderError::Unsupported {
            message: "user provider pending".into(),
        })
    }

    fn apply(
        &self,
        _ctx: &crate::resource::provider::ProviderCtx<'_>,
        _res: &crate::model::Resource,
    ) -> Result<crate::resource::provider::Applied, crate::resource::provider::ProviderError> {
        Err(crate::resource::provider::ProviderError::Unsupported {
            message: "user provider pending".into(),
        })
    }
}
