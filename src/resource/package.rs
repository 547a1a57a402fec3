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
    fn provider(&self) -> &dyn crate::resource::provider::Provider {
        self
    }

    fn kind(&self) -> &'static str {
        "package"
    }

    fn schema(&self) -> &TypeSchema {
        &SCHEMA
    }
}

// Placeholder until the system providers land (helper task in progress).
impl crate::resource::provider::Provider for Package {
    fn read(
        &self,
        _ctx: &crate::resource::provider::ProviderCtx<'_>,
        _res: &crate::model::Resource,
    ) -> Result<crate::resource::change::State, crate::resource::provider::ProviderError> {
        Err(crate::resource::provider::ProviderError::Unsupported {
            message: "package provider pending".into(),
        })
    }

    fn apply(
        &self,
        _ctx: &crate::resource::provider::ProviderCtx<'_>,
        _res: &crate::model::Resource,
    ) -> Result<crate::resource::provider::Applied, crate::resource::provider::ProviderError> {
        Err(crate::resource::provider::ProviderError::Unsupported {
            message: "package provider pending".into(),
        })
    }
}
