//! Platform rows: organizations, accounts, sessions, API token look-up, health.

use rusqlite::{params, OptionalExtension};
use serde_json::json;

use super::{
    append_audit, conflict_on_unique, found, role_col, ts, AuditRecord, By, Db, Org, StoreError,
    User,
};
use crate::audit::{org_chain, PLATFORM_CHAIN};
use crate::auth::tokens::SessionPolicy;
use crate::tenancy::{Actor, OrgRef, Principal, Role};

/// Sessions are touched at most this often (seconds), to keep reads from writing.
const TOUCH_EVERY: i64 = 60;
/// Sessions idle this long, or this old, are past every role's lifetime and are deleted.
const SWEEP_IDLE_S: i64 = 24 * 3600;
const SWEEP_ABSOLUTE_S: i64 = 7 * 24 * 3600;

/// What sign-in needs to know about an account.
#[derive(Debug, Clone)]
pub struct LoginRecord {
    pub user_id: i64,
    pub email: String,
    pub org_id: Option<i64>,
    pub role: Role,
    pub password_hash: String,
    /// The account or its organization is disabled.
    pub disabled: bool,
}

/// Platform-wide figures for the super admin.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PlatformHealth {
    pub orgs: i64,
    pub users: i64,
    pub active_sessions: i64,
    pub db_bytes: i64,
}

pub(super) const USER_COLS: &str =
    "id, email, name, role, disabled, must_change_password, created_at, last_sign_in_at, languages";

pub(super) fn user_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: r.get(0)?,
        email: r.get(1)?,
        name: r.get(2)?,
        role: role_col(r.get(3)?)?,
        disabled: r.get(4)?,
        must_change_password: r.get(5)?,
        created_at: ts(r.get(6)?),
        last_sign_in_at: r.get::<_, Option<i64>>(7)?.map(ts),
        languages: crate::calls::routing::split_languages(&r.get::<_, String>(8)?),
    })
}

const ORG_COLS: &str = "o.id, o.slug, o.name, o.disabled, o.created_at,
     (SELECT COUNT(*) FROM users u WHERE u.org_id = o.id)";

fn org_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Org> {
    Ok(Org {
        id: r.get(0)?,
        slug: r.get(1)?,
        name: r.get(2)?,
        disabled: r.get(3)?,
        created_at: ts(r.get(4)?),
        users: r.get(5)?,
    })
}

impl Db<'_> {
    /// Whether any super admin exists.
    pub fn super_admin_exists(&mut self) -> Result<bool, StoreError> {
        Ok(self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM users WHERE role = 'super_admin')",
            [],
            |r| r.get(0),
        )?)
    }

    /// Creates a super admin.
    pub fn create_super_admin(
        &mut self,
        by: &By,
        email: &str,
        name: &str,
        password_hash: &str,
    ) -> Result<User, StoreError> {
        let tx = self.tx()?;
        tx.execute(
            "INSERT INTO users (org_id, email, name, role, password_hash, created_at)
             VALUES (NULL, ?1, ?2, 'super_admin', ?3, ?4)",
            params![email, name, password_hash, by.now],
        )
        .map_err(|e| conflict_on_unique(e, "a user with this email already exists"))?;
        let id = tx.last_insert_rowid();
        append_audit(
            &tx,
            AuditRecord {
                chain: PLATFORM_CHAIN,
                org_id: None,
                by,
                action: "super_admin.create",
                target: Some(format!("user:{id}")),
                detail: json!({ "email": email }),
            },
        )?;
        let user = tx.query_row(
            &format!("SELECT {USER_COLS} FROM users WHERE id = ?1"),
            [id],
            user_row,
        )?;
        tx.commit()?;
        Ok(user)
    }

    /// Creates an organization with its first admin and default settings.
    pub fn create_org(
        &mut self,
        by: &By,
        slug: &str,
        name: &str,
        admin: &super::NewUser,
    ) -> Result<(Org, User), StoreError> {
        let tx = self.tx()?;
        tx.execute(
            "INSERT INTO orgs (slug, name, created_at) VALUES (?1, ?2, ?3)",
            params![slug, name, by.now],
        )
        .map_err(|e| conflict_on_unique(e, "an organization with this slug already exists"))?;
        let org_id = tx.last_insert_rowid();
        tx.execute(
            "INSERT INTO org_settings (org_id, updated_at) VALUES (?1, ?2)",
            params![org_id, by.now],
        )?;
        tx.execute(
            "INSERT INTO users (org_id, email, name, role, password_hash, must_change_password, created_at)
             VALUES (?1, ?2, ?3, 'org_admin', ?4, ?5, ?6)",
            params![
                org_id,
                admin.email,
                admin.name,
                admin.password_hash,
                admin.must_change_password,
                by.now
            ],
        )
        .map_err(|e| conflict_on_unique(e, "a user with this email already exists"))?;
        let admin_id = tx.last_insert_rowid();
        let detail = json!({ "slug": slug, "name": name, "admin_email": admin.email });
        append_audit(
            &tx,
            AuditRecord {
                chain: PLATFORM_CHAIN,
                org_id: None,
                by,
                action: "org.create",
                target: Some(format!("org:{slug}")),
                detail: detail.clone(),
            },
        )?;
        let chain = org_chain(org_id);
        append_audit(
            &tx,
            AuditRecord {
                chain: &chain,
                org_id: Some(org_id),
                by,
                action: "org.create",
                target: Some(format!("org:{slug}")),
                detail,
            },
        )?;
        append_audit(
            &tx,
            AuditRecord {
                chain: &chain,
                org_id: Some(org_id),
                by,
                action: "user.create",
                target: Some(format!("user:{admin_id}")),
                detail: json!({ "email": admin.email, "role": "org_admin" }),
            },
        )?;
        let org = tx.query_row(
            &format!("SELECT {ORG_COLS} FROM orgs o WHERE o.id = ?1"),
            [org_id],
            org_row,
        )?;
        let user = tx.query_row(
            &format!("SELECT {USER_COLS} FROM users WHERE id = ?1"),
            [admin_id],
            user_row,
        )?;
        tx.commit()?;
        Ok((org, user))
    }

    /// Every organization.
    pub fn list_orgs(&mut self) -> Result<Vec<Org>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT {ORG_COLS} FROM orgs o ORDER BY o.slug"))?;
        let rows = stmt.query_map([], org_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One organization by slug.
    pub fn org_by_slug(&mut self, slug: &str) -> Result<Org, StoreError> {
        found(self.conn.query_row(
            &format!("SELECT {ORG_COLS} FROM orgs o WHERE o.slug = ?1"),
            [slug],
            org_row,
        ))
    }

    /// Renames, disables or enables an organization. Disabling ends its users' sessions.
    pub fn update_org(
        &mut self,
        by: &By,
        slug: &str,
        name: Option<&str>,
        disabled: Option<bool>,
    ) -> Result<Org, StoreError> {
        let tx = self.tx()?;
        let org_id: i64 =
            found(tx.query_row("SELECT id FROM orgs WHERE slug = ?1", [slug], |r| r.get(0)))?;
        if let Some(name) = name {
            tx.execute(
                "UPDATE orgs SET name = ?1 WHERE id = ?2",
                params![name, org_id],
            )?;
        }
        if let Some(disabled) = disabled {
            tx.execute(
                "UPDATE orgs SET disabled = ?1 WHERE id = ?2",
                params![disabled, org_id],
            )?;
            if disabled {
                tx.execute(
                    "DELETE FROM sessions WHERE user_id IN (SELECT id FROM users WHERE org_id = ?1)",
                    [org_id],
                )?;
            }
        }
        let detail = json!({ "name": name, "disabled": disabled });
        for (chain, org) in [
            (PLATFORM_CHAIN.to_string(), None),
            (org_chain(org_id), Some(org_id)),
        ] {
            append_audit(
                &tx,
                AuditRecord {
                    chain: &chain,
                    org_id: org,
                    by,
                    action: "org.update",
                    target: Some(format!("org:{slug}")),
                    detail: detail.clone(),
                },
            )?;
        }
        let org = tx.query_row(
            &format!("SELECT {ORG_COLS} FROM orgs o WHERE o.id = ?1"),
            [org_id],
            org_row,
        )?;
        tx.commit()?;
        Ok(org)
    }

    /// Platform-wide counts.
    pub fn platform_health(
        &mut self,
        now: i64,
        policy: &SessionPolicy,
    ) -> Result<PlatformHealth, StoreError> {
        let (orgs, users): (i64, i64) = self.conn.query_row(
            "SELECT (SELECT COUNT(*) FROM orgs), (SELECT COUNT(*) FROM users)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        // A session counts as active while within the longest idle time-out of any role.
        let longest_idle = [
            policy.super_admin.idle,
            policy.org_admin.idle,
            policy.agent.idle,
        ]
        .into_iter()
        .max()
        .unwrap_or_default()
        .as_secs() as i64;
        let active_sessions: i64 = self.conn.query_row(
            "SELECT COUNT(*) FROM sessions WHERE last_seen_at > ?1",
            [now - longest_idle],
            |r| r.get(0),
        )?;
        let db_bytes: i64 = self.conn.query_row(
            "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
            [],
            |r| r.get(0),
        )?;
        Ok(PlatformHealth {
            orgs,
            users,
            active_sessions,
            db_bytes,
        })
    }

    /// The account behind an email, for sign-in.
    pub fn login_record(&mut self, email: &str) -> Result<Option<LoginRecord>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT u.id, u.email, u.org_id, u.role, u.password_hash,
                        u.disabled OR COALESCE(o.disabled, 0)
                 FROM users u LEFT JOIN orgs o ON o.id = u.org_id
                 WHERE u.email = ?1",
                [email.trim()],
                |r| {
                    Ok(LoginRecord {
                        user_id: r.get(0)?,
                        email: r.get(1)?,
                        org_id: r.get(2)?,
                        role: role_col(r.get(3)?)?,
                        password_hash: r.get(4)?,
                        disabled: r.get(5)?,
                    })
                },
            )
            .optional()?)
    }

    /// Starts a session for a successful sign-in and records it.
    pub fn record_sign_in(
        &mut self,
        account: &LoginRecord,
        session_digest: &[u8; 32],
        by: &By,
        address: &str,
    ) -> Result<(), StoreError> {
        let tx = self.tx()?;
        tx.execute(
            "INSERT INTO sessions (token_hash, user_id, created_at, last_seen_at) VALUES (?1, ?2, ?3, ?3)",
            params![&session_digest[..], account.user_id, by.now],
        )?;
        tx.execute(
            "UPDATE users SET last_sign_in_at = ?1 WHERE id = ?2",
            params![by.now, account.user_id],
        )?;
        // Sessions whose cookie never came back are swept here, past the longest lifetime.
        tx.execute(
            "DELETE FROM sessions WHERE last_seen_at < ?1 OR created_at < ?2",
            params![by.now - SWEEP_IDLE_S, by.now - SWEEP_ABSOLUTE_S],
        )?;
        let chain = account.org_id.map_or(PLATFORM_CHAIN.to_string(), org_chain);
        append_audit(
            &tx,
            AuditRecord {
                chain: &chain,
                org_id: account.org_id,
                by,
                action: "auth.sign_in",
                target: Some(format!("user:{}", account.user_id)),
                detail: json!({ "address": address }),
            },
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Records a failed sign-in on an existing account.
    pub fn record_failed_sign_in(
        &mut self,
        account: &LoginRecord,
        by: &By,
        address: &str,
    ) -> Result<(), StoreError> {
        let tx = self.tx()?;
        let chain = account.org_id.map_or(PLATFORM_CHAIN.to_string(), org_chain);
        append_audit(
            &tx,
            AuditRecord {
                chain: &chain,
                org_id: account.org_id,
                by,
                action: "auth.sign_in_failed",
                target: Some(format!("user:{}", account.user_id)),
                detail: json!({ "address": address, "account_disabled": account.disabled }),
            },
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The principal of a session token, if the session is live; expired sessions are removed.
    pub fn principal_for_session(
        &mut self,
        digest: &[u8; 32],
        now: i64,
        policy: &SessionPolicy,
    ) -> Result<Option<Principal>, StoreError> {
        type Row = (
            i64,
            i64,
            i64,
            String,
            String,
            String,
            bool,
            bool,
            Option<(i64, String, String, bool)>,
        );
        let row: Option<Row> = self
            .conn
            .query_row(
                "SELECT s.created_at, s.last_seen_at, u.id, u.email, u.name, u.role,
                        u.must_change_password, u.disabled, o.id, o.slug, o.name, o.disabled
                 FROM sessions s JOIN users u ON u.id = s.user_id
                 LEFT JOIN orgs o ON o.id = u.org_id
                 WHERE s.token_hash = ?1",
                [&digest[..]],
                |r| {
                    let org = match r.get::<_, Option<i64>>(8)? {
                        Some(id) => Some((id, r.get(9)?, r.get(10)?, r.get(11)?)),
                        None => None,
                    };
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                        r.get(7)?,
                        org,
                    ))
                },
            )
            .optional()?;
        let Some((created, last_seen, user_id, email, name, role, must_change, disabled, org)) =
            row
        else {
            return Ok(None);
        };
        let role = role_col(role)?;
        let life = policy.for_role(role);
        let expired = now - last_seen >= life.idle.as_secs() as i64
            || now - created >= life.absolute.as_secs() as i64;
        let org_disabled = org.as_ref().is_some_and(|o| o.3);
        if expired || disabled || org_disabled {
            self.conn
                .execute("DELETE FROM sessions WHERE token_hash = ?1", [&digest[..]])?;
            return Ok(None);
        }
        if now - last_seen >= TOUCH_EVERY {
            self.conn.execute(
                "UPDATE sessions SET last_seen_at = ?1 WHERE token_hash = ?2",
                params![now, &digest[..]],
            )?;
        }
        Ok(Some(Principal {
            actor: Actor::User {
                id: user_id,
                email,
                name,
                must_change_password: must_change,
                session: *digest,
            },
            role,
            org: org.map(|(id, slug, name, _)| OrgRef { id, slug, name }),
        }))
    }

    /// The principal of an API token, if it is live.
    pub fn principal_for_api_token(
        &mut self,
        digest: &[u8; 32],
        now: i64,
    ) -> Result<Option<Principal>, StoreError> {
        type Row = (
            i64,
            String,
            String,
            Option<i64>,
            Option<i64>,
            i64,
            String,
            String,
            bool,
        );
        let row: Option<Row> = self
            .conn
            .query_row(
                "SELECT t.id, t.name, t.role, t.expires_at, t.last_used_at,
                        o.id, o.slug, o.name, o.disabled OR t.revoked_at IS NOT NULL
                 FROM api_tokens t JOIN orgs o ON o.id = t.org_id
                 WHERE t.token_hash = ?1",
                [&digest[..]],
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                        r.get(7)?,
                        r.get(8)?,
                    ))
                },
            )
            .optional()?;
        let Some((id, name, role, expires, last_used, org_id, slug, org_name, dead)) = row else {
            return Ok(None);
        };
        if dead || expires.is_some_and(|e| e <= now) {
            return Ok(None);
        }
        if last_used.is_none_or(|l| now - l >= TOUCH_EVERY) {
            self.conn.execute(
                "UPDATE api_tokens SET last_used_at = ?1 WHERE id = ?2",
                params![now, id],
            )?;
        }
        Ok(Some(Principal {
            actor: Actor::ApiToken { id, name },
            role: role_col(role)?,
            org: Some(OrgRef {
                id: org_id,
                slug,
                name: org_name,
            }),
        }))
    }

    /// Ends one session (logout).
    pub fn end_session(&mut self, digest: &[u8; 32]) -> Result<(), StoreError> {
        self.conn
            .execute("DELETE FROM sessions WHERE token_hash = ?1", [&digest[..]])?;
        Ok(())
    }

    /// The stored password hash of a user.
    pub fn password_hash(&mut self, user_id: i64) -> Result<String, StoreError> {
        found(self.conn.query_row(
            "SELECT password_hash FROM users WHERE id = ?1",
            [user_id],
            |r| r.get(0),
        ))
    }

    /// Sets a user's new password and ends every session of the user but `keep`.
    pub fn change_password(
        &mut self,
        by: &By,
        user_id: i64,
        new_hash: &str,
        keep: Option<&[u8; 32]>,
    ) -> Result<(), StoreError> {
        self.set_password(by, user_id, new_hash, keep, false)
    }

    fn set_password(
        &mut self,
        by: &By,
        user_id: i64,
        new_hash: &str,
        keep: Option<&[u8; 32]>,
        must_change: bool,
    ) -> Result<(), StoreError> {
        let tx = self.tx()?;
        let org_id: Option<i64> = found(tx.query_row(
            "SELECT org_id FROM users WHERE id = ?1",
            [user_id],
            |r| r.get(0),
        ))?;
        tx.execute(
            "UPDATE users SET password_hash = ?1, must_change_password = ?2 WHERE id = ?3",
            params![new_hash, must_change, user_id],
        )?;
        let ended = tx.execute(
            "DELETE FROM sessions WHERE user_id = ?1 AND token_hash IS NOT ?2",
            params![user_id, keep.map(|k| k.to_vec())],
        )?;
        let chain = org_id.map_or(PLATFORM_CHAIN.to_string(), org_chain);
        append_audit(
            &tx,
            AuditRecord {
                chain: &chain,
                org_id,
                by,
                action: if keep.is_some() {
                    "auth.password_change"
                } else {
                    "auth.password_reset"
                },
                target: Some(format!("user:{user_id}")),
                detail: json!({ "other_sessions_ended": ended, "must_change_password": must_change }),
            },
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Sets a password by operator command (`tenantd` CLI), ending every session of the user.
    pub fn reset_password(
        &mut self,
        by: &By,
        email: &str,
        new_hash: &str,
        must_change: bool,
    ) -> Result<User, StoreError> {
        let user_id: i64 = found(self.conn.query_row(
            "SELECT id FROM users WHERE email = ?1",
            [email],
            |r| r.get(0),
        ))?;
        self.set_password(by, user_id, new_hash, None, must_change)?;
        found(self.conn.query_row(
            &format!("SELECT {USER_COLS} FROM users WHERE id = ?1"),
            [user_id],
            user_row,
        ))
    }
}
