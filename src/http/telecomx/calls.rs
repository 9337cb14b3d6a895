//! Telecom X's call history of a queue, from queuebridge's own record of calls.

use super::auth::SignedIn;
use super::queues::{extension_id, today};
use super::{bad_request, date, err, flag, opt_date, queue_id, with_queue, Hosts, Params, Result};
use crate::access::Directory;
use crate::access::Principal;
use crate::history::CallRecord;
use crate::history::Query as HistoryQuery;
use crate::http::error::internal;
use crate::http::AppState;
use axum::extract::Path;
use axum::extract::Query;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::json;
use serde_json::Value;
use std::collections::HashMap;
use std::time::UNIX_EPOCH;

/// Telecom X's call status for a history outcome.
pub(super) fn call_status(outcome: &str) -> &'static str {
    match outcome {
        "answered" => "ANSWERED",
        "timeout" => "TIMEOUT",
        "no_members" => "NO_MEMBERS",
        "all_busy" => "ALL_BUSY",
        _ => "CANCELLED",
    }
}

/// The history outcomes of a Telecom X call status.
pub(super) fn outcomes(status: &str) -> Option<&'static [&'static str]> {
    Some(match status {
        "ANSWERED" => &["answered"],
        "TIMEOUT" => &["timeout"],
        "NO_MEMBERS" => &["no_members"],
        "ALL_BUSY" => &["all_busy"],
        "CANCELLED" => &["abandoned", "withdrawn", "agent_dump", "unknown"],
        _ => return None,
    })
}

pub(super) fn parse_date(key: &str, v: &str) -> Result<i64> {
    let full = if v.len() == 10 {
        format!("{v}T00:00:00Z")
    } else {
        v.to_owned()
    };
    humantime::parse_rfc3339_weak(&full)
        .map_err(|_| bad_request(format!("{key}: not a date: {v:?}")))?
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .map_err(|_| bad_request(format!("{key}: before 1970: {v:?}")))
}

pub(super) fn number(
    params: &HashMap<String, String>,
    key: &str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64> {
    match params.get(key) {
        None => Ok(default),
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|n| range.contains(n))
            .ok_or_else(|| {
                bad_request(format!(
                    "{key} must be {}–{}, not {v:?}",
                    range.start(),
                    range.end()
                ))
            }),
    }
}

/// `GET /pbx/queue/{id}/calls?from&to&status&reverse&offset&limit`
pub(super) async fn calls(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Query(params): Params,
    SignedIn(me): SignedIn,
) -> Result<Json<Value>> {
    let who = Principal::User(me);
    let (server, queue, qid) = with_queue(&app, &who, &id, |q| {
        (q.server.to_string(), q.name.to_string(), queue_id(q))
    })?;
    let from = match params.get("from") {
        Some(v) => parse_date("from", v)?,
        None => today(),
    };
    let to = match params.get("to") {
        Some(v) => parse_date("to", v)?,
        None => today() + 86_399,
    };
    let mut q = HistoryQuery {
        server: server.clone(),
        queue,
        from,
        to,
        newest_first: flag(&params, "reverse")?,
        offset: number(&params, "offset", 0, 0..=u64::MAX)?,
        limit: number(&params, "limit", 50, 1..=500)?,
        ..HistoryQuery::default()
    };
    if let Some(status) = params.get("status") {
        let (negate, name) = match status.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, status.as_str()),
        };
        let list =
            outcomes(name).ok_or_else(|| bad_request(format!("status: unknown {name:?}")))?;
        let list: Vec<String> = list.iter().map(|s| (*s).to_owned()).collect();
        if negate {
            q.exclude = list;
        } else {
            q.outcomes = list;
        }
    }
    let (offset, limit) = (q.offset, q.limit);
    let (total, rows) = app.history.query(q).await.map_err(|e| {
        err(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            internal("reading the call history", e),
        )
    })?;
    let directory = app.commands.access().directory();
    let hosts = Hosts::of(&app);
    let calls: Vec<Value> = rows
        .iter()
        .map(|r| call_json(&directory, &hosts, &qid, r))
        .collect();
    Ok(Json(
        json!({ "offset": offset, "limit": limit, "total": total, "calls": calls }),
    ))
}

pub(super) fn call_json(
    directory: &Directory,
    hosts: &Hosts,
    queue_id: &str,
    r: &CallRecord,
) -> Value {
    let answered_by = (!r.member_interface.is_empty()).then(|| {
        let user = directory.by_interface(&r.server, &r.member_interface);
        match user {
            Some(u) => (
                extension_id(user, &r.member_interface),
                u.display_name.clone(),
            ),
            None => (
                extension_id(None, &r.member_interface),
                r.member_name.clone(),
            ),
        }
    });
    json!({
        "_id": hosts.call_id(&r.server, &r.uniqueid),
        "queue": queue_id,
        "pbxServer": r.server,
        "callId": r.uniqueid,
        "aNumber": r.caller_number,
        "aNumberName": r.caller_name,
        "presentation": r.dialled,
        "entered": date(r.entered),
        "answered": opt_date(r.answered),
        "ended": date(r.ended),
        "status": call_status(&r.outcome),
        "waitSeconds": r.wait_seconds,
        "talkSeconds": r.talk_seconds,
        "answeredByExtension": answered_by.as_ref().map(|a| a.0.clone()),
        "answeredByExtensionName": answered_by.map(|a| a.1),
    })
}
