//! Call records as the console and the API read them, what the kiosks add to them, and the
//! callback list.
//!
//! - Records: finished calls (those with an outcome) of an organization, filtered by time,
//!   site, kiosk, agent and outcome, newest first, with their totals; the CSV export reads the
//!   same rows. Read through an [`OrgScope`]; agents are held to their own calls by the API.
//! - The kiosks' `survey` and `consent` events (the fleet link, for an authenticated device):
//!   a survey score is written once per call and only for a call of the same device; a consent
//!   record is kept once per device and id, tied to its call.
//! - Callbacks: rows the customer journey books (`crate::otp`); listed to the organization's
//!   staff with the full number while they are open, and marked done (audited).

use kiosk_protocol::call::CallId;
use rusqlite::{params, OptionalExtension};
use serde::Serialize;
use serde_json::json;

use super::org::audit_org;
use super::{found, By, Db, StoreError};
use crate::calls::registry::{Named, Outcome};
use crate::tenancy::OrgScope;

/// Which records to read. Times are Unix ms; `to_ms` is exclusive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordFilter {
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub site: Option<i64>,
    pub kiosk: Option<String>,
    pub agent: Option<i64>,
    pub outcome: Option<Outcome>,
}

/// One finished call as the console and the CSV show it. Times are RFC 3339 (UTC); waits and
/// talk in whole seconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CallRecordView {
    pub id: String,
    /// The organization's slug.
    pub org: String,
    pub site: Option<Named<i64>>,
    pub kiosk: Named<String>,
    pub agent: Option<Named<i64>>,
    pub kind: String,
    pub phone_masked: Option<String>,
    pub language: Option<String>,
    pub verified_at: Option<jiff::Timestamp>,
    /// When the kiosk placed it (it queued, or was refused).
    pub queued_at: jiff::Timestamp,
    pub answered_at: Option<jiff::Timestamp>,
    pub ended_at: Option<jiff::Timestamp>,
    /// From placement to the accept, or to the end when nobody accepted (none when refused).
    pub wait_s: Option<i64>,
    /// From the accept to the end.
    pub talk_s: Option<i64>,
    pub outcome: Outcome,
    pub end_reason: Option<String>,
    pub ended_by: Option<String>,
    pub refused_reason: Option<String>,
    pub survey_score: Option<u8>,
    pub recorded: bool,
    pub consent_id: Option<String>,
    pub callback_offered: bool,
}

/// The totals of the records a filter selects (not only one page).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RecordTotals {
    pub calls: i64,
    pub answered: i64,
    /// Answered calls over calls that queued (refused calls do not count); none without any.
    pub answer_rate: Option<f64>,
    /// Over the calls that queued: until answered, or until they ended unanswered.
    pub avg_wait_s: Option<f64>,
    /// Over the calls an agent accepted.
    pub avg_talk_s: Option<f64>,
    /// Over the calls with a survey score (1 to 3).
    pub avg_survey: Option<f64>,
    pub surveys: i64,
}

/// What became of a survey event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SurveyWrite {
    Written,
    /// The call has its score already (the first one stays).
    AlreadyScored,
    /// No call of this device has that id.
    NoSuchCall,
    /// The score is not 1 to 3.
    OutOfRange,
}

/// A consent event, as the fleet link read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentEvent {
    pub consent_id: String,
    pub notice_version: u32,
    pub granted: bool,
    pub language: Option<String>,
    pub call: Option<String>,
    pub at_ms: i64,
}

/// What became of a consent event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentWrite {
    Written,
    /// This device sent this consent id before.
    Duplicate,
    /// It names a call that is not this device's.
    ForeignCall,
}

/// A callback as the organization's staff see it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CallbackView {
    pub id: i64,
    pub site: Option<Named<i64>>,
    pub kiosk: Named<String>,
    /// The call nobody answered (none when the site was closed).
    pub call: Option<String>,
    /// `closed` or `not_answered`.
    pub reason: String,
    /// The number to call (E.164), while the callback is open; masked only after.
    pub phone: Option<String>,
    pub phone_masked: String,
    pub language: Option<String>,
    pub requested_at: jiff::Timestamp,
    /// `open`, `done` or `cancelled`.
    pub state: String,
    pub done_by: Option<Named<i64>>,
    pub done_at: Option<jiff::Timestamp>,
}

fn ms(t: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_millisecond(t).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

/// Whole seconds, rounded.
fn secs(ms: i64) -> i64 {
    (ms + 500).div_euclid(1000)
}

/// The filter's conditions on `calls c`, parameters ?2 to ?7 (?1 is the organization).
const FILTER: &str = "c.org_id = ?1 AND c.outcome IS NOT NULL
    AND (?2 IS NULL OR c.placed_at_ms >= ?2) AND (?3 IS NULL OR c.placed_at_ms < ?3)
    AND (?4 IS NULL OR c.site_id = ?4) AND (?5 IS NULL OR c.device_id = ?5)
    AND (?6 IS NULL OR c.agent_id = ?6) AND (?7 IS NULL OR c.outcome = ?7)";

const RECORD_COLS: &str = "c.id, o.slug, c.site_id, s.name, c.device_id, d.hardware_serial,
    c.agent_id, u.name, c.kind, c.phone_masked, c.language, c.verified_at_ms, c.placed_at_ms,
    c.accepted_at_ms, c.ended_at_ms, c.outcome, c.end_reason, c.ended_by, c.refused_reason,
    c.survey_score, c.recorded, c.consent_id, c.callback_offered, c.state";

const RECORD_FROM: &str = "calls c JOIN orgs o ON o.id = c.org_id
    LEFT JOIN devices d ON d.id = c.device_id
    LEFT JOIN sites s ON s.id = c.site_id AND s.org_id = c.org_id
    LEFT JOIN users u ON u.id = c.agent_id AND u.org_id = c.org_id";

fn record_row(r: &rusqlite::Row<'_>) -> Result<CallRecordView, rusqlite::Error> {
    let named_i = |id: Option<i64>, name: Option<String>| {
        id.map(|id| Named {
            id,
            name: name.unwrap_or_default(),
        })
    };
    let device: String = r.get(4)?;
    let placed: i64 = r.get(12)?;
    let accepted: Option<i64> = r.get(13)?;
    let ended: Option<i64> = r.get(14)?;
    let outcome: String = r.get(15)?;
    let state: String = r.get(23)?;
    let queued = state != "refused";
    Ok(CallRecordView {
        id: r.get(0)?,
        org: r.get(1)?,
        site: named_i(r.get(2)?, r.get(3)?),
        kiosk: Named {
            name: r
                .get::<_, Option<String>>(5)?
                .unwrap_or_else(|| device.clone()),
            id: device,
        },
        agent: named_i(r.get(6)?, r.get(7)?),
        kind: r.get(8)?,
        phone_masked: r.get(9)?,
        language: r.get(10)?,
        verified_at: r.get::<_, Option<i64>>(11)?.map(ms),
        queued_at: ms(placed),
        answered_at: accepted.map(ms),
        ended_at: ended.map(ms),
        wait_s: if queued {
            accepted.or(ended).map(|t| secs(t - placed))
        } else {
            None
        },
        talk_s: match (accepted, ended) {
            (Some(a), Some(e)) => Some(secs(e - a)),
            _ => None,
        },
        outcome: Outcome::parse(&outcome).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                15,
                rusqlite::types::Type::Text,
                format!("unknown outcome {outcome:?}").into(),
            )
        })?,
        end_reason: r.get(16)?,
        ended_by: r.get(17)?,
        refused_reason: r.get(18)?,
        survey_score: r.get(19)?,
        recorded: r.get(20)?,
        consent_id: r.get(21)?,
        callback_offered: r.get(22)?,
    })
}

const CALLBACK_COLS: &str = "b.id, b.site_id, s.name, b.device_id, d.hardware_serial, b.call_id,
    b.reason, b.phone_e164, b.phone_masked, b.language, b.requested_at_ms, b.state, b.done_by,
    u.name, b.done_at_ms";

const CALLBACK_FROM: &str = "callbacks b
    LEFT JOIN sites s ON s.id = b.site_id AND s.org_id = b.org_id
    LEFT JOIN devices d ON d.id = b.device_id
    LEFT JOIN users u ON u.id = b.done_by AND u.org_id = b.org_id";

fn callback_row(r: &rusqlite::Row<'_>) -> Result<CallbackView, rusqlite::Error> {
    let device: String = r.get(3)?;
    let state: String = r.get(11)?;
    let phone: String = r.get(7)?;
    Ok(CallbackView {
        id: r.get(0)?,
        site: r.get::<_, Option<i64>>(1)?.map(|id| Named {
            id,
            name: r
                .get::<_, Option<String>>(2)
                .ok()
                .flatten()
                .unwrap_or_default(),
        }),
        kiosk: Named {
            name: r
                .get::<_, Option<String>>(4)?
                .unwrap_or_else(|| device.clone()),
            id: device,
        },
        call: r.get(5)?,
        reason: r.get(6)?,
        phone: (state == "open").then_some(phone),
        phone_masked: r.get(8)?,
        language: r.get(9)?,
        requested_at: ms(r.get(10)?),
        state,
        done_by: r.get::<_, Option<i64>>(12)?.map(|id| Named {
            id,
            name: r
                .get::<_, Option<String>>(13)
                .ok()
                .flatten()
                .unwrap_or_default(),
        }),
        done_at: r.get::<_, Option<i64>>(14)?.map(ms),
    })
}

fn one_callback(
    conn: &rusqlite::Connection,
    org_id: i64,
    id: i64,
) -> Result<CallbackView, StoreError> {
    found(conn.query_row(
        &format!("SELECT {CALLBACK_COLS} FROM {CALLBACK_FROM} WHERE b.org_id = ?1 AND b.id = ?2"),
        params![org_id, id],
        callback_row,
    ))
}

impl Db<'_> {
    /// A page of the organization's finished calls, newest first.
    pub fn list_records(
        &mut self,
        scope: &OrgScope,
        f: &RecordFilter,
        limit: u32,
        offset: u32,
    ) -> Result<Vec<CallRecordView>, StoreError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {RECORD_COLS} FROM {RECORD_FROM} WHERE {FILTER}
             ORDER BY c.placed_at_ms DESC, c.id DESC LIMIT ?8 OFFSET ?9"
        ))?;
        let rows = stmt.query_map(
            params![
                scope.org_id(),
                f.from_ms,
                f.to_ms,
                f.site,
                f.kiosk,
                f.agent,
                f.outcome.map(Outcome::as_str),
                limit,
                offset
            ],
            record_row,
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The totals of every record the filter selects.
    pub fn record_totals(
        &mut self,
        scope: &OrgScope,
        f: &RecordFilter,
    ) -> Result<RecordTotals, StoreError> {
        let row = self.conn.query_row(
            &format!(
                "SELECT COUNT(*), COALESCE(SUM(c.outcome = 'answered'), 0),
                    COALESCE(SUM(c.state = 'ended'), 0),
                    AVG(CASE WHEN c.state = 'ended'
                        THEN COALESCE(c.accepted_at_ms, c.ended_at_ms) - c.placed_at_ms END),
                    AVG(CASE WHEN c.accepted_at_ms IS NOT NULL AND c.ended_at_ms IS NOT NULL
                        THEN c.ended_at_ms - c.accepted_at_ms END),
                    AVG(c.survey_score), COUNT(c.survey_score)
                 FROM calls c WHERE {FILTER}"
            ),
            params![
                scope.org_id(),
                f.from_ms,
                f.to_ms,
                f.site,
                f.kiosk,
                f.agent,
                f.outcome.map(Outcome::as_str)
            ],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, Option<f64>>(3)?,
                    r.get::<_, Option<f64>>(4)?,
                    r.get::<_, Option<f64>>(5)?,
                    r.get::<_, i64>(6)?,
                ))
            },
        )?;
        let (calls, answered, queued, wait_ms, talk_ms, survey, surveys) = row;
        let round1 = |v: f64| (v * 10.0).round() / 10.0;
        Ok(RecordTotals {
            calls,
            answered,
            answer_rate: (queued > 0).then(|| answered as f64 / queued as f64),
            avg_wait_s: wait_ms.map(|v| round1(v / 1000.0)),
            avg_talk_s: talk_ms.map(|v| round1(v / 1000.0)),
            avg_survey: survey.map(|v| (v * 100.0).round() / 100.0),
            surveys,
        })
    }

    /// A kiosk's survey after `call`: written only for a call of this device, and only the
    /// first time (a redelivered or second survey leaves the first score).
    pub fn record_survey(
        &mut self,
        device_id: &str,
        call: &CallId,
        score: u8,
    ) -> Result<SurveyWrite, StoreError> {
        if !(1..=3).contains(&score) {
            return Ok(SurveyWrite::OutOfRange);
        }
        let changed = self.conn.execute(
            "UPDATE calls SET survey_score = ?1
             WHERE id = ?2 AND device_id = ?3 AND survey_score IS NULL",
            params![score, call.as_str(), device_id],
        )?;
        if changed > 0 {
            return Ok(SurveyWrite::Written);
        }
        let exists = self
            .conn
            .query_row(
                "SELECT 1 FROM calls WHERE id = ?1 AND device_id = ?2",
                params![call.as_str(), device_id],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        Ok(if exists {
            SurveyWrite::AlreadyScored
        } else {
            SurveyWrite::NoSuchCall
        })
    }

    /// A kiosk's consent record, kept once per device and id. Without a call in the event it
    /// is tied to the call placed with this consent id, if any (or later, by that call).
    pub fn record_consent(
        &mut self,
        device_id: &str,
        org_id: i64,
        e: &ConsentEvent,
    ) -> Result<ConsentWrite, StoreError> {
        let call = match &e.call {
            Some(call) => {
                let ours = self
                    .conn
                    .query_row(
                        "SELECT 1 FROM calls WHERE id = ?1 AND device_id = ?2",
                        params![call, device_id],
                        |_| Ok(()),
                    )
                    .optional()?
                    .is_some();
                if !ours {
                    return Ok(ConsentWrite::ForeignCall);
                }
                Some(call.clone())
            }
            None => self
                .conn
                .query_row(
                    "SELECT id FROM calls WHERE device_id = ?1 AND consent_id = ?2
                     ORDER BY placed_at_ms DESC LIMIT 1",
                    params![device_id, e.consent_id],
                    |r| r.get::<_, String>(0),
                )
                .optional()?,
        };
        let changed = self.conn.execute(
            "INSERT INTO consents (id, device_id, org_id, call_id, notice_version, granted,
                                   language, at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT DO NOTHING",
            params![
                e.consent_id,
                device_id,
                org_id,
                call,
                e.notice_version,
                e.granted,
                e.language,
                e.at_ms
            ],
        )?;
        Ok(if changed > 0 {
            ConsentWrite::Written
        } else {
            ConsentWrite::Duplicate
        })
    }

    /// A page of the organization's callbacks in `state` (all when `None`): open ones oldest
    /// first (call back in order), the others newest first. Also the number that match.
    pub fn list_callbacks(
        &mut self,
        scope: &OrgScope,
        state: Option<&str>,
        limit: u32,
        offset: u32,
    ) -> Result<(Vec<CallbackView>, i64), StoreError> {
        let order = if state == Some("open") {
            "b.requested_at_ms ASC, b.id ASC"
        } else {
            "b.requested_at_ms DESC, b.id DESC"
        };
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {CALLBACK_COLS} FROM {CALLBACK_FROM}
             WHERE b.org_id = ?1 AND (?2 IS NULL OR b.state = ?2)
             ORDER BY {order} LIMIT ?3 OFFSET ?4"
        ))?;
        let rows = stmt.query_map(params![scope.org_id(), state, limit, offset], callback_row)?;
        let list = rows.collect::<Result<_, _>>()?;
        let total = self.conn.query_row(
            "SELECT COUNT(*) FROM callbacks WHERE org_id = ?1 AND (?2 IS NULL OR state = ?2)",
            params![scope.org_id(), state],
            |r| r.get(0),
        )?;
        Ok((list, total))
    }

    /// Marks an open callback done by `user` (a user id, none for an API token), with an
    /// audit entry. Done already: answered as it is. Cancelled: a conflict.
    pub fn complete_callback(
        &mut self,
        scope: &OrgScope,
        by: &By,
        user: Option<i64>,
        id: i64,
        now_ms: i64,
    ) -> Result<CallbackView, StoreError> {
        let tx = self.tx()?;
        let (state, masked, call, reason): (String, String, Option<String>, String) =
            found(tx.query_row(
                "SELECT state, phone_masked, call_id, reason FROM callbacks
                 WHERE id = ?1 AND org_id = ?2",
                params![id, scope.org_id()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            ))?;
        match state.as_str() {
            "open" => {
                tx.execute(
                    "UPDATE callbacks SET state = 'done', done_by = ?1, done_at_ms = ?2
                     WHERE id = ?3 AND org_id = ?4 AND state = 'open'",
                    params![user, now_ms, id, scope.org_id()],
                )?;
                audit_org(
                    &tx,
                    scope,
                    by,
                    "callback.done",
                    Some(format!("callback:{id}")),
                    json!({ "phone_masked": masked, "call": call, "reason": reason }),
                )?;
            }
            "done" => {}
            _ => {
                return Err(StoreError::Conflict(
                    "this callback was cancelled; there is nothing to do".into(),
                ))
            }
        }
        let view = one_callback(&tx, scope.org_id(), id)?;
        tx.commit()?;
        Ok(view)
    }
}
