//! Call record and callback routes: the finished calls with filters, totals and a CSV export,
//! and the callbacks the organization owes its customers.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::calls::own_rows;
use super::extract::{Id, Query, Scope};
use super::{json_with, AppState};
use crate::calls::registry::Outcome;
use crate::error::ApiError;
use crate::store::{By, CallRecordView, RecordFilter};

/// The most rows one CSV export holds (narrow the dates for more).
pub const MAX_CSV_ROWS: u32 = 100_000;

/// `?from=&to=&site=&kiosk=&agent=&outcome=&limit=&offset=`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordQuery {
    /// A date `YYYY-MM-DD` (from its start, UTC) or an RFC 3339 time; inclusive.
    from: Option<String>,
    /// A date (through its end, UTC) or an RFC 3339 time (exclusive).
    to: Option<String>,
    site: Option<i64>,
    kiosk: Option<String>,
    agent: Option<i64>,
    outcome: Option<String>,
    limit: Option<u32>,
    offset: Option<u32>,
}

/// A bound of the time filter in Unix ms: a date is its start (for `to`, the next day's
/// start, so the day is included); a time is itself.
fn time_bound(field: &'static str, raw: &str, end: bool) -> Result<i64, ApiError> {
    let bad = || ApiError::invalid(field, "use a date YYYY-MM-DD or an RFC 3339 time");
    let raw = raw.trim();
    if let Ok(t) = raw.parse::<jiff::Timestamp>() {
        return Ok(t.as_millisecond());
    }
    if let Some(date) = (raw.len() == 10)
        .then(|| raw.parse::<jiff::civil::Date>().ok())
        .flatten()
    {
        let day = if end {
            date.tomorrow().map_err(|_| bad())?
        } else {
            date
        };
        return day
            .to_zoned(jiff::tz::TimeZone::UTC)
            .map(|z| z.timestamp().as_millisecond())
            .map_err(|_| bad());
    }
    Err(bad())
}

impl RecordQuery {
    /// The store's filter; `own` (an agent's user id) replaces any agent asked for.
    fn filter(&self, own: Option<i64>) -> Result<RecordFilter, ApiError> {
        let from_ms = self
            .from
            .as_deref()
            .filter(|s| !s.trim().is_empty())
            .map(|s| time_bound("from", s, false))
            .transpose()?;
        let to_ms = self
            .to
            .as_deref()
            .filter(|s| !s.trim().is_empty())
            .map(|s| time_bound("to", s, true))
            .transpose()?;
        let outcome = match self.outcome.as_deref().filter(|s| !s.is_empty()) {
            None => None,
            Some(o) => Some(Outcome::parse(o).ok_or_else(|| {
                ApiError::invalid(
                    "outcome",
                    "one of answered, abandoned, missed, declined, closed, failed",
                )
            })?),
        };
        Ok(RecordFilter {
            from_ms,
            to_ms,
            site: self.site,
            kiosk: self.kiosk.clone().filter(|k| !k.is_empty()),
            agent: own.or(self.agent),
            outcome,
        })
    }
}

/// `GET /orgs/{org}/calls/records`: finished calls, newest first, with the totals of every
/// call the filter selects. Agents see their own calls only.
pub async fn list_records(
    State(state): State<AppState>,
    Scope(scope, p): Scope,
    Query(q): Query<RecordQuery>,
) -> Result<Response, ApiError> {
    let own = own_rows(&p)?;
    let filter = q.filter(own)?;
    let limit = q.limit.unwrap_or(50).clamp(1, 200);
    let offset = q.offset.unwrap_or(0);
    let (records, totals) = state
        .store
        .run(move |db| {
            Ok((
                db.list_records(&scope, &filter, limit, offset)?,
                db.record_totals(&scope, &filter)?,
            ))
        })
        .await?;
    Ok(json_with(
        StatusCode::OK,
        json!({ "records": records, "totals": totals, "limit": limit, "offset": offset }),
    ))
}

/// `GET /orgs/{org}/calls/records.csv`: the same rows as a CSV file (all of them, up to
/// [`MAX_CSV_ROWS`]).
pub async fn records_csv(
    State(state): State<AppState>,
    Scope(scope, p): Scope,
    Query(q): Query<RecordQuery>,
) -> Result<Response, ApiError> {
    let own = own_rows(&p)?;
    let filter = q.filter(own)?;
    let slug = scope.org().slug.clone();
    let rows = state
        .store
        .run(move |db| db.list_records(&scope, &filter, MAX_CSV_ROWS, 0))
        .await?;
    let mut response = to_csv(&rows).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    let day = jiff::Timestamp::now().strftime("%Y-%m-%d").to_string();
    if let Ok(v) =
        HeaderValue::from_str(&format!("attachment; filename=\"calls-{slug}-{day}.csv\""))
    {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

/// The CSV export's columns.
pub const CSV_HEADER: [&str; 23] = [
    "call",
    "organization",
    "site",
    "kiosk",
    "kiosk_name",
    "agent",
    "kind",
    "phone_masked",
    "language",
    "verified_at",
    "queued_at",
    "answered_at",
    "ended_at",
    "wait_s",
    "talk_s",
    "outcome",
    "end_reason",
    "ended_by",
    "survey_score",
    "recorded",
    "consent_id",
    "callback_offered",
    "refused_reason",
];

/// One CSV cell: a cell a spreadsheet would read as a formula (it starts with `=`, `+`, `-`,
/// `@`, a tab or a carriage return) gets a leading `'`; a cell with a comma, quote or line
/// break is quoted (RFC 4180).
pub fn csv_cell(raw: &str) -> String {
    let safe = if raw.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{raw}")
    } else {
        raw.to_string()
    };
    if safe.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", safe.replace('"', "\"\""))
    } else {
        safe
    }
}

fn iso(t: Option<jiff::Timestamp>) -> String {
    t.map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

/// The records as CSV: one header row, then one row per call, lines ended by CRLF.
pub fn to_csv(rows: &[CallRecordView]) -> String {
    let mut out = String::new();
    out.push_str(&CSV_HEADER.join(","));
    out.push_str("\r\n");
    let opt = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
    for r in rows {
        let cells: [String; 23] = [
            r.id.clone(),
            r.org.clone(),
            r.site.as_ref().map(|s| s.name.clone()).unwrap_or_default(),
            r.kiosk.id.clone(),
            r.kiosk.name.clone(),
            r.agent.as_ref().map(|a| a.name.clone()).unwrap_or_default(),
            r.kind.clone(),
            r.phone_masked.clone().unwrap_or_default(),
            r.language.clone().unwrap_or_default(),
            iso(r.verified_at),
            iso(Some(r.queued_at)),
            iso(r.answered_at),
            iso(r.ended_at),
            opt(r.wait_s),
            opt(r.talk_s),
            r.outcome.as_str().to_string(),
            r.end_reason.clone().unwrap_or_default(),
            r.ended_by.clone().unwrap_or_default(),
            opt(r.survey_score.map(i64::from)),
            r.recorded.to_string(),
            r.consent_id.clone().unwrap_or_default(),
            r.callback_offered.to_string(),
            r.refused_reason.clone().unwrap_or_default(),
        ];
        let line: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    out
}

/// `?state=open|done|cancelled|all&limit=&offset=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallbackQuery {
    state: Option<String>,
    limit: Option<u32>,
    offset: Option<u32>,
}

/// `GET /orgs/{org}/callbacks`: open ones by default, oldest first.
pub async fn list_callbacks(
    State(state): State<AppState>,
    Scope(scope, _): Scope,
    Query(q): Query<CallbackQuery>,
) -> Result<Response, ApiError> {
    let wanted = match q.state.as_deref().unwrap_or("open") {
        "all" => None,
        s @ ("open" | "done" | "cancelled") => Some(s.to_string()),
        _ => {
            return Err(ApiError::invalid(
                "state",
                "one of open, done, cancelled, all",
            ))
        }
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 500);
    let offset = q.offset.unwrap_or(0);
    let (callbacks, total) = state
        .store
        .run(move |db| db.list_callbacks(&scope, wanted.as_deref(), limit, offset))
        .await?;
    Ok(json_with(
        StatusCode::OK,
        json!({ "callbacks": callbacks, "total": total, "limit": limit, "offset": offset }),
    ))
}

/// `POST /orgs/{org}/callbacks/{id}/done`: the organization called the customer back.
pub async fn complete_callback(
    State(state): State<AppState>,
    Scope(scope, p): Scope,
    Id(id): Id,
) -> Result<Response, ApiError> {
    let by = By::new(p.label());
    let user = p.user_id();
    let now = crate::calls::now_ms();
    let view = state
        .store
        .run(move |db| db.complete_callback(&scope, &by, user, id, now))
        .await?;
    Ok(json_with(StatusCode::OK, view))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calls::registry::Named;

    #[test]
    fn cells_that_would_be_formulas_are_defused_and_quoted_when_needed() {
        assert_eq!(csv_cell("Lyon"), "Lyon");
        assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_cell("+33 6"), "'+33 6");
        assert_eq!(csv_cell("-1"), "'-1");
        assert_eq!(csv_cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_cell("\tx"), "'\tx");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv_cell(""), "");
    }

    #[test]
    fn rows_have_every_column_and_iso_times() {
        let at = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
        let row = CallRecordView {
            id: "call-abcdefghijklmnop".into(),
            org: "shop".into(),
            site: Some(Named {
                id: 1,
                name: "Lyon, Part-Dieu".into(),
            }),
            kiosk: Named {
                id: "dev-1".into(),
                name: "=cmd".into(),
            },
            agent: None,
            kind: "customer".into(),
            phone_masked: Some("+33•••••••78".into()),
            language: Some("fr".into()),
            verified_at: Some(at("2026-11-23T09:00:00.250Z")),
            queued_at: at("2026-11-23T09:01:00Z"),
            answered_at: None,
            ended_at: Some(at("2026-11-23T09:04:00Z")),
            wait_s: Some(180),
            talk_s: None,
            outcome: Outcome::Missed,
            end_reason: Some("not_answered".into()),
            ended_by: Some("cloud".into()),
            refused_reason: None,
            survey_score: Some(2),
            recorded: false,
            consent_id: None,
            callback_offered: true,
        };
        let csv = to_csv(&[row]);
        let lines: Vec<&str> = csv.split("\r\n").collect();
        assert_eq!(lines.len(), 3, "{csv}");
        assert_eq!(lines[0], CSV_HEADER.join(","));
        assert_eq!(
            lines[1],
            "call-abcdefghijklmnop,shop,\"Lyon, Part-Dieu\",dev-1,'=cmd,,customer,\
             '+33•••••••78,fr,2026-11-23T09:00:00Z,2026-11-23T09:01:00Z,,\
             2026-11-23T09:04:00Z,180,,missed,not_answered,cloud,2,false,,true,"
        );
        assert_eq!(lines[2], "");
    }

    #[test]
    fn time_bounds_take_dates_and_times() {
        let day = time_bound("from", "2026-11-23", false).unwrap();
        assert_eq!(
            day,
            "2026-11-23T00:00:00Z"
                .parse::<jiff::Timestamp>()
                .unwrap()
                .as_millisecond()
        );
        assert_eq!(
            time_bound("to", "2026-11-23", true).unwrap() - day,
            86_400_000
        );
        assert_eq!(
            time_bound("to", "2026-11-23T10:00:00+01:00", true).unwrap(),
            day + 9 * 3_600_000
        );
        assert!(time_bound("from", "yesterday", false).is_err());
        assert!(time_bound("from", "2026-11-23T10:00:00", false).is_err());
    }
}
