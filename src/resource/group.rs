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
