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
