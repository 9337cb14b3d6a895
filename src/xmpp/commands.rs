//! The component's command dispatch: every stanza read from the link, and each IQ command run
//! in its own task (bounded in all and per user), answered with what Asterisk confirmed.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio_xmpp::jid::{BareJid, FullJid, Jid};
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::iq::Iq;
use tokio_xmpp::parsers::ns;
use tokio_xmpp::parsers::presence::Type as PresenceType;
use tokio_xmpp::parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};
use tokio_xmpp::xmlstream::StreamElementError;
use tokio_xmpp::Stanza;
use tracing::{debug, warn};

use crate::access::{Principal, User};
use crate::command::Command;
use crate::state::{Queue, State};

use super::outbound::Outbound;
use super::pascom::{failure, Identity, QueueRef, Request, Subscription};

use super::{events, pascom, sessions, Front, Slot, COMMAND_DEADLINE, MAX_COMMANDS};

impl Front {
    /// Handles one stanza from the server. Never blocks: commands run in their own tasks.
    pub(super) fn inbound(self: &Arc<Self>, stanza: Stanza) {
        match stanza {
            Stanza::Iq(Iq::Get {
                from, id, payload, ..
            })
            | Stanza::Iq(Iq::Set {
                from, id, payload, ..
            }) => {
                let Some(from) = from.and_then(|f| f.try_into_full().ok()) else {
                    debug!(id, "IQ without a full sender JID ignored");
                    return;
                };
                if payload.is("ping", ns::PING) {
                    self.reply(&from, &id, None);
                } else if payload.has_ns(pascom::NS) {
                    self.command(from, id, payload);
                } else {
                    self.reply_error(
                        from.into(),
                        id,
                        DefinedCondition::ServiceUnavailable,
                        "this component speaks the pascom mobydick API only",
                    );
                }
            }
            Stanza::Presence(p) if p.type_ == PresenceType::Unavailable => {
                if let Some(from) = p.from.and_then(|f| f.try_into_full().ok()) {
                    if self.sessions().remove(&from) {
                        debug!(%from, "session ended");
                    }
                }
            }
            // Pongs and errors for our pings, other presences and messages: nothing to do.
            _ => {}
        }
    }

    /// A stanza the link could not parse: logged; an IQ request gets `bad-request`.
    pub(super) fn malformed(&self, error: StreamElementError) {
        if let StreamElementError::InvalidStanza { header, error, .. } = &error {
            let request = matches!(header.type_.as_deref(), Some("get") | Some("set"));
            if let (true, Some(from), Some(id)) = (request, &header.from, &header.id) {
                if let Ok(from) = Jid::new(from) {
                    self.reply_error(
                        from,
                        id.clone(),
                        DefinedCondition::BadRequest,
                        &format!("malformed stanza: {error}"),
                    );
                }
            }
        }
        warn!(%error, "malformed stanza skipped");
    }

    /// At shutdown: refuses new commands from now on and waits until the running ones have
    /// queued their answers (the link writes them before it closes).
    pub async fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
        let all = u32::try_from(MAX_COMMANDS).unwrap_or(u32::MAX);
        let _idle = self.commands_in_flight.acquire_many(all).await;
    }

    pub(super) fn command(self: &Arc<Self>, from: FullJid, id: String, payload: Element) {
        if self.draining.load(Ordering::SeqCst) {
            self.reply(&from, &id, Some(failure("queuebridge is shutting down")));
            return;
        }
        let Some(slot) = Slot::take(self, &from) else {
            self.reply(
                &from,
                &id,
                Some(failure("too many commands in progress, try again")),
            );
            return;
        };
        let front = self.clone();
        tokio::spawn(async move {
            let answer =
                match tokio::time::timeout(COMMAND_DEADLINE, front.answer(&from, &payload)).await {
                    Ok(answer) => answer,
                    Err(_) => failure(&format!(
                        "no answer from the PBX within {} s",
                        COMMAND_DEADLINE.as_secs()
                    )),
                };
            front.reply_sent(&from, &id, Some(answer)).await;
            drop(slot);
        });
    }

    pub(super) fn result(&self, to: &FullJid, id: &str, payload: Option<Element>) -> Stanza {
        Stanza::Iq(Iq::Result {
            from: Some(self.component.clone()),
            to: Some(to.clone().into()),
            id: id.to_owned(),
            payload,
        })
    }

    /// Queues an IQ result without waiting; dropped (and logged) if the queue is full.
    pub(super) fn reply(&self, to: &FullJid, id: &str, payload: Option<Element>) {
        if self
            .out
            .try_send(Outbound::Stanza(Box::new(self.result(to, id, payload))))
            .is_err()
        {
            warn!(%to, id, "outbound queue full: reply dropped");
        }
    }

    pub(super) async fn reply_sent(&self, to: &FullJid, id: &str, payload: Option<Element>) {
        let _ = self
            .out
            .send(Outbound::Stanza(Box::new(self.result(to, id, payload))))
            .await;
    }

    pub(super) fn reply_error(&self, to: Jid, id: String, condition: DefinedCondition, text: &str) {
        let kind = match condition {
            DefinedCondition::BadRequest => ErrorType::Modify,
            _ => ErrorType::Cancel,
        };
        let stanza = Stanza::Iq(Iq::Error {
            from: Some(self.component.clone()),
            to: Some(to),
            id,
            error: StanzaError::new(kind, condition, "en", pascom::xml_safe(text)),
            payload: None,
        });
        if self
            .out
            .try_send(Outbound::Stanza(Box::new(stanza)))
            .is_err()
        {
            warn!("outbound queue full: error reply dropped");
        }
    }

    /// The configured user `jid` is, if it is one.
    pub(super) fn user_of(&self, jid: &BareJid) -> Option<Arc<User>> {
        if jid.domain().as_str() != self.config.domain {
            return None;
        }
        self.access.directory().user(jid.node()?.as_str()).cloned()
    }

    /// The answer to one command: its response, `base.Success` or `base.Failure`.
    pub(super) async fn answer(&self, from: &FullJid, payload: &Element) -> Element {
        let request = match pascom::parse_request(payload) {
            Ok(r) => r,
            Err(e) => return failure(&e),
        };
        let Some(user) = self.user_of(&from.to_bare()) else {
            return failure(&format!("{} is not a user of this PBX", from.to_bare()));
        };
        match self.run(from, &user, &request).await {
            Ok(e) => e,
            Err(reason) => failure(&reason),
        }
    }

    pub(super) async fn run(
        &self,
        from: &FullJid,
        user: &Arc<User>,
        req: &Request,
    ) -> Result<Element, String> {
        match (req.module.as_str(), req.name.as_str()) {
            ("xmppuser", "ClientInfo") => {
                let subs = match req.body.children().find(|c| c.name() == "AddSubscription") {
                    Some(list) => Subscription::parse_list(list)?,
                    None => Vec::new(),
                };
                let subs = {
                    let mut sessions = self.sessions();
                    let session = sessions.touch(from, &user.name);
                    session.subscriptions.clear();
                    sessions::add(&mut session.subscriptions, subs, user.supervisor)?;
                    session.subscriptions.clone()
                };
                Ok(self.user_info(user, &subs))
            }
            ("xmppuser", "FindUserInfo") => {
                let asked = req.attr("jid").trim();
                let other = if asked.is_empty() {
                    user.clone()
                } else {
                    let jid =
                        BareJid::new(asked).map_err(|e| format!("invalid jid {asked:?}: {e}"))?;
                    self.user_of(&jid)
                        .ok_or_else(|| format!("{asked} is not a user of this PBX"))?
                };
                if other.name != user.name && !user.supervisor {
                    return Err("only a supervisor may ask about other users".into());
                }
                let subs = if other.name == user.name {
                    let mut sessions = self.sessions();
                    sessions.touch(from, &user.name).subscriptions.clone()
                } else {
                    Vec::new()
                };
                Ok(self.user_info(&other, &subs))
            }
            ("event", "AddSubscription" | "RemoveSubscription") => {
                let list = Subscription::parse_list(&req.body)?;
                let mut sessions = self.sessions();
                let session = sessions.touch(from, &user.name);
                if req.name == "AddSubscription" {
                    sessions::add(&mut session.subscriptions, list, user.supervisor)?;
                } else {
                    sessions::remove(&mut session.subscriptions, list, user.supervisor);
                }
                Ok(pascom::cmd(
                    "event",
                    pascom::subscription_list(&session.subscriptions),
                ))
            }
            ("queue", name) => {
                self.sessions().touch(from, &user.name);
                self.queue_command(user, name, req).await
            }
            _ => Err(format!("unknown command {}", req.full_name())),
        }
    }

    pub(super) fn user_info(&self, user: &User, subs: &[Subscription]) -> Element {
        let mut roles = Vec::new();
        if user.admin {
            roles.push(("admin".to_owned(), true));
        } else if user.supervisor {
            roles.push(("supervisor".to_owned(), true));
        }
        let who = Identity {
            name: user.name.clone(),
            full_name: user.display_name.clone(),
            extension: user.number().to_owned(),
            roles,
        };
        let states = self.hub.read(|s| events::own_states(s, user));
        pascom::user_info(&who, &states, subs)
    }

    pub(super) async fn queue_command(
        &self,
        user: &Arc<User>,
        name: &str,
        req: &Request,
    ) -> Result<Element, String> {
        let who = Principal::User(user.clone());
        let dir = self.access.directory();
        match name {
            "FindOwnState" => self.hub.read(|s| {
                link_up(s, &user.server)?;
                let states = events::own_states(s, user);
                Ok(pascom::cmd("queue", pascom::member_states(&states)))
            }),
            "FindQueueState" => self.hub.read(|s| {
                let q = find_queue(s, user, req.attr("name"))?;
                link_up(s, &q.server)?;
                if !who.can_see(q) {
                    return Err(format!("{} is not a member of queue {}", user.name, q.name));
                }
                let calls: Vec<_> = q
                    .waiting()
                    .map(|w| events::call_entry(w.position, w.caller))
                    .collect();
                let members = events::queue_members(&dir, q);
                let qref = QueueRef {
                    id: q.id,
                    name: q.name.to_string(),
                };
                Ok(pascom::queue_state(
                    &qref,
                    &calls,
                    &members,
                    dir.pause_reasons(),
                ))
            }),
            "AgentLogin" | "AgentLogout" | "AgentPause" | "AgentUnpause" => {
                let (queue, command) = self.hub.read(|s| {
                    let q = find_queue(s, user, req.attr("queue"))?;
                    link_up(s, &q.server)?;
                    agent_command(user, q, name, req)
                })?;
                let server = user.server.clone();
                match self.commands.execute(&who, &server, command).await {
                    Ok(_) => Ok(pascom::success()),
                    Err(e) => Err(format!(
                        "{} in queue {queue}: {}",
                        req.full_name(),
                        e.message
                    )),
                }
            }
            _ => Err(format!("unknown command {}", req.full_name())),
        }
    }
}

/// `Err` with the reason when the server's AMI link is down: nothing is answered from a state
/// that may be stale, and nothing is sent.
pub(super) fn link_up(state: &State, server: &str) -> Result<(), String> {
    let link = state.servers.get(server).map(|s| &s.link);
    match link {
        Some(l) if l.connected => Ok(()),
        Some(l) => Err(format!(
            "the PBX is unreachable: AMI link to {server} is down ({})",
            l.reason.as_deref().unwrap_or("not connected")
        )),
        None => Err(format!("the PBX is unreachable: no AMI link to {server}")),
    }
}

/// The queue a user means by `name`: on their own server first, exactly or ignoring case as
/// Asterisk does; supervisors also on other servers.
pub(super) fn find_queue<'s>(
    state: &'s State,
    user: &User,
    name: &str,
) -> Result<&'s Queue, String> {
    let name = name.trim();
    if name.is_empty() {
        return Err("no queue given".into());
    }
    let own = state.servers.get(user.server.as_str()).into_iter();
    let others = state
        .servers
        .values()
        .filter(|s| user.supervisor && *s.id != *user.server);
    for server in own.chain(others) {
        if let Some(q) = server.queues.get(name) {
            return Ok(q);
        }
        if let Some(q) = server
            .queues
            .values()
            .find(|q| q.name.eq_ignore_ascii_case(name))
        {
            return Ok(q);
        }
    }
    Err(format!("no queue {name}"))
}

/// The command-layer command for an agent command of the queue module, with the seed's
/// preconditions: log in only when not logged in, log out and pause only when logged in (or
/// static), unpause only when paused. Who may do what is the command layer's decision.
pub(super) fn agent_command(
    user: &User,
    q: &Queue,
    name: &str,
    req: &Request,
) -> Result<(String, Command), String> {
    user.agent_interface()?;
    if *q.server != *user.server {
        return Err(format!("queue {} is not on {}'s PBX", q.name, user.name));
    }
    let queue = q.name.to_string();
    let member = q.members.get(&user.interface);
    let command = match (name, member) {
        ("AgentLogin", Some(_)) => {
            return Err(format!(
                "{} is already logged in to queue {queue}",
                user.name
            ))
        }
        ("AgentLogin", None) => {
            let penalty =
                match req.attr("penalty").trim() {
                    "" => None,
                    p => Some(p.parse::<i64>().ok().filter(|p| *p >= 0).ok_or_else(|| {
                        format!("invalid penalty {p:?}: a whole number, 0 or more")
                    })?),
                };
            Command::login(user, queue.clone(), penalty, None)
        }
        (_, None) => return Err(format!("{} is not logged in to queue {queue}", user.name)),
        ("AgentLogout", Some(_)) => Command::Logout {
            queue: queue.clone(),
            interface: user.interface.clone(),
        },
        ("AgentUnpause", Some(m)) if !m.paused => {
            return Err(format!("{} is not paused in queue {queue}", user.name))
        }
        (_, Some(_)) => Command::Pause {
            queue: Some(queue.clone()),
            interface: user.interface.clone(),
            paused: name == "AgentPause",
            reason: req.attr("reason").to_owned(),
        },
    };
    Ok((queue, command))
}
