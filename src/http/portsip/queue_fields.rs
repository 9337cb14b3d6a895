//! PortSIP's queue body mapped onto a queue's definition: each field onto a queues.conf option
//! or an AstDB attribute, and a field Asterisk cannot honour refused by name.

use serde::Deserialize;
use serde_json::Value;

use super::{invalid_fields, Result};
use crate::queues_conf::{Attribute, QueueConf};

/// A forwarding rule: `{action, number}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ForwardRule {
    action: String,
    #[serde(default)]
    #[allow(dead_code)]
    number: Option<String>,
}

/// The writable fields of a call queue; `null` is the same as absent.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct QueueBody {
    pub(super) name: Option<String>,
    pub(super) extension_number: Option<String>,
    pub(super) polling_strategy: Option<String>,
    pub(super) ring_time: Option<i64>,
    pub(super) max_callers: Option<i64>,
    pub(super) moh_prompt_file_id: Option<String>,
    pub(super) intro_type: Option<String>,
    pub(super) intro_prompt_file_id: Option<String>,
    pub(super) max_waiting_time: Option<i64>,
    pub(super) wait_when_no_agents_online: Option<bool>,
    pub(super) inform_position: Option<String>,
    pub(super) inform_position_interval: Option<i64>,
    pub(super) agent_auto_ready: Option<bool>,
    pub(super) agent_auto_not_ready_after_non_acd_call: Option<bool>,
    pub(super) sla_time: Option<i64>,
    pub(super) language: Option<String>,
    pub(super) no_answer_forward_rule: Option<ForwardRule>,
    pub(super) night_mode_forward_rule: Option<ForwardRule>,
    pub(super) enable_callback: Option<bool>,
    pub(super) callback_mode: Option<String>,
    pub(super) callback_timeout: Option<i64>,
    pub(super) callback_outbound_prefix: Option<String>,
    pub(super) outbound_caller_ids: Option<Vec<Value>>,
    pub(super) enable_sticky_routing: Option<bool>,
    pub(super) sticky_routing_duration: Option<i64>,
    pub(super) enable_paid: Option<bool>,
    pub(super) enable_prid: Option<bool>,
    pub(super) extension_number_as_to_header: Option<bool>,
    /// queuebridge's addition: the server to create the queue on (default: the first
    /// configured one).
    pub(super) call_queue_server_id: Option<String>,
}

/// What a request changes besides the queues.conf options.
#[derive(Default)]
pub(super) struct Extras {
    pub(super) name: Option<String>,
    pub(super) max_waiting_time: Option<i64>,
}

/// Collects the problems of a request, to name them all at once.
#[derive(Default)]
pub(super) struct Problems {
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
pub(super) fn apply_fields(b: &QueueBody, conf: &mut QueueConf) -> Result<Extras> {
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
pub(super) fn new_definition() -> QueueConf {
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
pub(super) fn attributes(queue: &str, extras: &Extras) -> Vec<(Attribute, Option<String>)> {
    let mut out = Vec::new();
    if let Some(name) = &extras.name {
        out.push((Attribute::Name, (name != queue).then(|| name.clone())));
    }
    if let Some(w) = extras.max_waiting_time {
        out.push((Attribute::MaxWaitingTime, Some(w.to_string())));
    }
    out
}
