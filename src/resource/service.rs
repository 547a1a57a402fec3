//! `service`: a systemd unit, running or stopped, enabled or not.

use crate::model::{Resource, ResourceId};
use crate::resource::{AttrType, ImplicitDep, NameRule, ResourceType, TypeSchema, attr};

pub(crate) struct Service;

static SCHEMA: TypeSchema = TypeSchema {
    doc: "a systemd service; NAME is the unit name",
    name_rule: NameRule::Service,
    attrs: &[
        attr(
            "ensure",
            AttrType::Enum(&["running", "stopped"]),
            "running or stopped (default: leave as is)",
        ),
        attr("enable", AttrType::Bool, "start at boot"),
    ],
    exclusive: &[],
};

impl ResourceType for Service {
    fn provider(&self) -> &dyn crate::resource::provider::Provider {
        self
    }

    fn kind(&self) -> &'static str {
        "service"
    }

    fn schema(&self) -> &TypeSchema {
        &SCHEMA
    }

    fn implicit_deps(&self, res: &Resource) -> Vec<ImplicitDep> {
        let package = res.id.name.strip_suffix(".service").unwrap_or(&res.id.name);
        vec![ImplicitDep {
            candidates: vec![ResourceId::new("package", package)],
            reason: "installed by package",
        }]
    }
}

// Placeholder until the system providers land (helper task in progress).
impl crate::resource::provider::Provider for Service {
    fn read(
        &self,
        _ctx: &crate::resource::provider::ProviderCtx<'_>,
        _res: &crate::model::Resource,
    ) -> Result<crate::resource::change::State, crate::resource::provider::ProviderError> {
        Err(crate::resource::provider::ProviderError::Unsupported {
            message: "service provider pending".into(),
        })
    }

    fn apply(
        &self,
        _ctx: &crate::resource::provider::ProviderCtx<'_>,
        _res: &crate::model::Resource,
    ) -> Result<crate::resource::provider::Applied, crate::resource::provider::ProviderError> {
        Err(crate::resource::provider::ProviderError::Unsupported {
            message: "service provider pending".into(),
        })
    }
}
