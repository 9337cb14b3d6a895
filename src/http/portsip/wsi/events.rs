//! What a subscribed socket is told: the `queue_status` snapshot of a queue, and the
//! `queue_caller_status`, `queue_agent_status` and `queue_sla_breached` events the state's
//! changes make, each agent told only when what it shows changed.

use std::sync::Arc;

use serde_json::{json, Value};

use super::Wsi;
use crate::access::Directory;
use crate::clock::now_secs;
use crate::http::portsip::agents::agent_status;
use crate::http::portsip::queues::queue_number;
use crate::state::{Change, ChangeKind, ConnectedCall, Queue, State as Model};

impl Wsi {
    /// The `queue_status` of one queue, remembering what its agents were told.
    pub(super) async fn snapshot(&mut self, key: &(Arc<str>, Arc<str>)) -> Option<Value> {
        let defs = self.app.queues_conf.definitions(&key.0).await.ok();
        let name = |q: &Queue| {
            defs.as_ref()
                .and_then(|d| d.attributes.get(&*q.name)?.get("name").cloned())
                .unwrap_or_else(|| q.name.to_string())
        };
        let app = self.app.clone();
        let directory = app.commands.access().directory();
        app.hub.read(|s| {
            let q = s.queue(&key.0, &key.1)?;
            let waiting: Vec<Value> = q
                .waiting()
                .map(|w| {
                    json!({ "position": w.position, "session_id": w.caller.uniqueid,
                            "caller_number": w.caller.caller_id_num,
                            "caller_name": w.caller.caller_id_name,
                            "timestamp": w.caller.entered.to_string(), "type": "normal" })
                })
                .collect();
            let mut agents = Vec::new();
            for m in q.members.values() {
                let state = agent_status(q, Some(m));
                let call = call_of(q, &m.interface);
                let session = call.map_or_else(String::new, |c| c.uniqueid.to_string());
                let view = agent_view(q, &directory, &m.interface, state, call);
                self.told.insert(
                    (key.0.clone(), key.1.clone(), m.interface.clone()),
                    (state, session),
                );
                agents.push(view);
            }
            Some(json!({
                "topic": "queue_events", "event_type": "queue_status",
                "tenant_id": &*q.server, "queue_id": q.id.to_string(),
                "queue_number": queue_number(q), "queue_name": name(q),
                "waiting_list": waiting, "agents": agents,
            }))
        })
    }

    /// The events one change makes for the queues subscribed to.
    pub(super) fn events(&mut self, s: &Model, change: &Change, out: &mut Vec<Value>) {
        let queue = match &change.kind {
            ChangeKind::CallerJoined { queue, .. }
            | ChangeKind::CallerLeft { queue, .. }
            | ChangeKind::MemberUpdated { queue, .. }
            | ChangeKind::MemberRemoved { queue, .. }
            | ChangeKind::CallConnected { queue, .. }
            | ChangeKind::CallCompleted { queue, .. } => queue,
            _ => return,
        };
        let key = (change.server.clone(), queue.clone());
        if !self.queues.contains(&key) {
            return;
        }
        let Some(q) = s.queue(&key.0, &key.1) else {
            return;
        };
        let head = |event: &str| {
            json!({ "topic": "queue_events", "event_type": event,
                    "tenant_id": &*q.server, "queue_id": q.id.to_string() })
        };
        let now = now_secs().to_string();
        match &change.kind {
            ChangeKind::CallerJoined { caller, .. } => {
                let mut v = head("queue_caller_status");
                v["updated_callers"] = json!([{
                    "position": caller.position, "session_id": caller.caller.uniqueid,
                    "caller_number": caller.caller.caller_id_num, "reason": "enqueue",
                    "timestamp": caller.caller.entered.to_string(), "type": "normal" }]);
                out.push(v);
            }
            ChangeKind::CallerLeft {
                uniqueid,
                position,
                abandoned,
                ..
            } => {
                self.breached
                    .remove(&(key.0.clone(), key.1.clone(), uniqueid.clone()));
                // Answered callers are connected by now; the number is on the call.
                let number = q
                    .connected_calls
                    .get(uniqueid)
                    .map_or_else(String::new, |c| c.caller_id_num.to_string());
                let mut v = head("queue_caller_status");
                v["updated_callers"] = json!([{
                    "position": position, "session_id": uniqueid, "caller_number": number,
                    "reason": if *abandoned { "hangup" } else { "agent_answered" },
                    "timestamp": now, "type": "normal" }]);
                out.push(v);
            }
            ChangeKind::MemberRemoved { interface, .. } => {
                let k = (key.0.clone(), key.1.clone(), interface.clone());
                if self.told.remove(&k).is_some() {
                    let number = self
                        .app
                        .commands
                        .access()
                        .directory()
                        .agent_number(&q.server, interface);
                    let mut v = head("queue_agent_status");
                    v["updated_agents"] = json!([]);
                    v["removed_agents"] = json!([{ "agent_extension_number": number }]);
                    out.push(v);
                }
            }
            ChangeKind::MemberUpdated { member, .. } => self.agent(q, &member.interface, out),
            ChangeKind::CallConnected { call, .. } => self.agent(q, &call.interface, out),
            ChangeKind::CallCompleted { interface, .. } => self.agent(q, interface, out),
            _ => {}
        }
    }

    /// `queue_agent_status` when what the agent shows changed.
    pub(super) fn agent(&mut self, q: &Queue, interface: &str, out: &mut Vec<Value>) {
        let Some(m) = q.members.get(interface) else {
            return;
        };
        let state = agent_status(q, Some(m));
        let call = call_of(q, interface);
        let session = call.map_or_else(String::new, |c| c.uniqueid.to_string());
        let k = (q.server.clone(), q.name.clone(), interface.into());
        if self.told.get(&k) == Some(&(state, session.clone())) {
            return;
        }
        self.told.insert(k, (state, session));
        let directory = self.app.commands.access().directory();
        let view = agent_view(q, &directory, interface, state, call);
        out.push(json!({
            "topic": "queue_events", "event_type": "queue_agent_status",
            "tenant_id": &*q.server, "queue_id": q.id.to_string(),
            "updated_agents": [view], "removed_agents": [],
        }));
    }

    /// `queue_sla_breached` for each caller who has now waited longer than the queue's
    /// service level (`sla_time`; none when 0), once per caller.
    pub(super) fn breaches(&mut self, s: &Model) -> Vec<Value> {
        let now = now_secs();
        let mut out = Vec::new();
        for key in &self.queues {
            let Some(q) = s.queue(&key.0, &key.1) else {
                continue;
            };
            let sla = q.stats.service_level;
            if sla <= 0 {
                continue;
            }
            let over: Vec<_> = q.callers.iter().filter(|c| now - c.entered > sla).collect();
            for c in &over {
                if self
                    .breached
                    .insert((key.0.clone(), key.1.clone(), c.uniqueid.clone()))
                {
                    out.push(json!({
                        "topic": "queue_events", "event_type": "queue_sla_breached",
                        "tenant_id": &*q.server, "queue_id": q.id.to_string(),
                        "caller": c.caller_id_num, "total_callers_breached": over.len(),
                        "sla_time_secs": sla, "waiting_callers": q.callers.len(),
                        "timestamp": now.to_string(),
                    }));
                }
            }
        }
        out
    }
}

/// The queue call the member at `interface` is in, if any.
fn call_of<'a>(q: &'a Queue, interface: &str) -> Option<&'a ConnectedCall> {
    q.connected_calls.iter().find(|c| c.interface == interface)
}

/// An agent as `queue_status` and `queue_agent_status` show it; `call` is [`call_of`].
fn agent_view(
    q: &Queue,
    directory: &Directory,
    interface: &str,
    state: &'static str,
    call: Option<&ConnectedCall>,
) -> Value {
    json!({
        "state": state,
        "agent_extension_number": directory.agent_number(&q.server, interface),
        "session_id": call.map_or("", |c| c.uniqueid.as_str()),
        "caller_number": call.map_or("", |c| c.caller_id_num.as_str()),
        "caller_name": call.map_or("", |c| c.caller_id_name.as_str()),
        "timestamp": call.map_or_else(|| now_secs().to_string(), |c| c.connected_at.to_string()),
    })
}
