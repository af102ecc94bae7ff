//! Rows an organization owns. Every method takes an [`OrgScope`] and filters by it.

use rusqlite::{params, OptionalExtension, Transaction};
use serde::Deserialize;
use serde_json::json;

use super::platform::{user_row, USER_COLS};
use super::{
    append_audit, conflict_on_unique, found, role_col, ts, ApiTokenInfo, AuditRecord, By, Db,
    RecordingPolicy, Settings, Site, StoreError, User,
};
use crate::audit::{self, org_chain, AuditEntry, ChainReport};
use crate::sites::SiteSpec;
use crate::tenancy::{OrgScope, Role};

/// A user to create.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: String,
    pub name: String,
    pub role: Role,
    pub password_hash: String,
    pub must_change_password: bool,
}

/// Changes to a user; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    pub name: Option<String>,
    pub role: Option<Role>,
    pub disabled: Option<bool>,
    /// The languages the user takes calls in (BCP 47, checked by the caller); empty: any.
    pub languages: Option<Vec<String>>,
}

/// An organization's settings as an admin sets them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsInput {
    pub recording: RecordingPolicy,
    pub retention_days: u32,
    pub technicians_may_review_recordings: bool,
    /// How long a call may wait for an agent, in seconds (checked by the caller); `None`
    /// keeps the current value.
    #[serde(default)]
    pub queue_timeout_s: Option<u32>,
}

/// Appends to the organization's audit chain inside the caller's transaction.
pub(super) fn audit_org(
    tx: &Transaction<'_>,
    scope: &OrgScope,
    by: &By,
    action: &str,
    target: Option<String>,
    detail: serde_json::Value,
) -> Result<(), StoreError> {
    audit_in_org(tx, scope.org_id(), by, action, target, detail)
}

/// Appends to organization `org_id`'s audit chain, for actions the platform or a device takes
/// without a signed-in principal (and so without an [`OrgScope`]).
pub(super) fn audit_in_org(
    tx: &Transaction<'_>,
    org_id: i64,
    by: &By,
    action: &str,
    target: Option<String>,
    detail: serde_json::Value,
) -> Result<(), StoreError> {
    append_audit(
        tx,
        AuditRecord {
            chain: &org_chain(org_id),
            org_id: Some(org_id),
            by,
            action,
            target,
            detail,
        },
    )
}

const SITE_COLS: &str = "id, name, timezone, business_hours, holidays, created_at, updated_at";

fn json_col<T: serde::de::DeserializeOwned>(i: usize, text: String) -> rusqlite::Result<T> {
    serde_json::from_str(&text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into())
    })
}

fn site_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Site> {
    Ok(Site {
        id: r.get(0)?,
        name: r.get(1)?,
        timezone: r.get(2)?,
        business_hours: json_col(3, r.get(3)?)?,
        holidays: json_col(4, r.get(4)?)?,
        created_at: ts(r.get(5)?),
        updated_at: ts(r.get(6)?),
    })
}

const TOKEN_COLS: &str =
    "id, name, role, prefix, created_by, created_at, expires_at, last_used_at, revoked_at";

fn token_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ApiTokenInfo> {
    Ok(ApiTokenInfo {
        id: r.get(0)?,
        name: r.get(1)?,
        role: role_col(r.get(2)?)?,
        prefix: r.get(3)?,
        created_by: r.get(4)?,
        created_at: ts(r.get(5)?),
        expires_at: r.get::<_, Option<i64>>(6)?.map(ts),
        last_used_at: r.get::<_, Option<i64>>(7)?.map(ts),
        revoked_at: r.get::<_, Option<i64>>(8)?.map(ts),
    })
}

fn audit_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditEntry> {
    let at_unix: i64 = r.get(2)?;
    let detail_text: String = r.get(6)?;
    Ok(AuditEntry {
        chain: r.get(0)?,
        seq: r.get(1)?,
        at_unix,
        at: ts(at_unix).to_string(),
        actor: r.get(3)?,
        action: r.get(4)?,
        target: r.get(5)?,
        detail: serde_json::from_str(&detail_text).unwrap_or(serde_json::Value::Null),
        detail_text,
        prev_hash: r.get(7)?,
        hash: r.get(8)?,
    })
}

const AUDIT_COLS: &str = "chain, seq, at, actor, action, target, detail, prev_hash, hash";

/// A site of organization `org_id`, for work done for a device of it (no principal).
pub(super) fn site_in_org(
    conn: &rusqlite::Connection,
    org_id: i64,
    id: i64,
) -> Result<Option<Site>, StoreError> {
    Ok(conn
        .query_row(
            &format!("SELECT {SITE_COLS} FROM sites WHERE id = ?1 AND org_id = ?2"),
            params![id, org_id],
            site_row,
        )
        .optional()?)
}

fn get_user(tx: &rusqlite::Connection, scope: &OrgScope, id: i64) -> Result<User, StoreError> {
    found(tx.query_row(
        &format!("SELECT {USER_COLS} FROM users WHERE id = ?1 AND org_id = ?2"),
        params![id, scope.org_id()],
        user_row,
    ))
}

impl Db<'_> {
    /// The organization's users, by email.
    pub fn list_users(&mut self, scope: &OrgScope) -> Result<Vec<User>, StoreError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {USER_COLS} FROM users WHERE org_id = ?1 ORDER BY email"
        ))?;
        let rows = stmt.query_map([scope.org_id()], user_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One user of the organization.
    pub fn get_user(&mut self, scope: &OrgScope, id: i64) -> Result<User, StoreError> {
        get_user(self.conn, scope, id)
    }

    /// Creates a user in the organization.
    pub fn create_user(
        &mut self,
        scope: &OrgScope,
        by: &By,
        new: &NewUser,
    ) -> Result<User, StoreError> {
        if !new.role.is_org_staff() {
            return Err(StoreError::Conflict(format!(
                "role {} cannot belong to an organization",
                new.role.as_str()
            )));
        }
        let tx = self.tx()?;
        tx.execute(
            "INSERT INTO users (org_id, email, name, role, password_hash, must_change_password, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                scope.org_id(),
                new.email,
                new.name,
                new.role.as_str(),
                new.password_hash,
                new.must_change_password,
                by.now
            ],
        )
        .map_err(|e| conflict_on_unique(e, "a user with this email already exists"))?;
        let id = tx.last_insert_rowid();
        audit_org(
            &tx,
            scope,
            by,
            "user.create",
            Some(format!("user:{id}")),
            json!({ "email": new.email, "role": new.role }),
        )?;
        let user = get_user(&tx, scope, id)?;
        tx.commit()?;
        Ok(user)
    }

    /// Renames, changes the role of, disables or enables a user. Disabling ends the user's
    /// sessions. The organization always keeps at least one enabled admin.
    pub fn update_user(
        &mut self,
        scope: &OrgScope,
        by: &By,
        id: i64,
        patch: &UserPatch,
    ) -> Result<User, StoreError> {
        let tx = self.tx()?;
        let before = get_user(&tx, scope, id)?;
        if let Some(name) = &patch.name {
            tx.execute(
                "UPDATE users SET name = ?1 WHERE id = ?2",
                params![name, id],
            )?;
        }
        if let Some(role) = patch.role {
            if !role.is_org_staff() {
                return Err(StoreError::Conflict(format!(
                    "role {} cannot belong to an organization",
                    role.as_str()
                )));
            }
            tx.execute(
                "UPDATE users SET role = ?1 WHERE id = ?2",
                params![role.as_str(), id],
            )?;
        }
        if let Some(languages) = &patch.languages {
            tx.execute(
                "UPDATE users SET languages = ?1 WHERE id = ?2",
                params![languages.join(","), id],
            )?;
        }
        if let Some(disabled) = patch.disabled {
            tx.execute(
                "UPDATE users SET disabled = ?1 WHERE id = ?2",
                params![disabled, id],
            )?;
            if disabled {
                tx.execute("DELETE FROM sessions WHERE user_id = ?1", [id])?;
            }
        }
        let admins: i64 = tx.query_row(
            "SELECT COUNT(*) FROM users WHERE org_id = ?1 AND role = 'org_admin' AND disabled = 0",
            [scope.org_id()],
            |r| r.get(0),
        )?;
        if admins == 0 {
            return Err(StoreError::Conflict(
                "the organization must keep at least one enabled admin".into(),
            ));
        }
        let after = get_user(&tx, scope, id)?;
        let action = match (patch.disabled, patch.role) {
            (Some(true), _) if !before.disabled => "user.disable",
            (Some(false), _) if before.disabled => "user.enable",
            (_, Some(role)) if role != before.role => "user.role_change",
            _ => "user.update",
        };
        audit_org(
            &tx,
            scope,
            by,
            action,
            Some(format!("user:{id}")),
            json!({
                "email": after.email,
                "name": patch.name,
                "role": { "from": before.role, "to": after.role },
                "disabled": { "from": before.disabled, "to": after.disabled },
                "languages": { "from": before.languages, "to": after.languages },
            }),
        )?;
        tx.commit()?;
        Ok(after)
    }

    /// The organization's sites, by name.
    pub fn list_sites(&mut self, scope: &OrgScope) -> Result<Vec<Site>, StoreError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {SITE_COLS} FROM sites WHERE org_id = ?1 ORDER BY name"
        ))?;
        let rows = stmt.query_map([scope.org_id()], site_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One site of the organization.
    pub fn get_site(&mut self, scope: &OrgScope, id: i64) -> Result<Site, StoreError> {
        found(self.conn.query_row(
            &format!("SELECT {SITE_COLS} FROM sites WHERE id = ?1 AND org_id = ?2"),
            params![id, scope.org_id()],
            site_row,
        ))
    }

    /// Creates a site, or with `id` replaces one, from a validated spec.
    pub fn save_site(
        &mut self,
        scope: &OrgScope,
        by: &By,
        id: Option<i64>,
        spec: &SiteSpec,
    ) -> Result<Site, StoreError> {
        let hours = serde_json::to_string(&spec.business_hours)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let holidays = serde_json::to_string(&spec.holidays)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let tx = self.tx()?;
        let conflict = |e| conflict_on_unique(e, "a site with this name already exists");
        let (id, action) = match id {
            None => {
                tx.execute(
                    "INSERT INTO sites (org_id, name, timezone, business_hours, holidays, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                    params![scope.org_id(), spec.name, spec.timezone, hours, holidays, by.now],
                )
                .map_err(conflict)?;
                (tx.last_insert_rowid(), "site.create")
            }
            Some(id) => {
                let changed = tx
                    .execute(
                        "UPDATE sites SET name = ?1, timezone = ?2, business_hours = ?3, holidays = ?4,
                                          updated_at = ?5
                         WHERE id = ?6 AND org_id = ?7",
                        params![spec.name, spec.timezone, hours, holidays, by.now, id, scope.org_id()],
                    )
                    .map_err(conflict)?;
                if changed == 0 {
                    return Err(StoreError::NotFound);
                }
                (id, "site.update")
            }
        };
        audit_org(
            &tx,
            scope,
            by,
            action,
            Some(format!("site:{id}")),
            json!({ "name": spec.name, "timezone": spec.timezone,
                    "business_hours": spec.business_hours, "holidays": spec.holidays }),
        )?;
        let site = found(tx.query_row(
            &format!("SELECT {SITE_COLS} FROM sites WHERE id = ?1 AND org_id = ?2"),
            params![id, scope.org_id()],
            site_row,
        ))?;
        tx.commit()?;
        Ok(site)
    }

    /// Deletes a site.
    pub fn delete_site(&mut self, scope: &OrgScope, by: &By, id: i64) -> Result<(), StoreError> {
        let tx = self.tx()?;
        let name: String = found(tx.query_row(
            "SELECT name FROM sites WHERE id = ?1 AND org_id = ?2",
            params![id, scope.org_id()],
            |r| r.get(0),
        ))?;
        // A kiosk keeps its site's hours in its config: a site with kiosks stays until they are
        // revoked (revoked ones lose their site).
        let kiosks: i64 = tx.query_row(
            "SELECT COUNT(*) FROM devices WHERE site_id = ?1 AND revoked_at IS NULL",
            [id],
            |r| r.get(0),
        )?;
        if kiosks > 0 {
            return Err(StoreError::Conflict(format!(
                "the site has {kiosks} kiosk{} not revoked; revoke {} first",
                if kiosks == 1 { "" } else { "s" },
                if kiosks == 1 { "it" } else { "them" }
            )));
        }
        tx.execute(
            "DELETE FROM sites WHERE id = ?1 AND org_id = ?2",
            params![id, scope.org_id()],
        )?;
        audit_org(
            &tx,
            scope,
            by,
            "site.delete",
            Some(format!("site:{id}")),
            json!({ "name": name }),
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The organization's settings.
    pub fn get_settings(&mut self, scope: &OrgScope) -> Result<Settings, StoreError> {
        let (recording, retention_days, review, updated_at, queue_timeout_s): (
            String,
            u32,
            bool,
            i64,
            u32,
        ) = found(self.conn.query_row(
            "SELECT recording, retention_days, technicians_may_review_recordings, updated_at,
                    queue_timeout_s
             FROM org_settings WHERE org_id = ?1",
            [scope.org_id()],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        ))?;
        Ok(Settings {
            recording: RecordingPolicy::parse(&recording)?,
            retention_days,
            technicians_may_review_recordings: review,
            queue_timeout_s,
            updated_at: ts(updated_at),
        })
    }

    /// Replaces the organization's settings (validated by the caller).
    pub fn put_settings(
        &mut self,
        scope: &OrgScope,
        by: &By,
        input: &SettingsInput,
    ) -> Result<Settings, StoreError> {
        let before = self.get_settings(scope)?;
        let queue_timeout_s = input.queue_timeout_s.unwrap_or(before.queue_timeout_s);
        let tx = self.tx()?;
        tx.execute(
            "UPDATE org_settings SET recording = ?1, retention_days = ?2,
                    technicians_may_review_recordings = ?3, updated_at = ?4, queue_timeout_s = ?5
             WHERE org_id = ?6",
            params![
                input.recording.as_str(),
                input.retention_days,
                input.technicians_may_review_recordings,
                by.now,
                queue_timeout_s,
                scope.org_id()
            ],
        )?;
        audit_org(
            &tx,
            scope,
            by,
            "settings.update",
            None,
            json!({
                "from": { "recording": before.recording, "retention_days": before.retention_days,
                          "technicians_may_review_recordings": before.technicians_may_review_recordings,
                          "queue_timeout_s": before.queue_timeout_s },
                "to": { "recording": input.recording, "retention_days": input.retention_days,
                        "technicians_may_review_recordings": input.technicians_may_review_recordings,
                        "queue_timeout_s": queue_timeout_s },
            }),
        )?;
        tx.commit()?;
        self.get_settings(scope)
    }

    /// The organization's API tokens, newest first.
    pub fn list_api_tokens(&mut self, scope: &OrgScope) -> Result<Vec<ApiTokenInfo>, StoreError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {TOKEN_COLS} FROM api_tokens WHERE org_id = ?1 ORDER BY id DESC"
        ))?;
        let rows = stmt.query_map([scope.org_id()], token_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Stores a new API token (its digest only).
    #[allow(clippy::too_many_arguments)]
    pub fn create_api_token(
        &mut self,
        scope: &OrgScope,
        by: &By,
        name: &str,
        role: Role,
        prefix: &str,
        digest: &[u8; 32],
        expires_at: Option<i64>,
    ) -> Result<ApiTokenInfo, StoreError> {
        let tx = self.tx()?;
        tx.execute(
            "INSERT INTO api_tokens (org_id, name, role, prefix, token_hash, created_by, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                scope.org_id(),
                name,
                role.as_str(),
                prefix,
                &digest[..],
                by.actor,
                by.now,
                expires_at
            ],
        )?;
        let id = tx.last_insert_rowid();
        audit_org(
            &tx,
            scope,
            by,
            "api_token.create",
            Some(format!("api-token:{id}")),
            json!({ "name": name, "role": role, "prefix": prefix, "expires_at": expires_at.map(ts) }),
        )?;
        let info = tx.query_row(
            &format!("SELECT {TOKEN_COLS} FROM api_tokens WHERE id = ?1"),
            [id],
            token_row,
        )?;
        tx.commit()?;
        Ok(info)
    }

    /// Revokes an API token; revoking twice is harmless.
    pub fn revoke_api_token(
        &mut self,
        scope: &OrgScope,
        by: &By,
        id: i64,
    ) -> Result<(), StoreError> {
        let tx = self.tx()?;
        let (name, revoked): (String, Option<i64>) = found(tx.query_row(
            "SELECT name, revoked_at FROM api_tokens WHERE id = ?1 AND org_id = ?2",
            params![id, scope.org_id()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        ))?;
        if revoked.is_none() {
            tx.execute(
                "UPDATE api_tokens SET revoked_at = ?1 WHERE id = ?2 AND org_id = ?3",
                params![by.now, id, scope.org_id()],
            )?;
            audit_org(
                &tx,
                scope,
                by,
                "api_token.revoke",
                Some(format!("api-token:{id}")),
                json!({ "name": name }),
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// A page of the organization's audit log, newest first, entries with `seq < before`.
    pub fn audit_page(
        &mut self,
        scope: &OrgScope,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {AUDIT_COLS} FROM audit_log WHERE chain = ?1 AND seq < ?2
             ORDER BY seq DESC LIMIT ?3"
        ))?;
        let rows = stmt.query_map(
            params![org_chain(scope.org_id()), before.unwrap_or(i64::MAX), limit],
            audit_row,
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Verifies one chain.
    pub fn verify_chain(&mut self, chain: &str) -> Result<ChainReport, StoreError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {AUDIT_COLS} FROM audit_log WHERE chain = ?1 ORDER BY seq"
        ))?;
        let rows = stmt.query_map([chain], audit_row)?;
        let entries: Vec<AuditEntry> = rows.collect::<Result<_, _>>()?;
        Ok(audit::verify_chain(chain, entries))
    }

    /// Verifies every chain in the store.
    pub fn verify_all_chains(&mut self) -> Result<Vec<ChainReport>, StoreError> {
        let chains: Vec<String> = {
            let mut stmt = self
                .conn
                .prepare("SELECT DISTINCT chain FROM audit_log ORDER BY chain")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        chains.iter().map(|c| self.verify_chain(c)).collect()
    }

    /// The organization with this id, for internal jobs acting on an organization's behalf.
    pub fn org_ref_by_id(&mut self, id: i64) -> Result<crate::tenancy::OrgRef, StoreError> {
        found(
            self.conn
                .query_row("SELECT id, slug, name FROM orgs WHERE id = ?1", [id], |r| {
                    Ok(crate::tenancy::OrgRef {
                        id: r.get(0)?,
                        slug: r.get(1)?,
                        name: r.get(2)?,
                    })
                }),
        )
    }

    /// The organization a slug names, for the command line.
    pub fn org_ref(&mut self, slug: &str) -> Result<Option<crate::tenancy::OrgRef>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT id, slug, name FROM orgs WHERE slug = ?1",
                [slug],
                |r| {
                    Ok(crate::tenancy::OrgRef {
                        id: r.get(0)?,
                        slug: r.get(1)?,
                        name: r.get(2)?,
                    })
                },
            )
            .optional()?)
    }
}
