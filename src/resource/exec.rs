//! `exec`: a command, run when its guards say so or when refreshed.

use crate::diag::Diagnostic;
use crate::model::{Resource, ResourceId};
use crate::resource::{
    AttrType, Candidate, ImplicitDep, NameRule, ResourceType, TypeSchema, attr, required,
};

pub(crate) struct Exec;

static SCHEMA: TypeSchema = TypeSchema {
    doc: "a command; NAME is a label",
    name_rule: NameRule::Label,
    attrs: &[
        required(
            "command",
            AttrType::Command,
            "what runs: a list of arguments, or a string split into arguments (no shell)",
        ),
        attr("cwd", AttrType::AbsPath, "working directory"),
        attr("env", AttrType::StringMap, "environment variables"),
        attr("user", AttrType::String, "run as this user"),
        attr("creates", AttrType::AbsPath, "skip when this path exists"),
        attr(
            "unless",
            AttrType::Command,
            "skip when this command succeeds",
        ),
        attr(
            "onlyif",
            AttrType::Command,
            "run only when this command succeeds",
        ),
        attr(
            "refresh_only",
            AttrType::Bool,
            "run only when notified by a change",
        ),
        attr(
            "timeout",
            AttrType::Duration,
            "kill the command after this long (default 300s)",
        ),
    ],
    exclusive: &[],
};

impl ResourceType for Exec {
    fn provider(&self) -> &dyn crate::resource::provider::Provider {
        self
    }

    fn kind(&self) -> &'static str {
        "exec"
    }

    fn schema(&self) -> &TypeSchema {
        &SCHEMA
    }

    fn validate(&self, res: &Candidate<'_>, acc: &mut Vec<Diagnostic>) {
        if let Some(timeout) = res.attrs.get("timeout").and_then(|a| a.value.as_int())
            && timeout == 0
        {
            acc.push(Diagnostic::error(
                "schema::invalid_value",
                res.span_of("timeout"),
                "`timeout` must be positive",
            ));
        }
    }

    fn implicit_deps(&self, res: &Resource) -> Vec<ImplicitDep> {
        let mut deps = Vec::new();
        if let Some(user) = res.attr_str("user") {
            deps.push(ImplicitDep {
                candidates: vec![ResourceId::new("user", user)],
                reason: "runs as user",
            });
        }
        if let Some(cwd) = res.attr_str("cwd") {
            deps.push(ImplicitDep {
                candidates: vec![ResourceId::new("directory", cwd)],
                reason: "runs in directory",
            });
        }
        deps
    }
}

// Placeholder until the exec provider lands.
impl crate::resource::provider::Provider for Exec {
    fn read(
        &self,
        _ctx: &crate::resource::provider::ProviderCtx<'_>,
        _res: &crate::model::Resource,
    ) -> Result<crate::resource::change::State, crate::resource::provider::ProviderError> {
        Err(crate::resource::provider::ProviderError::Unsupported {
            message: "exec provider pending".into(),
        })
    }

    fn apply(
        &self,
        _ctx: &crate::resource::provider::ProviderCtx<'_>,
        _res: &crate::model::Resource,
    ) -> Result<crate::resource::provider::Applied, crate::resource::provider::ProviderError> {
        Err(crate::resource::provider::ProviderError::Unsupported {
            message: "exec provider pending".into(),
        })
    }
}
