//! `package`: a Debian package through dpkg/apt.

use crate::resource::{AttrType, NameRule, ResourceType, TypeSchema, attr};

pub(crate) struct Package;

static SCHEMA: TypeSchema = TypeSchema {
    doc: "a Debian package; NAME is the package name",
    name_rule: NameRule::Package,
    attrs: &[attr(
        "ensure",
        AttrType::PackageEnsure,
        "present (default), absent, latest, or an exact version",
    )],
    exclusive: &[],
};

impl ResourceType for Package {
    fn kind(&self) -> &'static str {
        "package"
    }

    fn schema(&self) -> &TypeSchema {
        &SCHEMA
    }
}
