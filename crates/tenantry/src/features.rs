//! Feature flags per organization: a catalog in code with a default per plan, and the
//! operator's overrides of one organization.
//!
//! The overrides live on the organization's row, which every authorization read already
//! joins for the plan and the suspension status: a request's [`Features`] come with its
//! caller at no extra cost, fresh for sessions and as fresh as the API key cache for keys
//! (which every instance drops when the operator changes a flag).

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

use crate::rbac::Plan;
use crate::vocab::{text_enum, JsonText};

text_enum! {
    /// A switch of the product, on or off per organization.
    pub enum Flag {
        Scim => "scim": "Provisioning from an identity provider over SCIM 2.0 (`/scim/v2`).",
        AuditExport => "audit_export": "Exporting the audit log as CSV or JSON.",
        Broadcast => "broadcast": "Broadcast messages to every member of the organization.",
    }
}

impl Flag {
    /// The plans on which the flag is on unless the operator says otherwise.
    pub const fn plans(self) -> &'static [Plan] {
        match self {
            Flag::Scim => &[Plan::Pro, Plan::Enterprise],
            Flag::AuditExport | Flag::Broadcast => &[Plan::Free, Plan::Pro, Plan::Enterprise],
        }
    }
}

/// The operator's overrides of one organization, by flag name. A name the catalog no
/// longer knows is kept and ignored.
pub type Overrides = JsonText<BTreeMap<String, bool>>;

/// The flags of one organization: its plan's defaults and its overrides.
#[derive(Clone, Debug)]
pub struct Features {
    plan: Plan,
    overrides: BTreeMap<String, bool>,
}

/// Where a flag's value comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FlagSource {
    /// The plan's default.
    Plan,
    /// The operator's override for this organization.
    Override,
}

/// One flag as an organization sees it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct FlagState {
    /// Its name.
    #[schema(value_type = String)]
    pub flag: Flag,
    /// What it switches.
    pub description: &'static str,
    /// Whether it is on for this organization.
    pub enabled: bool,
    /// `plan` or `override`.
    pub source: FlagSource,
    /// The plans on which it is on by default.
    #[schema(value_type = Vec<String>)]
    pub plans: &'static [Plan],
}

impl Features {
    /// The flags of an organization on `plan` with `overrides`.
    pub fn new(plan: Plan, overrides: Overrides) -> Self {
        Self {
            plan,
            overrides: overrides.0,
        }
    }

    /// Whether `flag` is on.
    pub fn enabled(&self, flag: Flag) -> bool {
        self.state(flag).enabled
    }

    /// `flag` with its value and where the value comes from.
    pub fn state(&self, flag: Flag) -> FlagState {
        let (enabled, source) = match self.overrides.get(flag.as_str()) {
            Some(on) => (*on, FlagSource::Override),
            None => (flag.plans().contains(&self.plan), FlagSource::Plan),
        };
        FlagState {
            flag,
            description: flag.description(),
            enabled,
            source,
            plans: flag.plans(),
        }
    }

    /// Every flag of the catalog, in its order.
    pub fn all(&self) -> Vec<FlagState> {
        Flag::ALL.iter().map(|f| self.state(*f)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_give_defaults_and_overrides_win() {
        let free = Features::new(Plan::Free, JsonText(BTreeMap::new()));
        assert!(!free.enabled(Flag::Scim));
        assert!(free.enabled(Flag::AuditExport));
        let pro = Features::new(Plan::Pro, JsonText(BTreeMap::new()));
        assert!(pro.enabled(Flag::Scim));
        let overridden = Features::new(
            Plan::Free,
            JsonText(BTreeMap::from([
                ("scim".to_owned(), true),
                ("audit_export".to_owned(), false),
                ("retired".to_owned(), true),
            ])),
        );
        assert!(overridden.enabled(Flag::Scim));
        assert_eq!(overridden.state(Flag::Scim).source, FlagSource::Override);
        assert!(!overridden.enabled(Flag::AuditExport));
        assert_eq!(overridden.state(Flag::Broadcast).source, FlagSource::Plan);
        assert_eq!(overridden.all().len(), Flag::ALL.len());
    }
}
