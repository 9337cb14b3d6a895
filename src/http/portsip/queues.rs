//! Call queues, their waiting lists and agents (rest-dialects.md §1.7).
//!
//! A queue's `extension_number` is its Asterisk name (the number callers dial into
//! `Queue(${EXTEN})`); its `name` is a display name kept in AstDB, the queue's name when none
//! was given. Definitions are read from queues.conf with GetConfig and changed with UpdateConfig
//! (see [`crate::queues_conf`]); every PortSIP field maps onto a queues.conf option or AstDB, and
//! a field Asterisk cannot honour is refused by name ([`apply_fields`]).
//!
//! An agent is a queue member or a configured user allowed to log in to the queue; its
//! `extension_number` is the user's number (else the one in the member interface), its
//! `skill_level` is Asterisk's penalty + 1.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::warn;

use super::odata::{Field, Type};
use super::{
    body, command_error, conf_error, forbidden, invalid, invalid_fields, not_found, paged, Admin,
    Result, SignedIn,
};
use crate::access::{Principal, User};
use crate::clock::now_secs;
use crate::command::{Command, Done};
use crate::http::AppState;
use crate::queues_conf::{
    Attribute, Attributes, ConfError, Definitions, Exclusive, QueueConf, StaticMember,
};
use crate::state::{Member, Queue};
use crate::view::{self, Agent};

const FIELDS: &[Field] = &[
    ("id", Type::Text),
    ("name", Type::Text),
    ("extension_number", Type::Text),
    ("ring_time", Type::Number),
    ("polling_strategy", Type::Text),
];

/// app_queue's ring time when queues.conf sets none.
const DEFAULT_TIMEOUT: i64 = 15;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/call_queues", get(list).post(create))
        .route("/call_queues/{id}", get(show).post(update))
        .route("/call_queues/{id}/status", get(status))
        .route("/call_queues/{id}/destroy", post(destroy))
        .route("/call_queues/{id}/waiting", get(waiting))
        .route(
            "/call_queues/{id}/waiting/{session_id}/pickup",
            post(pickup),
        )
        .route("/call_queues/{id}/agents", get(agents).post(set_agents))
        .route(
            "/call_queues/{id}/agents/{agent_number}",
            get(agent).post(set_agent_status),
        )
        .route("/user/call_queues", get(own_queues))
        .route(
            "/user/call_queues/{id}/agent",
            get(own_agent).post(set_own_status),
        )
        .route("/users/{user}/call_queues", get(user_queues))
        .route(
            "/users/{user}/call_queues/{id}/agent",
            get(user_agent).post(set_user_status),
        )
}

// ---- Lookups -------------------------------------------------------------------------------

/// The queue with this PortSIP id, if the user may see it.
fn find(app: &AppState, who: &Arc<User>, id: &str) -> Result<Queue> {
    let n: u64 = id
        .parse()
        .map_err(|_| invalid("Invalid call queue ID supplied"))?;
    let principal = Principal::User(who.clone());
    app.hub
        .read(|s| s.queues().find(|q| q.id == n).cloned())
        .filter(|q| principal.can_see(q))
        .ok_or_else(|| not_found("Call queue not found"))
}

/// What Asterisk keeps of a server's queues: definitions and AstDB attributes. Empty when the
/// link cannot tell (the state still lists the queues).
async fn definitions(app: &AppState, server: &str) -> Arc<Definitions> {
    app.queues_conf
        .definitions(server)
        .await
        .unwrap_or_else(|err| {
            warn!(server, %err, "cannot read the queue definitions");
            Arc::default()
        })
}

fn display_name(q: &Queue, attrs: &Attributes) -> String {
    attrs
        .get(&*q.name)
        .and_then(|a| a.get(Attribute::Name.key()))
        .cloned()
        .unwrap_or_else(|| q.name.to_string())
}

fn strategy_name(asterisk: &str) -> &'static str {
    match asterisk {
        "linear" => "PRIORITIZED_HUNT",
        "rrmemory" | "rrordered" | "roundrobin" => "CYCLIC_HUNT",
        "leastrecent" | "fewestcalls" => "LEAST_WORKED_HUNT",
        // ringall, and random/wrandom which PortSIP has no name for.
        _ => "RING_SIMULTANEOUSLY",
    }
}

fn num(conf: Option<&QueueConf>, key: &str, default: i64) -> i64 {
    conf.and_then(|c| c.get(key))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// A queue's `extension_number`, which PortSIP's schema makes 3 to 64 digits: its Asterisk
/// name when that is such a number (every queue made through this dialect), else — a queue
/// named in queues.conf, `sales` — its numeric id, zero-padded to three digits (`001`).
pub(super) fn queue_number(q: &Queue) -> String {
    if (3..=64).contains(&q.name.len()) && q.name.bytes().all(|c| c.is_ascii_digit()) {
        q.name.to_string()
    } else {
        format!("{:03}", q.id)
    }
}

fn summary(q: &Queue, conf: Option<&QueueConf>, attrs: &Attributes) -> Value {
    json!({
        "id": q.id.to_string(),
        "name": display_name(q, attrs),
        "extension_number": queue_number(q),
        "ring_time": num(conf, "timeout", DEFAULT_TIMEOUT),
        "polling_strategy": strategy_name(&q.stats.strategy),
    })
}

/// Whether app_queue lets callers join (and stay in) a queue without available members:
/// `joinempty` parsed as app_queue does, no condition = wait.
fn waits_when_empty(conf: Option<&QueueConf>) -> bool {
    let Some(v) = conf.and_then(|c| c.get("joinempty")) else {
        return true;
    };
    v.split(',').map(str::trim).all(|o| {
        matches!(
            o.to_ascii_lowercase().as_str(),
            "yes" | "true" | "y" | "t" | "1" | "on" | ""
        )
    })
}

fn detail(q: &Queue, conf: Option<&QueueConf>, attrs: &Attributes) -> Value {
    let mut v = summary(q, conf, attrs);
    let announce = conf
        .and_then(|c| c.get("announce-position"))
        .is_some_and(|p| {
            !matches!(
                p.to_ascii_lowercase().as_str(),
                "no" | "false" | "0" | "off"
            )
        });
    let frequency = num(conf, "announce-frequency", 0);
    let max_wait: i64 = attrs
        .get(&*q.name)
        .and_then(|a| a.get(Attribute::MaxWaitingTime.key()))
        .and_then(|v| v.parse().ok())
        .filter(|w| *w > 0)
        // No limit (a queue of queues.conf, or 0 set by hand): the schema's largest value.
        .unwrap_or(65_535);
    // Fields PortSIP has and Asterisk does not (prompt files, language, forwarding rules,
    // callback prefix) are absent: the schema types them string, number or object, never null.
    let extra = json!({
        "max_callers": q.stats.max,
        "intro_type": "DISABLE",
        "max_waiting_time": max_wait,
        "wait_when_no_agents_online": waits_when_empty(conf),
        "inform_position": if announce && frequency > 0 { "ON_CONNECTED" } else { "DISABLE" },
        "inform_position_interval": if frequency > 0 { frequency } else { 10 },
        "agent_auto_ready": true,
        "agent_auto_not_ready_after_non_acd_call": true,
        "sla_time": q.stats.service_level,
        "enable_callback": false,
        "callback_mode": "ACTIVE",
        "callback_timeout": 600,
        "outbound_caller_ids": [],
        "enable_sticky_routing": false,
        "sticky_routing_duration": 30,
        "enable_paid": false,
        "enable_prid": false,
        "extension_number_as_to_header": false,
    });
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    v
}

// ---- Queues --------------------------------------------------------------------------------

async fn list(
    State(app): State<AppState>,
    SignedIn(user): SignedIn,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>> {
    paged(
        &params,
        FIELDS,
        visible_summaries(&app, &user, |_| true).await,
    )
}

/// Summaries of the queues `user` may see and `keep` selects, server by server.
async fn visible_summaries(
    app: &AppState,
    user: &Arc<User>,
    keep: impl Fn(&Queue) -> bool,
) -> Vec<Value> {
    let principal = Principal::User(user.clone());
    let queues: Vec<Queue> = app.hub.read(|s| {
        s.queues()
            .filter(|q| principal.can_see(q) && keep(q))
            .cloned()
            .collect()
    });
    let mut by_server: BTreeMap<Arc<str>, Vec<Queue>> = BTreeMap::new();
    for q in queues {
        by_server.entry(q.server.clone()).or_default().push(q);
    }
    let mut items = Vec::new();
    for (server, queues) in by_server {
        let d = definitions(app, &server).await;
        items.extend(
            queues
                .iter()
                .map(|q| summary(q, d.queues.get(&*q.name), &d.attributes)),
        );
    }
    items
}

async fn show(
    State(app): State<AppState>,
    SignedIn(user): SignedIn,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let q = find(&app, &user, &id)?;
    let d = definitions(&app, &q.server).await;
    Ok(Json(detail(&q, d.queues.get(&*q.name), &d.attributes)))
}

async fn status(
    State(app): State<AppState>,
    SignedIn(user): SignedIn,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let q = find(&app, &user, &id)?;
    let online = app.hub.read(|s| view::link_up(s, &q.server));
    Ok(Json(
        json!({ "status": if online { "ONLINE" } else { "OFFLINE" } }),
    ))
}

/// A forwarding rule: `{action, number}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ForwardRule {
    action: String,
    #[serde(default)]
    #[allow(dead_code)]
    number: Option<String>,
}

/// The writable fields of a call queue; `null` is the same as absent.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct QueueBody {
    name: Option<String>,
    extension_number: Option<String>,
    polling_strategy: Option<String>,
    ring_time: Option<i64>,
    max_callers: Option<i64>,
    moh_prompt_file_id: Option<String>,
    intro_type: Option<String>,
    intro_prompt_file_id: Option<String>,
    max_waiting_time: Option<i64>,
    wait_when_no_agents_online: Option<bool>,
    inform_position: Option<String>,
    inform_position_interval: Option<i64>,
    agent_auto_ready: Option<bool>,
    agent_auto_not_ready_after_non_acd_call: Option<bool>,
    sla_time: Option<i64>,
    language: Option<String>,
    no_answer_forward_rule: Option<ForwardRule>,
    night_mode_forward_rule: Option<ForwardRule>,
    enable_callback: Option<bool>,
    callback_mode: Option<String>,
    callback_timeout: Option<i64>,
    callback_outbound_prefix: Option<String>,
    outbound_caller_ids: Option<Vec<Value>>,
    enable_sticky_routing: Option<bool>,
    sticky_routing_duration: Option<i64>,
    enable_paid: Option<bool>,
    enable_prid: Option<bool>,
    extension_number_as_to_header: Option<bool>,
    /// queuebridge's addition: the server to create the queue on (default: the first
    /// configured one).
    call_queue_server_id: Option<String>,
}

/// What a request changes besides the queues.conf options.
#[derive(Default)]
struct Extras {
    name: Option<String>,
    max_waiting_time: Option<i64>,
}

/// Collects the problems of a request, to name them all at once.
#[derive(Default)]
struct Problems {
    fields: Vec<&'static str>,
    reasons: Vec<String>,
}

impl Problems {
    fn add(&mut self, field: &'static str, reason: impl Into<String>) {
        self.fields.push(field);
        self.reasons.push(format!("{field}: {}", reason.into()));
    }

    fn range(&mut self, field: &'static str, v: Option<i64>, lo: i64, hi: i64) -> Option<i64> {
        match v {
            Some(n) if !(lo..=hi).contains(&n) => {
                self.add(field, format!("must be from {lo} to {hi}"));
                None
            }
            other => other,
        }
    }

    fn into_result(self) -> Result<()> {
        if self.fields.is_empty() {
            Ok(())
        } else {
            Err(invalid_fields(&self.fields, self.reasons.join("; ")))
        }
    }
}

/// Maps the fields onto queues.conf options of `conf` (and the extras); refuses, by name,
/// every field whose value Asterisk cannot honour.
fn apply_fields(b: &QueueBody, conf: &mut QueueConf) -> Result<Extras> {
    let mut p = Problems::default();
    let mut extras = Extras::default();
    if let Some(name) = &b.name {
        let n = name.trim();
        if n.is_empty() || n.chars().count() > 64 {
            p.add("name", "must be 1 to 64 characters");
        } else {
            extras.name = Some(n.to_owned());
        }
    }
    if let Some(s) = &b.polling_strategy {
        match s.as_str() {
            "RING_SIMULTANEOUSLY" => conf.set("strategy", "ringall"),
            "PRIORITIZED_HUNT" => conf.set("strategy", "linear"),
            "CYCLIC_HUNT" => conf.set("strategy", "rrmemory"),
            "LEAST_WORKED_HUNT" => conf.set("strategy", "leastrecent"),
            "SKILL_BASED_ROUTING_PRIORITIZED_HUNT"
            | "SKILL_BASED_ROUTING_CYCLIC_HUNT"
            | "SKILL_BASED_ROUTING_LEAST_WORKED_HUNT" => p.add(
                "polling_strategy",
                "Asterisk moves on to higher penalties only when lower ones are unavailable, \
                 not when they did not answer; use a hunt strategy with skill_level as penalty",
            ),
            other => p.add("polling_strategy", format!("unknown value {other:?}")),
        }
    }
    if let Some(t) = p.range("ring_time", b.ring_time, 1, 65_535) {
        conf.set("timeout", t.to_string());
    }
    if let Some(m) = p.range("max_callers", b.max_callers, 0, i64::from(i32::MAX)) {
        conf.set("maxlen", m.to_string());
    }
    if let Some(s) = p.range("sla_time", b.sla_time, 0, 65_536) {
        conf.set("servicelevel", s.to_string());
    }
    extras.max_waiting_time = p.range("max_waiting_time", b.max_waiting_time, 15, 65_535);
    if let Some(wait) = b.wait_when_no_agents_online {
        let when = if wait {
            ("yes", "no")
        } else {
            ("unavailable,invalid,unknown", "unavailable,invalid,unknown")
        };
        conf.set("joinempty", when.0);
        conf.set("leavewhenempty", when.1);
    }
    let interval = p.range(
        "inform_position_interval",
        b.inform_position_interval,
        10,
        1800,
    );
    match b.inform_position.as_deref() {
        None => {
            if let Some(i) = interval {
                if conf.get("announce-frequency").is_some_and(|f| f != "0") {
                    conf.set("announce-frequency", i.to_string());
                }
            }
        }
        Some("DISABLE") => {
            conf.set("announce-position", "no");
            conf.set("announce-frequency", "0");
        }
        Some("ON_CONNECTED") => {
            conf.set("announce-position", "yes");
            conf.set("announce-to-first-user", "yes");
            conf.set("announce-frequency", interval.unwrap_or(10).to_string());
        }
        Some("PERIODICALLY") => p.add(
            "inform_position",
            "Asterisk always tells a caller's position on joining, then periodically: \
             use ON_CONNECTED",
        ),
        Some(other) => p.add("inform_position", format!("unknown value {other:?}")),
    }
    match b.intro_type.as_deref() {
        None | Some("DISABLE") => {}
        Some("NORMAL" | "FULL") => p.add("intro_type", "introductory tones are not supported"),
        Some(other) => p.add("intro_type", format!("unknown value {other:?}")),
    }
    if b.moh_prompt_file_id.is_some() {
        p.add(
            "moh_prompt_file_id",
            "prompt files are not supported; set musicclass in Asterisk",
        );
    }
    if b.intro_prompt_file_id.is_some() {
        p.add("intro_prompt_file_id", "prompt files are not supported");
    }
    if b.agent_auto_ready == Some(false) {
        p.add(
            "agent_auto_ready",
            "Asterisk makes an agent ready after each call; only true is possible",
        );
    }
    if b.agent_auto_not_ready_after_non_acd_call == Some(false) {
        p.add(
            "agent_auto_not_ready_after_non_acd_call",
            "ignored while agent_auto_ready is true, which it always is; send true or omit it",
        );
    }
    if let Some(l) = &b.language {
        if !(l == "en" || l.starts_with("en-")) {
            p.add(
                "language",
                "the queue plays Asterisk's default (English) sounds",
            );
        }
    }
    if b.no_answer_forward_rule
        .as_ref()
        .is_some_and(|r| r.action != "HANGUP")
    {
        p.add(
            "no_answer_forward_rule",
            "after Queue() the dialplan hangs up; only action HANGUP is possible",
        );
    }
    if b.night_mode_forward_rule.is_some() {
        p.add(
            "night_mode_forward_rule",
            "Asterisk queues have no night mode",
        );
    }
    if b.enable_callback == Some(true) {
        p.add("enable_callback", "Asterisk queues offer no callback");
    }
    if b.callback_mode.as_deref().is_some_and(|m| m != "ACTIVE") {
        p.add("callback_mode", "Asterisk queues offer no callback");
    }
    if b.callback_timeout.is_some_and(|t| t != 600) {
        p.add("callback_timeout", "Asterisk queues offer no callback");
    }
    if b.callback_outbound_prefix
        .as_deref()
        .is_some_and(|x| !x.is_empty())
    {
        p.add(
            "callback_outbound_prefix",
            "Asterisk queues offer no callback",
        );
    }
    if b.outbound_caller_ids
        .as_ref()
        .is_some_and(|v| !v.is_empty())
    {
        p.add(
            "outbound_caller_ids",
            "set caller ids in the Asterisk dialplan",
        );
    }
    // `enable_sticky_routing` is taken either way: PortSIP's default is true, so a client
    // sending a whole default object sends it. Asterisk has no sticky routing; it reads back
    // false.
    let _ = b.enable_sticky_routing;
    if b.sticky_routing_duration.is_some_and(|d| d != 30) {
        p.add(
            "sticky_routing_duration",
            "Asterisk queues have no sticky routing",
        );
    }
    for (field, v) in [
        ("enable_paid", b.enable_paid),
        ("enable_prid", b.enable_prid),
        (
            "extension_number_as_to_header",
            b.extension_number_as_to_header,
        ),
    ] {
        if v == Some(true) {
            p.add(
                field,
                "SIP headers are set by the Asterisk dialplan, not by the queue",
            );
        }
    }
    p.into_result()?;
    Ok(extras)
}

/// The definition a new queue starts from: PortSIP's defaults in queues.conf terms.
fn new_definition() -> QueueConf {
    let mut c = QueueConf::default();
    for (k, v) in [
        ("strategy", "ringall"),
        ("timeout", "20"),
        ("retry", "1"),
        ("maxlen", "0"),
        ("servicelevel", "0"),
        ("joinempty", "unavailable,invalid,unknown"),
        ("leavewhenempty", "unavailable,invalid,unknown"),
        ("announce-position", "no"),
        ("announce-frequency", "0"),
        ("autopause", "no"),
        ("ringinuse", "no"),
        ("wrapuptime", "0"),
    ] {
        c.set(k, v);
    }
    c
}

/// What AstDB keeps for a queue, as changed by a request: a name equal to the queue's is
/// none.
fn attributes(queue: &str, extras: &Extras) -> Vec<(Attribute, Option<String>)> {
    let mut out = Vec::new();
    if let Some(name) = &extras.name {
        out.push((Attribute::Name, (name != queue).then(|| name.clone())));
    }
    if let Some(w) = extras.max_waiting_time {
        out.push((Attribute::MaxWaitingTime, Some(w.to_string())));
    }
    out
}

async fn create(
    State(app): State<AppState>,
    _: Admin,
    b: Result<Json<QueueBody>, JsonRejection>,
) -> Result<Json<Value>> {
    let b = body(b)?;
    let mut missing = Vec::new();
    for (field, given) in [
        ("name", b.name.is_some()),
        ("extension_number", b.extension_number.is_some()),
        ("polling_strategy", b.polling_strategy.is_some()),
    ] {
        if !given {
            missing.push(field);
        }
    }
    if !missing.is_empty() {
        return Err(invalid_fields(
            &missing,
            format!("required: {}", missing.join(", ")),
        ));
    }
    let number = b.extension_number.clone().unwrap_or_default();
    if !(3..=64).contains(&number.len()) || !number.bytes().all(|c| c.is_ascii_digit()) {
        return Err(invalid_fields(
            &["extension_number"],
            "must be 3 to 64 digits",
        ));
    }
    if app.hub.read(|s| {
        s.queues()
            .any(|q| *q.name != number && queue_number(q) == number)
    }) {
        return Err(invalid_fields(
            &["extension_number"],
            format!("{number} is already a queue's extension number"),
        ));
    }
    let server = match &b.call_queue_server_id {
        Some(s) => app
            .commands
            .servers()
            .get(s)
            .map(|s| s.id)
            .ok_or_else(|| invalid_fields(&["call_queue_server_id"], "no such server"))?,
        None => app
            .commands
            .servers()
            .list()
            .into_iter()
            .find(|s| s.enabled)
            .map(|s| s.id)
            .ok_or_else(|| invalid("no queue server is enabled"))?,
    };
    let mut conf = new_definition();
    let mut extras = apply_fields(&b, &mut conf)?;
    extras.max_waiting_time = extras.max_waiting_time.or(Some(300));
    let one = app.queues_conf.exclusive().await.map_err(conf_error)?;
    app.queues_conf
        .create(&one, &server, &number, &conf, &attributes(&number, &extras))
        .await
        .map_err(conf_error)?;
    let id = app
        .hub
        .read(|s| s.queue(&server, &number).map(|q| q.id))
        .ok_or_else(|| not_found("the queue vanished right after it was created"))?;
    app.portsip_events
        .publish("queue_created", &server, &number);
    Ok(Json(json!({ "id": id.to_string() })))
}

async fn update(
    State(app): State<AppState>,
    Admin(user): Admin,
    Path(id): Path<String>,
    b: Result<Json<QueueBody>, JsonRejection>,
) -> Result<StatusCode> {
    let q = find(&app, &user, &id)?;
    let b = body(b)?;
    if b.extension_number.is_some() || b.call_queue_server_id.is_some() {
        return Err(invalid_fields(
            &["extension_number"],
            "the extension number of a queue cannot change",
        ));
    }
    let (one, mut conf) = managed_exclusively(&app, &q).await?;
    let extras = apply_fields(&b, &mut conf)?;
    app.queues_conf
        .replace(
            &one,
            &q.server,
            &q.name,
            &conf,
            &attributes(&q.name, &extras),
        )
        .await
        .map_err(conf_error)?;
    app.portsip_events
        .publish("queue_updated", &q.server, &queue_number(&q));
    Ok(StatusCode::OK)
}

/// The queue's definition as queuebridge manages it, read while holding the right to change
/// definitions (one change at a time).
async fn managed_exclusively(app: &AppState, q: &Queue) -> Result<(Exclusive, QueueConf)> {
    let one = app.queues_conf.exclusive().await.map_err(conf_error)?;
    let conf = app
        .queues_conf
        .managed(&q.server, &q.name)
        .await
        .map_err(conf_error)?;
    Ok((one, conf))
}

async fn destroy(
    State(app): State<AppState>,
    Admin(user): Admin,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    let q = find(&app, &user, &id)?;
    let one = app.queues_conf.exclusive().await.map_err(conf_error)?;
    app.queues_conf
        .destroy(&one, &q.server, &q.name)
        .await
        .map_err(|e| match e {
            // The vendor's file gives destroy only 204, 400 and 404.
            ConfError::NotManaged(_) => invalid(e.to_string()),
            e => conf_error(e),
        })?;
    app.portsip_events
        .publish("queue_destroy", &q.server, &queue_number(&q));
    Ok(StatusCode::NO_CONTENT)
}

// ---- Waiting list --------------------------------------------------------------------------

async fn waiting(
    State(app): State<AppState>,
    SignedIn(user): SignedIn,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let q = find(&app, &user, &id)?;
    let now = now_secs();
    let items: Vec<Value> = q
        .callers
        .iter()
        .map(|c| {
            json!({
                "session_id": c.uniqueid,
                "extension_number": if c.privacy { "" } else { c.caller_id_num.as_str() },
                "display_name": c.caller_id_name,
                "waiting_time": (now - c.entered).max(0),
            })
        })
        .collect();
    Ok(Json(json!({ "items": items })))
}

async fn pickup(
    State(app): State<AppState>,
    SignedIn(user): SignedIn,
    Path((id, session)): Path<(String, String)>,
) -> Result<StatusCode> {
    let q = find(&app, &user, &id)?;
    if user.server != *q.server {
        return Err(forbidden(format!(
            "{}'s phone is on server {}, not on {}",
            user.name, user.server, q.server
        )));
    }
    app.commands
        .pickup(
            &Principal::User(user.clone()),
            &q.server,
            &q.name,
            &session,
            &user.interface,
        )
        .await
        .map_err(command_error)?;
    Ok(StatusCode::OK)
}

// ---- Agents --------------------------------------------------------------------------------

/// The agents of a queue (a copy read from the hub, so the borrow is the caller's).
fn agents_of<'q>(app: &AppState, q: &'q Queue) -> Vec<Agent<'q>> {
    view::agents(&app.commands.access().directory(), q)
}

/// The status PortSIP shows for what Asterisk reports of a member.
pub(super) fn agent_status(q: &Queue, member: Option<&Member>) -> &'static str {
    let Some(m) = member else {
        return "LOGGED_OUT";
    };
    // On Hold (8) is not in the schema's status enum: the held agent is still in their call,
    // so it reads as QUEUE_CALL or OTHER_CALL below.
    if m.status.unreachable() {
        return "OFFLINE";
    }
    if q.connected_calls.iter().any(|c| c.interface == m.interface) {
        return "QUEUE_CALL";
    }
    if m.in_call || m.status.in_call() {
        return "OTHER_CALL";
    }
    if m.paused {
        // Whoever paused the member, and in whatever case (a catalogue's "Lunch" is LUNCH).
        let reason = m.paused_reason.as_str();
        return ["WRAP_UP", "BREAK", "LUNCH"]
            .into_iter()
            .find(|s| s.eq_ignore_ascii_case(reason))
            .unwrap_or("NOT_READY");
    }
    "READY"
}

fn agent_view(q: &Queue, a: &Agent, with_status: bool) -> Value {
    let mut v = json!({
        "extension_number": a.number,
        "display_name": a.name,
        "skill_level": a.member.map_or(1, |m| (m.penalty + 1).clamp(1, 100)),
    });
    if with_status {
        v["status"] = json!(agent_status(q, a.member));
    }
    v
}

async fn agents(
    State(app): State<AppState>,
    SignedIn(user): SignedIn,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let q = find(&app, &user, &id)?;
    let items: Vec<Value> = agents_of(&app, &q)
        .iter()
        .map(|a| agent_view(&q, a, false))
        .collect();
    Ok(Json(json!({ "items": items })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentItem {
    extension_number: String,
    #[serde(default)]
    skill_level: Option<i64>,
    /// What `GET …/agents` shows; taken so its list can be posted back, and not used (an
    /// agent's name is the configured user's, or Asterisk's).
    #[serde(default, rename = "display_name")]
    _display_name: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentList {
    items: Vec<AgentItem>,
}

/// `POST /call_queues/{id}/agents`: the queue's static members become exactly the listed ones
/// that are not dynamic. A listed dynamic agent (logged in or not) stays dynamic, a listed
/// static member keeps its queues.conf line with the new skill level, anyone else listed must be
/// a configured agent and becomes a static member. So posting back what `GET …/agents` gave
/// changes nothing.
async fn set_agents(
    State(app): State<AppState>,
    Admin(user): Admin,
    Path(id): Path<String>,
    b: Result<Json<AgentList>, JsonRejection>,
) -> Result<StatusCode> {
    let q = find(&app, &user, &id)?;
    let list = body(b)?;
    let directory = app.commands.access().directory();
    let current = agents_of(&app, &q);
    let (one, mut conf) = managed_exclusively(&app, &q).await?;
    let mut members: Vec<StaticMember> = Vec::new();
    let mut problems = Vec::new();
    for (i, item) in list.items.iter().enumerate() {
        if item.skill_level.is_some_and(|l| !(1..=100).contains(&l)) {
            problems.push(format!("items[{i}].skill_level: must be from 1 to 100"));
            continue;
        }
        let listed = current.iter().find(|a| a.number == item.extension_number);
        let member = match listed.map(|a| (a.member, a.user.as_ref())) {
            // Dynamic: a member who logged in, or a configured agent who may.
            Some((Some(m), _)) if !m.membership.is_static() => continue,
            Some((None, Some(_))) => continue,
            Some((Some(m), _)) => conf
                .members
                .iter()
                .find(|s| s.interface == m.interface)
                .cloned()
                .unwrap_or_else(|| StaticMember {
                    interface: m.interface.clone(),
                    penalty: m.penalty,
                    name: m.name.clone(),
                    state_interface: m.state_interface.clone(),
                }),
            _ => {
                let Some(u) = directory.users().find(|u| {
                    u.is_agent() && u.server == *q.server && u.number() == item.extension_number
                }) else {
                    problems.push(format!(
                        "items[{i}].extension_number: no agent with extension {:?} on server {}",
                        item.extension_number, q.server
                    ));
                    continue;
                };
                StaticMember {
                    interface: u.interface.clone(),
                    penalty: 0,
                    name: u.display_name.clone(),
                    state_interface: u.state_interface.clone(),
                }
            }
        };
        if members.iter().any(|m| m.interface == member.interface) {
            problems.push(format!("items[{i}].extension_number: listed twice"));
            continue;
        }
        // Without a skill level a member keeps its penalty (a new one gets 0: level 1).
        members.push(StaticMember {
            penalty: item.skill_level.map_or(member.penalty, |l| l - 1),
            ..member
        });
    }
    if !problems.is_empty() {
        return Err(invalid_fields(&["items"], problems.join("; ")));
    }
    conf.members = members;
    app.queues_conf
        .replace(&one, &q.server, &q.name, &conf, &[])
        .await
        .map_err(conf_error)?;
    Ok(StatusCode::OK)
}

fn agent_number(n: &str) -> Result<&str> {
    if (3..=64).contains(&n.len()) && n.bytes().all(|c| c.is_ascii_digit()) {
        Ok(n)
    } else {
        Err(invalid("the agent number must be 3 to 64 digits"))
    }
}

fn find_agent<'q>(app: &AppState, q: &'q Queue, number: &str) -> Result<Agent<'q>> {
    agents_of(app, q)
        .into_iter()
        .find(|a| a.number == number)
        .ok_or_else(|| not_found(format!("no agent {number} in queue {}", q.name)))
}

async fn agent(
    State(app): State<AppState>,
    SignedIn(user): SignedIn,
    Path((id, number)): Path<(String, String)>,
) -> Result<Json<Value>> {
    let q = find(&app, &user, &id)?;
    let a = find_agent(&app, &q, agent_number(&number)?)?;
    Ok(Json(agent_view(&q, &a, true)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusBody {
    status: String,
}

/// Sets an agent's status through the command layer (which decides who may).
async fn set_status(
    app: &AppState,
    who: Arc<User>,
    q: &Queue,
    a: &Agent<'_>,
    status: &str,
) -> Result<Done> {
    let interface = match (a.member, &a.user) {
        (Some(m), _) => m.interface.clone(),
        (None, Some(u)) => u.interface.clone(),
        (None, None) => return Err(not_found("no such agent")),
    };
    let login = |paused: Option<String>| -> Result<Command> {
        let u = a.user.as_ref().ok_or_else(|| {
            invalid(format!(
                "agent {} is not a configured user and cannot log in",
                a.number
            ))
        })?;
        Ok(Command::login(u, &*q.name, None, paused))
    };
    let command = match status {
        "LOGGED_IN" => login(None)?,
        "LOGGED_OUT" => Command::Logout {
            queue: q.name.to_string(),
            interface,
        },
        "READY" | "NOT_READY" | "WRAP_UP" | "BREAK" | "LUNCH" => {
            let paused = status != "READY";
            let reason = if paused {
                status.to_owned()
            } else {
                String::new()
            };
            if a.member.is_some() {
                Command::Pause {
                    queue: Some(q.name.to_string()),
                    interface,
                    paused,
                    reason,
                }
            } else {
                login(paused.then_some(reason))?
            }
        }
        other => {
            return Err(invalid_fields(
                &["status"],
                format!(
                    "unknown status {other:?} (READY, NOT_READY, WRAP_UP, BREAK, LUNCH, \
                     LOGGED_IN, LOGGED_OUT)"
                ),
            ))
        }
    };
    app.commands
        .execute(&Principal::User(who), &q.server, command)
        .await
        .map_err(command_error)
}

async fn set_agent_status(
    State(app): State<AppState>,
    SignedIn(user): SignedIn,
    Path((id, number)): Path<(String, String)>,
    b: Result<Json<StatusBody>, JsonRejection>,
) -> Result<StatusCode> {
    let q = find(&app, &user, &id)?;
    let a = find_agent(&app, &q, agent_number(&number)?)?;
    let b = body(b)?;
    set_status(&app, user, &q, &a, &b.status).await?;
    Ok(StatusCode::OK)
}

// ---- Per-user views ------------------------------------------------------------------------

/// The user named in the path, whom `who` may look at: themselves, or anyone for a supervisor.
fn subject(app: &AppState, who: &User, name: &str) -> Result<Arc<User>> {
    let directory = app.commands.access().directory();
    let u = directory
        .user(name)
        .cloned()
        .ok_or_else(|| not_found(format!("no user {name:?}")))?;
    if who.supervisor || who.name == u.name {
        Ok(u)
    } else {
        Err(forbidden(format!(
            "{} may only see their own queues",
            who.name
        )))
    }
}

/// The queues `u` is an agent of: a member, or allowed to log in.
async fn queues_of(app: &AppState, u: &Arc<User>) -> Json<Value> {
    let items = visible_summaries(app, u, |q| {
        *q.server == *u.server
            && (u.queues.contains(&*q.name) || q.members.contains_key(&u.interface))
    })
    .await
    .into_iter()
    .map(|s| json!({ "id": s["id"], "name": s["name"], "extension_number": s["extension_number"] }))
    .collect::<Vec<_>>();
    Json(json!({ "items": items }))
}

fn own_agent_entry<'q>(app: &AppState, u: &User, q: &'q Queue) -> Result<Agent<'q>> {
    agents_of(app, q)
        .into_iter()
        .find(|a| a.user.as_ref().is_some_and(|x| x.name == u.name))
        .ok_or_else(|| not_found(format!("{} is not an agent of queue {}", u.name, q.name)))
}

async fn own_queues(State(app): State<AppState>, SignedIn(user): SignedIn) -> Result<Json<Value>> {
    Ok(queues_of(&app, &user).await)
}

async fn user_queues(
    State(app): State<AppState>,
    SignedIn(who): SignedIn,
    Path(name): Path<String>,
) -> Result<Json<Value>> {
    let u = subject(&app, &who, &name)?;
    Ok(queues_of(&app, &u).await)
}

async fn own_agent(
    State(app): State<AppState>,
    SignedIn(user): SignedIn,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let q = find(&app, &user, &id)?;
    let a = own_agent_entry(&app, &user, &q)?;
    Ok(Json(agent_view(&q, &a, true)))
}

async fn user_agent(
    State(app): State<AppState>,
    SignedIn(who): SignedIn,
    Path((name, id)): Path<(String, String)>,
) -> Result<Json<Value>> {
    let u = subject(&app, &who, &name)?;
    let q = find(&app, &who, &id)?;
    let a = own_agent_entry(&app, &u, &q)?;
    Ok(Json(agent_view(&q, &a, true)))
}

async fn set_own_status(
    State(app): State<AppState>,
    SignedIn(user): SignedIn,
    Path(id): Path<String>,
    b: Result<Json<StatusBody>, JsonRejection>,
) -> Result<StatusCode> {
    let q = find(&app, &user, &id)?;
    let a = own_agent_entry(&app, &user, &q)?;
    let b = body(b)?;
    set_status(&app, user, &q, &a, &b.status).await?;
    Ok(StatusCode::OK)
}

async fn set_user_status(
    State(app): State<AppState>,
    SignedIn(who): SignedIn,
    Path((name, id)): Path<(String, String)>,
    b: Result<Json<StatusBody>, JsonRejection>,
) -> Result<StatusCode> {
    let u = subject(&app, &who, &name)?;
    let q = find(&app, &who, &id)?;
    let a = own_agent_entry(&app, &u, &q)?;
    let b = body(b)?;
    set_status(&app, who, &q, &a, &b.status).await?;
    Ok(StatusCode::OK)
}
