//! Roles, principals, and the one place where access is decided.
//!
//! Every API route declares an [`Access`] rule in the route table (`api::route_table`); the
//! router runs [`authorize`] for it before the handler, and the handler receives an
//! [`Authorized`] value. Organization-scoped routes get an [`OrgScope`], the only way the store
//! accepts a tenant: it is built here from the authenticated principal, never from a request
//! body, path or header, so a handler cannot reach another organization's rows by mistake.

use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// What a principal may do. Super admins belong to the platform; the others to one organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Platform operator: organizations and platform health, nothing inside an organization.
    SuperAdmin,
    /// Manages one organization: users, sites, settings, API tokens, audit log.
    OrgAdmin,
    /// Agent or technician: answers calls for one organization.
    Agent,
    /// A customer at a kiosk, for one call session (arrives with calls).
    Customer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::SuperAdmin => "super_admin",
            Role::OrgAdmin => "org_admin",
            Role::Agent => "agent",
            Role::Customer => "customer",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "super_admin" => Some(Role::SuperAdmin),
            "org_admin" => Some(Role::OrgAdmin),
            "agent" => Some(Role::Agent),
            "customer" => Some(Role::Customer),
            _ => None,
        }
    }

    /// Roles an organization admin may give to a user or an API token of the organization.
    pub fn is_org_staff(self) -> bool {
        matches!(self, Role::OrgAdmin | Role::Agent)
    }
}

/// The organization a principal belongs to, as the store knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrgRef {
    pub id: i64,
    pub slug: String,
    pub name: String,
}

/// Who is calling: a signed-in user (session cookie) or an API token.
#[derive(Debug, Clone)]
pub enum Actor {
    User {
        id: i64,
        email: String,
        name: String,
        must_change_password: bool,
        /// The hash of the session token this request came with.
        session: [u8; 32],
    },
    ApiToken {
        id: i64,
        name: String,
    },
}

/// An authenticated caller with its role and organization.
#[derive(Debug, Clone)]
pub struct Principal {
    pub actor: Actor,
    pub role: Role,
    pub org: Option<OrgRef>,
}

impl Principal {
    /// How the audit log names this principal.
    pub fn label(&self) -> String {
        match &self.actor {
            Actor::User { email, .. } => email.clone(),
            Actor::ApiToken { id, name } => format!("api-token:{id} ({name})"),
        }
    }

    pub fn user_id(&self) -> Option<i64> {
        match self.actor {
            Actor::User { id, .. } => Some(id),
            Actor::ApiToken { .. } => None,
        }
    }
}

/// Proof that the caller may act inside one organization. Only [`authorize`] (and the
/// explicitly named [`OrgScope::trusted_internal`] for the command line) can make one.
#[derive(Debug, Clone)]
pub struct OrgScope {
    org: OrgRef,
}

impl OrgScope {
    pub fn org_id(&self) -> i64 {
        self.org.id
    }

    pub fn org(&self) -> &OrgRef {
        &self.org
    }

    /// For the operator's command line and internal jobs, which act on an organization
    /// without a request: never call this from a request handler.
    pub fn trusted_internal(org: OrgRef) -> Self {
        OrgScope { org }
    }
}

/// The access rule of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, signed in or not.
    Public,
    /// Any principal, even one that must still change its password.
    Authenticated,
    /// A signed-in user with a session (not an API token): logout, password change.
    SessionUser,
    /// The platform's super admins.
    SuperAdmin,
    /// Members of the organization named by the `{org}` path segment with one of these roles.
    Org(&'static [Role]),
    /// As [`Access::Org`], and super admins too (they see every organization's record itself).
    OrgOrSuperAdmin(&'static [Role]),
    /// As [`Access::Org`], for signed-in users only (the session cookie), never an API token:
    /// the agents' call WebSocket.
    OrgSession(&'static [Role]),
}

/// What a handler learns from authorization.
#[derive(Debug, Clone)]
pub struct Authorized {
    pub principal: Option<Principal>,
    pub scope: Option<OrgScope>,
}

/// Decides whether `principal` may use a route with rule `access`, given the `{org}` path
/// segment (`org_in_path`) and, for it, the organization the store found under that slug.
///
/// Denials say as little as possible: a caller who is not a member of the organization in the
/// path gets [`ApiError::NotFound`], exactly like a missing organization.
pub fn authorize(
    access: Access,
    principal: Option<Principal>,
    org_in_path: Option<&str>,
) -> Result<Authorized, ApiError> {
    if access == Access::Public {
        return Ok(Authorized {
            principal,
            scope: None,
        });
    }
    let principal = principal.ok_or(ApiError::Unauthenticated)?;
    if access == Access::Authenticated {
        return Ok(Authorized {
            principal: Some(principal),
            scope: None,
        });
    }
    if let Actor::User {
        must_change_password: true,
        ..
    } = principal.actor
    {
        if access != Access::SessionUser {
            return Err(ApiError::PasswordChangeRequired);
        }
    }
    match access {
        Access::Public | Access::Authenticated => unreachable_rule(),
        Access::SessionUser => match principal.actor {
            Actor::User { .. } => Ok(Authorized {
                principal: Some(principal),
                scope: None,
            }),
            Actor::ApiToken { .. } => Err(ApiError::Forbidden),
        },
        Access::SuperAdmin => {
            if principal.role == Role::SuperAdmin {
                Ok(Authorized {
                    principal: Some(principal),
                    scope: None,
                })
            } else if org_in_path
                .is_some_and(|slug| principal.org.as_ref().is_none_or(|org| org.slug != slug))
            {
                // Even platform routes about an organization do not confirm that another
                // organization exists.
                Err(ApiError::NotFound)
            } else {
                Err(ApiError::Forbidden)
            }
        }
        Access::Org(roles) | Access::OrgOrSuperAdmin(roles) | Access::OrgSession(roles) => {
            let slug = org_in_path.ok_or_else(|| ApiError::internal("org route without {org}"))?;
            if principal.role == Role::SuperAdmin {
                return if matches!(access, Access::OrgOrSuperAdmin(_)) {
                    Ok(Authorized {
                        principal: Some(principal),
                        scope: None,
                    })
                } else {
                    Err(ApiError::Forbidden)
                };
            }
            let org = match &principal.org {
                Some(org) if org.slug == slug => org.clone(),
                _ => return Err(ApiError::NotFound),
            };
            if !roles.contains(&principal.role) {
                return Err(ApiError::Forbidden);
            }
            if matches!(access, Access::OrgSession(_))
                && matches!(principal.actor, Actor::ApiToken { .. })
            {
                return Err(ApiError::Forbidden);
            }
            Ok(Authorized {
                principal: Some(principal),
                scope: Some(OrgScope { org }),
            })
        }
    }
}

fn unreachable_rule() -> Result<Authorized, ApiError> {
    Err(ApiError::internal("access rule handled earlier"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(role: Role, org: Option<&str>, must_change: bool) -> Principal {
        Principal {
            actor: Actor::User {
                id: 1,
                email: "a@example.test".into(),
                name: "A".into(),
                must_change_password: must_change,
                session: [0; 32],
            },
            role,
            org: org.map(|slug| OrgRef {
                id: 7,
                slug: slug.into(),
                name: slug.into(),
            }),
        }
    }

    const ADMINS: &[Role] = &[Role::OrgAdmin];

    #[test]
    fn anonymous_gets_only_public() {
        assert!(authorize(Access::Public, None, None).is_ok());
        for access in [
            Access::Authenticated,
            Access::SessionUser,
            Access::SuperAdmin,
            Access::Org(ADMINS),
        ] {
            assert!(matches!(
                authorize(access, None, Some("a")),
                Err(ApiError::Unauthenticated)
            ));
        }
    }

    #[test]
    fn other_org_is_not_found_and_wrong_role_is_forbidden() {
        let admin = user(Role::OrgAdmin, Some("a"), false);
        let agent = user(Role::Agent, Some("a"), false);
        let scope = authorize(Access::Org(ADMINS), Some(admin.clone()), Some("a"))
            .unwrap()
            .scope
            .unwrap();
        assert_eq!(scope.org_id(), 7);
        assert!(matches!(
            authorize(Access::Org(ADMINS), Some(admin), Some("b")),
            Err(ApiError::NotFound)
        ));
        assert!(matches!(
            authorize(Access::Org(ADMINS), Some(agent), Some("a")),
            Err(ApiError::Forbidden)
        ));
    }

    #[test]
    fn super_admin_stays_out_of_organizations() {
        let root = user(Role::SuperAdmin, None, false);
        assert!(matches!(
            authorize(Access::Org(ADMINS), Some(root.clone()), Some("a")),
            Err(ApiError::Forbidden)
        ));
        let seen = authorize(Access::OrgOrSuperAdmin(ADMINS), Some(root), Some("a")).unwrap();
        assert!(seen.scope.is_none());
    }

    #[test]
    fn pending_password_change_blocks_all_but_session_routes() {
        let admin = user(Role::OrgAdmin, Some("a"), true);
        assert!(authorize(Access::Authenticated, Some(admin.clone()), None).is_ok());
        assert!(authorize(Access::SessionUser, Some(admin.clone()), None).is_ok());
        assert!(matches!(
            authorize(Access::Org(ADMINS), Some(admin), Some("a")),
            Err(ApiError::PasswordChangeRequired)
        ));
    }

    #[test]
    fn session_org_routes_refuse_api_tokens_and_other_orgs() {
        const STAFF: &[Role] = &[Role::OrgAdmin, Role::Agent];
        let agent = user(Role::Agent, Some("a"), false);
        assert!(authorize(Access::OrgSession(STAFF), Some(agent.clone()), Some("a")).is_ok());
        assert!(matches!(
            authorize(Access::OrgSession(STAFF), Some(agent), Some("b")),
            Err(ApiError::NotFound)
        ));
        let token = Principal {
            actor: Actor::ApiToken {
                id: 3,
                name: "ci".into(),
            },
            role: Role::Agent,
            org: Some(OrgRef {
                id: 7,
                slug: "a".into(),
                name: "a".into(),
            }),
        };
        assert!(matches!(
            authorize(Access::OrgSession(STAFF), Some(token), Some("a")),
            Err(ApiError::Forbidden)
        ));
    }

    #[test]
    fn api_tokens_cannot_use_session_routes() {
        let token = Principal {
            actor: Actor::ApiToken {
                id: 3,
                name: "ci".into(),
            },
            role: Role::OrgAdmin,
            org: None,
        };
        assert!(matches!(
            authorize(Access::SessionUser, Some(token), None),
            Err(ApiError::Forbidden)
        ));
    }
}
