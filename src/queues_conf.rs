//! Queue definitions changed through Asterisk itself: queues.conf read with AMI `GetConfig`,
//! written with `UpdateConfig`, made live with `Reload` of app_queue.
//!
//! queuebridge writes only [`MANAGED_FILE`], which queues.conf includes (`#include
//! queuebridge-queues.conf`, shipped in asterisk-conf/); queues defined in queues.conf itself
//! are read but never changed. A change is answered only when Asterisk confirms it: the file was
//! saved, app_queue reloaded, and the state — resynced from QueueStatus after the reload — shows
//! the queue there (with its strategy, limits and static members) or gone.
//!
//! What queues.conf has no option for is kept in Asterisk's AstDB ([`Attribute`]): the longest
//! wait of a caller — an argument of `Queue()`, which the shipped dialplan reads from there —
//! and a display name.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::ami::client::ActionError;
use crate::ami::demux::Reply;
use crate::ami::Message;
use crate::hub::Hub;
use crate::servers::Servers;
use crate::state::{Queue, State};

/// The file queuebridge owns; queues.conf includes it.
pub const MANAGED_FILE: &str = "queuebridge-queues.conf";
/// AstDB family of the queue attributes Asterisk keeps outside queues.conf.
pub const DB_FAMILY: &str = "queuebridge";

/// A queue attribute kept in AstDB, as `queuebridge/<attribute>/<queue>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attribute {
    /// The display name, when it differs from the queue's name.
    Name,
    /// The longest wait of a caller in seconds: the dialplan passes it to `Queue()`.
    MaxWaitingTime,
}

impl Attribute {
    pub const ALL: [Attribute; 2] = [Attribute::Name, Attribute::MaxWaitingTime];

    pub fn key(self) -> &'static str {
        match self {
            Attribute::Name => "name",
            Attribute::MaxWaitingTime => "max_waiting_time",
        }
    }
}
/// How long a reload may take to show in the state.
const SETTLE: Duration = Duration::from_secs(10);

/// How long a definition change waits for the one before it; then it is refused as busy.
pub const EXCLUSIVE_WAIT: Duration = Duration::from_secs(15);

/// How long one read of a server's definitions and attributes (three AMI actions: GetConfig
/// twice, DBGetTree) serves the list requests that follow; one read is made at a time per
/// server, however many requests wait for it. A change made through queuebridge clears it at
/// once; one made by hand in queues.conf shows within this time.
pub const READ_CACHE: Duration = Duration::from_secs(2);

/// A server's queue definitions and their AstDB attributes, read together.
#[derive(Debug, Default)]
pub struct Definitions {
    pub queues: BTreeMap<String, QueueConf>,
    pub attributes: Attributes,
}

type CacheSlot = Arc<tokio::sync::Mutex<Option<(Instant, Arc<Definitions>)>>>;

/// A static member line: `member => interface,penalty,membername,state_interface`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StaticMember {
    pub interface: String,
    pub penalty: i64,
    pub name: String,
    pub state_interface: String,
}

impl StaticMember {
    fn parse(value: &str) -> Self {
        let mut parts = value.split(',').map(str::trim);
        StaticMember {
            interface: parts.next().unwrap_or_default().to_owned(),
            penalty: parts.next().and_then(|p| p.parse().ok()).unwrap_or(0),
            name: parts.next().unwrap_or_default().to_owned(),
            state_interface: parts.next().unwrap_or_default().to_owned(),
        }
    }

    /// The line's value; a comma in the name would start the next field, so it becomes a
    /// space.
    fn line(&self) -> String {
        format!(
            "{},{},{},{}",
            self.interface,
            self.penalty,
            self.name.replace(',', " "),
            self.state_interface
        )
    }
}

/// One queue's definition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueConf {
    /// Options in file order, `member` lines excluded.
    pub options: Vec<(String, String)>,
    pub members: Vec<StaticMember>,
    /// Defined in [`MANAGED_FILE`], so queuebridge may change it.
    pub managed: bool,
}

impl QueueConf {
    /// The value of an option (the last one wins, as in app_queue).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.options
            .iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    /// Sets an option, replacing earlier values.
    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        self.options.retain(|(k, _)| !k.eq_ignore_ascii_case(key));
        self.options.push((key.to_owned(), value.into()));
    }
}

/// Why a change was not made.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfError {
    #[error("{0}")]
    NotConnected(String),
    #[error("queue {0:?} exists already")]
    Exists(String),
    #[error("no queue {0:?}")]
    NotFound(String),
    #[error("queue {0:?} is defined in queues.conf, not by queuebridge, and is left as it is")]
    NotManaged(String),
    #[error("Asterisk refused {action}: {message}")]
    Refused { action: String, message: String },
    #[error("{0}")]
    Timeout(String),
    /// Another change held the definitions too long: nothing was done.
    #[error("{0}")]
    Busy(String),
}

fn refused(action: &str, reply: &Reply) -> ConfError {
    ConfError::Refused {
        action: action.to_owned(),
        message: reply.message().to_owned(),
    }
}

/// Reads and changes queue definitions on the servers.
#[derive(Clone)]
pub struct QueuesConf {
    servers: Arc<Servers>,
    hub: Arc<Hub>,
    /// One definition change at a time (see [`Exclusive`]).
    changing: Arc<tokio::sync::Mutex<()>>,
    /// The last [`Definitions`] read per server (see [`READ_CACHE`]).
    cache: Arc<std::sync::Mutex<std::collections::HashMap<String, CacheSlot>>>,
}

/// The right to change queue definitions, held from reading a definition to Asterisk's
/// confirmation of the new one. Changes are read-modify-write over several AMI actions (and a
/// reload of app_queue), so two at once could both pass "no such queue yet" or each write back
/// what it read, losing the other's change; [`QueuesConf::create`], [`QueuesConf::replace`] and
/// [`QueuesConf::destroy`] take it as proof that nobody else is changing anything.
pub struct Exclusive(#[allow(dead_code)] tokio::sync::OwnedMutexGuard<()>);

/// `key=value` lines of a category, in file order.
type Lines = Vec<(String, String)>;

/// Queue attributes from AstDB: queue → attribute → value.
pub type Attributes = BTreeMap<String, BTreeMap<String, String>>;

/// The categories of a GetConfig reply: name → (is template, lines).
fn categories(reply: &Reply) -> BTreeMap<String, (bool, Lines)> {
    let mut by_index: BTreeMap<String, (String, bool, Lines)> = BTreeMap::new();
    for (k, v) in reply.response.headers() {
        if let Some(i) = k.strip_prefix("Category-") {
            by_index.entry(i.to_owned()).or_default().0 = v.to_owned();
        } else if let Some(i) = k.strip_prefix("IsTemplate-") {
            by_index.entry(i.to_owned()).or_default().1 = v == "1";
        } else if let Some(rest) = k.strip_prefix("Line-") {
            let Some((i, _)) = rest.split_once('-') else {
                continue;
            };
            if let Some((key, value)) = v.split_once('=') {
                by_index
                    .entry(i.to_owned())
                    .or_default()
                    .2
                    .push((key.trim().to_owned(), value.trim().to_owned()));
            }
        }
    }
    by_index
        .into_values()
        .filter(|(name, _, _)| !name.is_empty())
        .map(|(name, template, lines)| (name, (template, lines)))
        .collect()
}

impl QueuesConf {
    pub fn new(servers: Arc<Servers>, hub: Arc<Hub>) -> Self {
        Self {
            servers,
            hub,
            changing: Arc::new(tokio::sync::Mutex::new(())),
            cache: Arc::default(),
        }
    }

    fn slot(&self, server: &str) -> CacheSlot {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(server.to_owned())
            .or_default()
            .clone()
    }

    /// Forgets what was read of `server` (after a change made here).
    fn forget(&self, server: &str) {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(server);
    }

    /// The server's definitions and attributes for listing: read at most once per
    /// [`READ_CACHE`], by one request while the others wait for it. Changes read afresh
    /// ([`QueuesConf::managed`], [`QueuesConf::create`]).
    pub async fn definitions(&self, server: &str) -> Result<Arc<Definitions>, ConfError> {
        let slot = self.slot(server);
        let mut cached = slot.lock().await;
        if let Some((at, d)) = cached.as_ref() {
            if at.elapsed() < READ_CACHE {
                return Ok(d.clone());
            }
        }
        let d = Arc::new(Definitions {
            queues: self.read(server).await?,
            attributes: self.attributes(server).await?,
        });
        *cached = Some((Instant::now(), d.clone()));
        Ok(d)
    }

    /// Waits until no other definition change is under way, for at most [`EXCLUSIVE_WAIT`];
    /// hold the answer across the read of the definition and its change.
    pub async fn exclusive(&self) -> Result<Exclusive, ConfError> {
        tokio::time::timeout(EXCLUSIVE_WAIT, self.changing.clone().lock_owned())
            .await
            .map(Exclusive)
            .map_err(|_| {
                ConfError::Busy(format!(
                    "another queue definition change is still under way after {} s; try again",
                    EXCLUSIVE_WAIT.as_secs()
                ))
            })
    }

    async fn send(&self, server: &str, action: Message) -> Result<Reply, ConfError> {
        let handle = self
            .servers
            .handle(server)
            .ok_or_else(|| ConfError::NotConnected(format!("server {server} is not running")))?;
        handle.send(action).await.map_err(|e| match e {
            ActionError::Timeout | ActionError::ConnectionLost => ConfError::Timeout(e.to_string()),
            _ => ConfError::NotConnected(e.to_string()),
        })
    }

    /// Every queue definition of the server: queues.conf with what it includes.
    pub async fn read(&self, server: &str) -> Result<BTreeMap<String, QueueConf>, ConfError> {
        let all = self
            .send(
                server,
                Message::action("GetConfig").with("Filename", "queues.conf"),
            )
            .await?;
        if !all.is_success() {
            return Err(refused("GetConfig queues.conf", &all));
        }
        let managed = self
            .send(
                server,
                Message::action("GetConfig").with("Filename", MANAGED_FILE),
            )
            .await?;
        let managed = if managed.is_success() {
            categories(&managed)
        } else {
            BTreeMap::new()
        };
        Ok(categories(&all)
            .into_iter()
            .filter(|(name, (template, _))| !template && name != "general")
            .map(|(name, (_, lines))| {
                let mut conf = QueueConf {
                    managed: managed.contains_key(&name),
                    ..QueueConf::default()
                };
                for (k, v) in lines {
                    if k.eq_ignore_ascii_case("member") {
                        conf.members.push(StaticMember::parse(&v));
                    } else {
                        conf.options.push((k, v));
                    }
                }
                (name, conf)
            })
            .collect())
    }

    /// One queue's definition.
    pub async fn get(&self, server: &str, name: &str) -> Result<QueueConf, ConfError> {
        self.read(server)
            .await?
            .remove(name)
            .ok_or_else(|| ConfError::NotFound(name.to_owned()))
    }

    /// Defines a new queue — its AstDB attributes first, so the dialplan has them from the
    /// first call — and waits until Asterisk runs it. A queue of that name, in the files or
    /// still running, is left untouched.
    pub async fn create(
        &self,
        _: &Exclusive,
        server: &str,
        name: &str,
        conf: &QueueConf,
        attributes: &[(Attribute, Option<String>)],
    ) -> Result<(), ConfError> {
        if self.read(server).await?.contains_key(name)
            || self.hub.read(|s| s.queue(server, name).is_some())
        {
            return Err(ConfError::Exists(name.to_owned()));
        }
        self.store(server, name, conf, attributes, false).await
    }

    /// Replaces the definition (options and static members) of a managed queue, as read with
    /// [`QueuesConf::managed`], and sets its AstDB attributes.
    pub async fn replace(
        &self,
        _: &Exclusive,
        server: &str,
        name: &str,
        conf: &QueueConf,
        attributes: &[(Attribute, Option<String>)],
    ) -> Result<(), ConfError> {
        if !conf.managed {
            return Err(ConfError::NotManaged(name.to_owned()));
        }
        self.store(server, name, conf, attributes, true).await
    }

    /// Sets the AstDB attributes, writes the definition (`existing`: in place of the old one)
    /// and waits until Asterisk shows the queue as defined.
    async fn store(
        &self,
        server: &str,
        name: &str,
        conf: &QueueConf,
        attributes: &[(Attribute, Option<String>)],
        existing: bool,
    ) -> Result<(), ConfError> {
        self.set_attributes(server, name, attributes).await?;
        self.write(server, name, conf, existing).await?;
        let what = if existing { "change" } else { "appear" };
        self.settle(server, &format!("queue {name} to {what}"), |s| {
            s.queue(server, name).is_some_and(|q| shows(q, conf))
        })
        .await
    }

    /// Removes a managed queue and waits until Asterisk dropped it (app_queue keeps a queue
    /// while callers wait in it).
    pub async fn destroy(&self, _: &Exclusive, server: &str, name: &str) -> Result<(), ConfError> {
        self.managed(server, name).await?;
        let action = Message::action("UpdateConfig")
            .with("SrcFilename", MANAGED_FILE)
            .with("DstFilename", MANAGED_FILE)
            .with("Reload", "no")
            .with("Action-000000", "DelCat")
            .with("Cat-000000", name);
        let reply = self.send(server, action).await?;
        if !reply.is_success() {
            return Err(refused("UpdateConfig", &reply));
        }
        self.reload(server).await?;
        for attr in Attribute::ALL {
            self.set_attribute(server, name, attr, None).await?;
        }
        self.settle(server, &format!("queue {name} to go"), |s| {
            s.queue(server, name).is_none()
        })
        .await
    }

    /// The definition of a queue queuebridge may change (one of [`MANAGED_FILE`]).
    pub async fn managed(&self, server: &str, name: &str) -> Result<QueueConf, ConfError> {
        let conf = self.get(server, name).await?;
        if conf.managed {
            Ok(conf)
        } else {
            Err(ConfError::NotManaged(name.to_owned()))
        }
    }

    async fn write(
        &self,
        server: &str,
        name: &str,
        conf: &QueueConf,
        replace: bool,
    ) -> Result<(), ConfError> {
        let mut action = Message::action("UpdateConfig")
            .with("SrcFilename", MANAGED_FILE)
            .with("DstFilename", MANAGED_FILE)
            .with("Reload", "no");
        let mut n = 0usize;
        let mut step = |action: &mut Message, what: &str, var: Option<(&str, &str)>| {
            let i = format!("{n:06}");
            action.push(&format!("Action-{i}"), what);
            action.push(&format!("Cat-{i}"), name);
            if let Some((k, v)) = var {
                action.push(&format!("Var-{i}"), k);
                action.push(&format!("Value-{i}"), v);
            }
            n += 1;
        };
        if replace {
            step(&mut action, "DelCat", None);
        }
        step(&mut action, "NewCat", None);
        for (k, v) in &conf.options {
            step(&mut action, "Append", Some((k, v)));
        }
        for m in &conf.members {
            step(&mut action, "Append", Some(("member", &m.line())));
        }
        let reply = self.send(server, action).await?;
        if !reply.is_success() {
            return Err(refused("UpdateConfig", &reply));
        }
        self.reload(server).await
    }

    async fn reload(&self, server: &str) -> Result<(), ConfError> {
        self.forget(server);
        let reply = self
            .send(
                server,
                Message::action("Reload").with("Module", "app_queue"),
            )
            .await?;
        if reply.is_success() {
            Ok(())
        } else {
            Err(refused("Reload app_queue", &reply))
        }
    }

    /// Waits until the state (resynced after the reload) satisfies `done`.
    async fn settle(
        &self,
        server: &str,
        what: &str,
        done: impl Fn(&State) -> bool,
    ) -> Result<(), ConfError> {
        let mut changes = self.hub.subscribe();
        let deadline = Instant::now() + SETTLE;
        if self.hub.wait_for(&mut changes, deadline, done).await {
            Ok(())
        } else {
            Err(ConfError::Timeout(format!(
                "Asterisk saved the change on {server} but QueueStatus did not show {what} \
                 within {} s",
                SETTLE.as_secs()
            )))
        }
    }

    /// The queues' attributes kept in AstDB: queue → attribute → value.
    pub async fn attributes(&self, server: &str) -> Result<Attributes, ConfError> {
        let reply = self
            .send(
                server,
                Message::action("DBGetTree").with("Family", DB_FAMILY),
            )
            .await?;
        if !reply.is_success() {
            return Err(refused("DBGetTree", &reply));
        }
        let mut out = Attributes::new();
        for item in &reply.items {
            let (Some(key), Some(val)) = (item.get("Key"), item.get("Val")) else {
                continue;
            };
            // `/queuebridge/<attribute>/<queue>`
            let mut parts = key.trim_start_matches('/').splitn(3, '/');
            if let (Some(DB_FAMILY), Some(attr), Some(queue)) =
                (parts.next(), parts.next(), parts.next())
            {
                out.entry(queue.to_owned())
                    .or_default()
                    .insert(attr.to_owned(), val.to_owned());
            }
        }
        Ok(out)
    }

    async fn set_attributes(
        &self,
        server: &str,
        queue: &str,
        attributes: &[(Attribute, Option<String>)],
    ) -> Result<(), ConfError> {
        for (attr, value) in attributes {
            self.set_attribute(server, queue, *attr, value.as_deref())
                .await?;
        }
        Ok(())
    }

    /// Sets (or, with `None`, removes) one attribute of a queue in AstDB.
    pub async fn set_attribute(
        &self,
        server: &str,
        queue: &str,
        attr: Attribute,
        value: Option<&str>,
    ) -> Result<(), ConfError> {
        self.forget(server);
        let family = format!("{DB_FAMILY}/{}", attr.key());
        let action = match value {
            Some(v) => Message::action("DBPut")
                .with("Family", &family)
                .with("Key", queue)
                .with("Val", v),
            None => Message::action("DBDel")
                .with("Family", &family)
                .with("Key", queue),
        };
        let reply = self.send(server, action).await?;
        // Deleting what is not there is done.
        if reply.is_success() || value.is_none() {
            Ok(())
        } else {
            Err(refused("DBPut", &reply))
        }
    }
}

/// Whether QueueStatus shows a definition: what it reports of one (strategy, maxlen, service
/// level, weight) and exactly the static members.
fn shows(q: &Queue, conf: &QueueConf) -> bool {
    let num = |key: &str| {
        conf.get(key)
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(0)
    };
    let strategy = conf.get("strategy").unwrap_or("ringall");
    let mut statics: Vec<&str> = q
        .members
        .values()
        .filter(|m| m.membership.is_static())
        .map(|m| m.interface.as_str())
        .collect();
    let mut wanted: Vec<&str> = conf.members.iter().map(|m| m.interface.as_str()).collect();
    statics.sort_unstable();
    wanted.sort_unstable();
    q.stats.strategy.eq_ignore_ascii_case(strategy)
        && q.stats.max == num("maxlen")
        && q.stats.service_level == num("servicelevel")
        && statics == wanted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_config_replies_become_definitions() {
        let reply = Reply {
            response: Message::new()
                .with("Response", "Success")
                .with("Category-000000", "general")
                .with("Line-000000-000000", "persistentmembers=no")
                .with("Category-000001", "8001")
                .with("Line-000001-000000", "strategy=linear")
                .with(
                    "Line-000001-000001",
                    "member=Local/agent1@agents/n,2,Agent One,Custom:agent1",
                )
                .with("Category-000002", "tpl")
                .with("IsTemplate-000002", "1"),
            items: Vec::new(),
        };
        let cats = categories(&reply);
        assert_eq!(cats.len(), 3);
        assert!(cats["tpl"].0);
        let (_, lines) = &cats["8001"];
        assert_eq!(lines[0], ("strategy".into(), "linear".into()));
        let m = StaticMember::parse(&lines[1].1);
        assert_eq!(m.penalty, 2);
        assert_eq!(m.state_interface, "Custom:agent1");
        assert_eq!(m.line(), "Local/agent1@agents/n,2,Agent One,Custom:agent1");
        let comma = StaticMember {
            name: "Weber, Thomas".into(),
            ..m
        };
        assert_eq!(
            comma.line(),
            "Local/agent1@agents/n,2,Weber  Thomas,Custom:agent1"
        );
    }

    #[test]
    fn options_keep_their_last_value() {
        let mut c = QueueConf::default();
        c.set("timeout", "20");
        c.set("Timeout", "30");
        assert_eq!(c.options.len(), 1);
        assert_eq!(c.get("timeout"), Some("30"));
    }
}
