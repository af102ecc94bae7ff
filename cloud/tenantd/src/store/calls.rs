//! Calls, the organizations' ICE settings, and call snapshots.
//!
//! Call rows are written by the call registry as calls change (see `crate::calls`), with a
//! revision number so a late write never replaces a newer one. The registry never writes the
//! survey score (the kiosk's survey event does, see `records.rs`), so its writes cannot undo
//! it. They are read by the console through an [`OrgScope`].

use kiosk_protocol::call::{CallId, CallKind, EndReason, Party};
use rusqlite::{params, OptionalExtension};
use serde::Serialize;
use serde_json::json;

use super::org::{audit_in_org, audit_org};
use super::{found, ts, By, Db, StoreError};
use crate::calls::ice::IceSettings;
use crate::calls::registry::{CallRecord, CallState, KioskInfo, Named, Outcome};
use crate::store::{RecordingPolicy, Site};
use crate::tenancy::OrgScope;

const CALL_COLS: &str = "id, org_id, site_id, device_id, kind, request_id, state, agent_id, \
     placed_at_ms, accepted_at_ms, ended_at_ms, end_reason, ended_by, refused_reason, rev, \
     customer_id, phone_masked, phone_hash, language, verified_at_ms, outcome, recorded, \
     consent_id, callback_offered";

/// How many recent answered waits start an organization's estimate.
const RECENT_WAITS: u32 = 20;

/// A call that was live when tenantd stopped, ended at the next start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterruptedCall {
    pub id: CallId,
    pub device_id: String,
    /// The kiosk's request id for the call.
    pub request: String,
}

/// What the call registry's edge reads before it places a call.
#[derive(Debug, Clone)]
pub struct RoutingLimits {
    /// How long a call may wait for an agent (`org_settings.queue_timeout_s`).
    pub queue_timeout_s: i64,
    pub recording: RecordingPolicy,
    /// The organization's longest call, in ms.
    pub max_call_ms: i64,
    /// Recent answered waits, newest first.
    pub recent_waits_ms: Vec<i64>,
    /// The kiosk's site, with its hours.
    pub site: Option<Site>,
}

fn corrupt(what: &str, value: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        0,
        rusqlite::types::Type::Text,
        format!("unknown {what} {value:?}").into(),
    )
}

pub(super) fn party_str(p: Party) -> &'static str {
    match p {
        Party::Kiosk => "kiosk",
        Party::Agent => "agent",
        Party::Cloud => "cloud",
    }
}

fn call_row(r: &rusqlite::Row<'_>) -> Result<CallRecord, rusqlite::Error> {
    let id: String = r.get(0)?;
    let kind: String = r.get(4)?;
    let state: String = r.get(6)?;
    let ended_by: Option<String> = r.get(12)?;
    Ok(CallRecord {
        id: CallId::parse(&id).map_err(|_| corrupt("call id", &id))?,
        org_id: r.get(1)?,
        site_id: r.get(2)?,
        device_id: r.get(3)?,
        kind: CallKind::parse(&kind).ok_or_else(|| corrupt("call kind", &kind))?,
        request: r.get(5)?,
        state: CallState::parse(&state).ok_or_else(|| corrupt("call state", &state))?,
        agent_id: r.get(7)?,
        placed_at_ms: r.get(8)?,
        accepted_at_ms: r.get(9)?,
        ended_at_ms: r.get(10)?,
        end_reason: r
            .get::<_, Option<String>>(11)?
            .map(|s| EndReason::parse(&s)),
        ended_by: match ended_by.as_deref() {
            None => None,
            Some("kiosk") => Some(Party::Kiosk),
            Some("agent") => Some(Party::Agent),
            Some("cloud") => Some(Party::Cloud),
            Some(other) => return Err(corrupt("party", other)),
        },
        refused_reason: r.get(13)?,
        rev: r.get::<_, i64>(14)? as u64,
        customer_id: r.get(15)?,
        phone_masked: r.get(16)?,
        phone_hash: r.get(17)?,
        language: r.get(18)?,
        verified_at_ms: r.get(19)?,
        outcome: match r.get::<_, Option<String>>(20)? {
            None => None,
            Some(o) => Some(Outcome::parse(&o).ok_or_else(|| corrupt("outcome", &o))?),
        },
        recorded: r.get(21)?,
        consent_id: r.get(22)?,
        callback_offered: r.get(23)?,
    })
}

/// A snapshot's record (never its bytes).
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotInfo {
    pub id: i64,
    pub call: String,
    pub agent_id: i64,
    pub media_type: String,
    pub size: i64,
    pub taken_at: jiff::Timestamp,
}

const SNAPSHOT_COLS: &str = "id, call_id, agent_id, media_type, size, taken_at";

fn snapshot_row(r: &rusqlite::Row<'_>) -> Result<SnapshotInfo, rusqlite::Error> {
    Ok(SnapshotInfo {
        id: r.get(0)?,
        call: r.get(1)?,
        agent_id: r.get(2)?,
        media_type: r.get(3)?,
        size: r.get(4)?,
        taken_at: ts(r.get(5)?),
    })
}

impl Db<'_> {
    /// Writes a call as the registry has it; an older revision than the stored one is ignored.
    /// The customer, language and consent are written when the row is made; the survey score
    /// is never touched. A consent record the kiosk sent before the call learns its call.
    pub fn save_call(&mut self, c: &CallRecord) -> Result<(), StoreError> {
        self.conn.execute(
            &format!(
                "INSERT INTO calls ({CALL_COLS}) VALUES
                 (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15,
                  ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24)
                 ON CONFLICT (id) DO UPDATE SET state = excluded.state,
                    agent_id = excluded.agent_id, accepted_at_ms = excluded.accepted_at_ms,
                    ended_at_ms = excluded.ended_at_ms, end_reason = excluded.end_reason,
                    ended_by = excluded.ended_by, refused_reason = excluded.refused_reason,
                    outcome = excluded.outcome, callback_offered = excluded.callback_offered,
                    rev = excluded.rev
                 WHERE excluded.rev > calls.rev AND excluded.org_id = calls.org_id"
            ),
            params![
                c.id.as_str(),
                c.org_id,
                c.site_id,
                c.device_id,
                c.kind.as_str(),
                c.request,
                c.state.as_str(),
                c.agent_id,
                c.placed_at_ms,
                c.accepted_at_ms,
                c.ended_at_ms,
                c.end_reason.map(EndReason::as_str),
                c.ended_by.map(party_str),
                c.refused_reason,
                c.rev as i64,
                c.customer_id,
                c.phone_masked,
                c.phone_hash,
                c.language,
                c.verified_at_ms,
                c.outcome.map(Outcome::as_str),
                c.recorded,
                c.consent_id,
                c.callback_offered,
            ],
        )?;
        if let Some(consent) = &c.consent_id {
            self.conn.execute(
                "UPDATE consents SET call_id = ?1
                 WHERE device_id = ?2 AND id = ?3 AND call_id IS NULL",
                params![c.id.as_str(), c.device_id, consent],
            )?;
        }
        Ok(())
    }

    /// At start: calls that were live when tenantd stopped are over (`other`, by the cloud;
    /// outcome `failed`). Returns them, so their kiosks can be told.
    pub fn end_interrupted_calls(
        &mut self,
        now_ms: i64,
    ) -> Result<Vec<InterruptedCall>, StoreError> {
        let tx = self.tx()?;
        let calls = {
            let mut stmt = tx.prepare(
                "SELECT id, device_id, request_id FROM calls
                 WHERE state IN ('ringing', 'accepted') ORDER BY placed_at_ms",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get(2)?))
            })?;
            let mut calls = Vec::new();
            for row in rows {
                let (id, device_id, request) = row?;
                match CallId::parse(&id) {
                    Ok(id) => calls.push(InterruptedCall {
                        id,
                        device_id,
                        request,
                    }),
                    Err(e) => {
                        tracing::error!(call = id, error = %e, "a stored call id does not read")
                    }
                }
            }
            calls
        };
        tx.execute(
            "UPDATE calls SET state = 'ended', ended_at_ms = ?1, end_reason = 'other',
                ended_by = 'cloud', outcome = 'failed', rev = rev + 1
             WHERE state IN ('ringing', 'accepted')",
            [now_ms],
        )?;
        tx.commit()?;
        Ok(calls)
    }

    /// What the call registry's edge needs to place a call of organization `org_id` from a
    /// kiosk of `site_id` (the edge acts for a device already tied to both).
    pub fn routing_limits(
        &mut self,
        org_id: i64,
        site_id: Option<i64>,
    ) -> Result<RoutingLimits, StoreError> {
        let (queue_timeout_s, recording): (i64, String) = found(self.conn.query_row(
            "SELECT queue_timeout_s, recording FROM org_settings WHERE org_id = ?1",
            [org_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        ))?;
        let recent_waits_ms = {
            let mut stmt = self.conn.prepare(
                "SELECT accepted_at_ms - placed_at_ms FROM calls
                 WHERE org_id = ?1 AND accepted_at_ms IS NOT NULL
                 ORDER BY placed_at_ms DESC LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![org_id, RECENT_WAITS], |r| r.get(0))?;
            rows.collect::<Result<Vec<i64>, _>>()?
        };
        let site = match site_id {
            Some(id) => super::org::site_in_org(self.conn, org_id, id)?,
            None => None,
        };
        Ok(RoutingLimits {
            queue_timeout_s,
            recording: RecordingPolicy::parse(&recording)?,
            max_call_ms: self.ice_settings(org_id)?.max_call_ms(),
            recent_waits_ms,
            site,
        })
    }

    /// The organization's calls, newest first; only `agent`'s when given.
    pub fn list_calls(
        &mut self,
        scope: &OrgScope,
        agent: Option<i64>,
        limit: u32,
        offset: u32,
    ) -> Result<Vec<CallRecord>, StoreError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {CALL_COLS} FROM calls WHERE org_id = ?1 AND (?2 IS NULL OR agent_id = ?2)
             ORDER BY placed_at_ms DESC, id DESC LIMIT ?3 OFFSET ?4"
        ))?;
        let rows = stmt.query_map(params![scope.org_id(), agent, limit, offset], call_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One call of the organization.
    pub fn get_call(&mut self, scope: &OrgScope, id: &str) -> Result<CallRecord, StoreError> {
        found(self.conn.query_row(
            &format!("SELECT {CALL_COLS} FROM calls WHERE org_id = ?1 AND id = ?2"),
            params![scope.org_id(), id],
            call_row,
        ))
    }

    /// A live device's organization, site and name, for a call it places.
    pub fn kiosk_for_call(&mut self, device_id: &str) -> Result<Option<KioskInfo>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT d.id, d.hardware_serial, d.org_id, s.id, s.name
                 FROM devices d LEFT JOIN sites s ON s.id = d.site_id AND s.org_id = d.org_id
                 WHERE d.id = ?1 AND d.revoked_at IS NULL",
                [device_id],
                |r| {
                    let site = match r.get::<_, Option<i64>>(3)? {
                        Some(id) => Some(Named {
                            id,
                            name: r.get(4)?,
                        }),
                        None => None,
                    };
                    Ok(KioskInfo {
                        device_id: r.get(0)?,
                        name: r.get(1)?,
                        org_id: r.get(2)?,
                        site,
                    })
                },
            )
            .optional()?)
    }

    /// An organization's ICE settings (the defaults when it never set them), for the call
    /// registry's edges, which act for a device or an agent already tied to `org_id`.
    pub fn ice_settings(&mut self, org_id: i64) -> Result<IceSettings, StoreError> {
        let row: Option<(String, String, Option<String>, i64)> = self
            .conn
            .query_row(
                "SELECT stun_urls, turn_urls, turn_secret, max_call_s FROM org_ice WHERE org_id = ?1",
                [org_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        let Some((stun, turn, turn_secret, max_call_s)) = row else {
            return Ok(IceSettings::default());
        };
        let list = |s: &str| -> Result<Vec<String>, StoreError> {
            serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("ICE URLs: {e}")))
        };
        Ok(IceSettings {
            stun_urls: list(&stun)?,
            turn_urls: list(&turn)?,
            turn_secret,
            max_call_s,
        })
    }

    /// Replaces the organization's ICE settings; the audit entry says whether the secret
    /// changed, never what it is.
    pub fn put_ice_settings(
        &mut self,
        scope: &OrgScope,
        by: &By,
        settings: &IceSettings,
    ) -> Result<(), StoreError> {
        let before = self.ice_settings(scope.org_id())?;
        let tx = self.tx()?;
        tx.execute(
            "INSERT INTO org_ice (org_id, stun_urls, turn_urls, turn_secret, max_call_s, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (org_id) DO UPDATE SET stun_urls = excluded.stun_urls,
                turn_urls = excluded.turn_urls, turn_secret = excluded.turn_secret,
                max_call_s = excluded.max_call_s, updated_at = excluded.updated_at",
            params![
                scope.org_id(),
                json!(settings.stun_urls).to_string(),
                json!(settings.turn_urls).to_string(),
                settings.turn_secret,
                settings.max_call_s,
                by.now
            ],
        )?;
        audit_org(
            &tx,
            scope,
            by,
            "ice.update",
            None,
            json!({
                "stun_urls": settings.stun_urls,
                "turn_urls": settings.turn_urls,
                "turn_secret_set": settings.turn_secret.is_some(),
                "turn_secret_changed": settings.turn_secret != before.turn_secret,
                "max_call_s": settings.max_call_s,
            }),
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Stores a snapshot of a call, with an audit entry.
    #[allow(clippy::too_many_arguments)]
    pub fn add_snapshot(
        &mut self,
        scope: &OrgScope,
        by: &By,
        call: &str,
        agent_id: i64,
        media_type: &str,
        image: &[u8],
    ) -> Result<SnapshotInfo, StoreError> {
        let tx = self.tx()?;
        tx.execute(
            "INSERT INTO call_snapshots (org_id, call_id, agent_id, media_type, size, image, taken_at)
             SELECT ?1, id, ?3, ?4, ?5, ?6, ?7 FROM calls WHERE org_id = ?1 AND id = ?2",
            params![
                scope.org_id(),
                call,
                agent_id,
                media_type,
                image.len() as i64,
                image,
                by.now
            ],
        )?;
        if tx.changes() == 0 {
            return Err(StoreError::NotFound);
        }
        let id = tx.last_insert_rowid();
        audit_in_org(
            &tx,
            scope.org_id(),
            by,
            "call.snapshot",
            Some(format!("call:{call}")),
            json!({ "snapshot": id, "media_type": media_type, "size": image.len() }),
        )?;
        tx.commit()?;
        found(self.conn.query_row(
            &format!("SELECT {SNAPSHOT_COLS} FROM call_snapshots WHERE id = ?1"),
            [id],
            snapshot_row,
        ))
    }

    /// A call's snapshots, oldest first; only those `agent` took when given.
    pub fn list_snapshots(
        &mut self,
        scope: &OrgScope,
        call: &str,
        agent: Option<i64>,
    ) -> Result<Vec<SnapshotInfo>, StoreError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {SNAPSHOT_COLS} FROM call_snapshots
             WHERE org_id = ?1 AND call_id = ?2 AND (?3 IS NULL OR agent_id = ?3) ORDER BY id"
        ))?;
        let rows = stmt.query_map(params![scope.org_id(), call, agent], snapshot_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One snapshot of a call with its bytes.
    pub fn get_snapshot(
        &mut self,
        scope: &OrgScope,
        call: &str,
        id: i64,
    ) -> Result<(SnapshotInfo, Vec<u8>), StoreError> {
        found(self.conn.query_row(
            &format!(
                "SELECT {SNAPSHOT_COLS}, image FROM call_snapshots
                 WHERE org_id = ?1 AND call_id = ?2 AND id = ?3"
            ),
            params![scope.org_id(), call, id],
            |r| Ok((snapshot_row(r)?, r.get(6)?)),
        ))
    }
}
