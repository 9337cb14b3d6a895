//! Users, roles, pause reasons, and the one authorization module every front end asks.
//!
//! The rules (the pascom queue module's, applied to every dialect):
//!
//! * a **supervisor** sees every queue and acts on every member;
//! * an **agent** sees the queues they belong to — where their interface is a member now, or a
//!   queue listed in their `queues` (where they may log in as a dynamic agent) — and acts only
//!   on their own member entries: log in to one of their `queues`, log out of a queue where they
//!   are a dynamic member, pause and unpause where they are a member; changing a penalty is a
//!   supervisor's decision;
//! * the **service** principal (the native API's bearer token) has a supervisor's rights.
//!
//! The directory is reloadable: [`Access::replace`] swaps it atomically; requests already running
//! keep the directory they started with.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use argon2::password_hash::{rand_core::OsRng, PasswordHash, SaltString};
use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use serde::{Deserialize, Serialize};

use crate::state::{Queue, State};

/// One `[[users]]` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// Login name (also the XMPP local part).
    pub name: String,
    /// An argon2 PHC string, as `queuebridge hash-password` prints it.
    pub password_hash: String,
    /// The member interface in Asterisk, e.g. `Local/340@agents/n`. Only agents have one: a
    /// supervisor or admin without it watches and manages but is never a member.
    #[serde(default)]
    pub interface: Option<String>,
    /// The device whose state Asterisk follows; defaults to `interface`.
    #[serde(default)]
    pub state_interface: Option<String>,
    /// Shown to others; defaults to `name`.
    #[serde(default)]
    pub display_name: Option<String>,
    /// The user's extension number; defaults to empty.
    #[serde(default)]
    pub extension: Option<String>,
    /// `supervisor`, `admin` (a supervisor who also manages queues and servers), or none for
    /// an agent.
    #[serde(default)]
    pub roles: Vec<String>,
    /// The `[[ami]]` server the user works on; defaults to the first one.
    #[serde(default)]
    pub server: Option<String>,
    /// Queues the user may log in to as a dynamic agent.
    #[serde(default)]
    pub queues: Vec<String>,
    /// The penalty the user logs in with; 0 when absent. Only a supervisor may log someone in
    /// with another one.
    #[serde(default)]
    pub penalty: Option<i64>,
}

/// One `[[pause_reasons]]` entry.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PauseReason {
    /// Feature code, e.g. `*01` (Yeastar's `code`).
    pub code: String,
    /// The text Asterisk stores as the member's `PausedReason`.
    pub reason: String,
}

/// A configured user, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub password_hash: String,
    /// The member interface; empty for a user who is not an agent ([`User::is_agent`]).
    pub interface: String,
    pub state_interface: String,
    pub display_name: String,
    pub extension: String,
    pub supervisor: bool,
    /// Manages queues and queue servers (PortSIP's `Admin`); implies supervisor.
    pub admin: bool,
    pub server: String,
    pub queues: BTreeSet<String>,
    /// The penalty the user logs in with.
    pub penalty: i64,
}

impl User {
    /// Whether the user has a member interface, and so can be logged in, paused or given calls.
    pub fn is_agent(&self) -> bool {
        !self.interface.is_empty()
    }

    /// The user's member interface, or why they have none: the failure an agent command for a
    /// user who only watches or manages gets.
    pub fn agent_interface(&self) -> Result<&str, String> {
        if self.is_agent() {
            Ok(&self.interface)
        } else {
            Err(format!(
                "{} is not an agent: no member interface is configured for them",
                self.name
            ))
        }
    }

    /// The user's extension number: `extension`, else the one in the interface.
    pub fn number(&self) -> &str {
        if self.extension.is_empty() {
            extension_of(&self.interface)
        } else {
            &self.extension
        }
    }
}

impl User {
    /// Whether the user belongs to queue `queue` of `server`: it is one of their `queues`, or
    /// their interface is a member of it (`is_member`).
    pub fn belongs_to(&self, server: &str, queue: &str, is_member: bool) -> bool {
        self.server == server && (is_member || self.queues.contains(queue))
    }
}

/// The extension number of an interface: `PJSIP/201` → `201`, `Local/340@agents/n` → `340`.
pub fn extension_of(interface: &str) -> &str {
    let rest = interface.split_once('/').map_or(interface, |(_, r)| r);
    rest.split(['@', '/']).next().unwrap_or(rest)
}

/// Who is asking.
#[derive(Clone, Debug)]
pub enum Principal {
    /// The native API's bearer token: a supervisor's rights, no member entry of its own.
    Service,
    User(Arc<User>),
}

/// Why a directory could not be built; `key` names the offending configuration key.
#[derive(Debug, PartialEq, Eq)]
pub struct DirectoryError {
    pub key: String,
    pub message: String,
}

/// Users and pause reasons, as loaded from one version of the configuration.
#[derive(Clone, Debug, Default)]
pub struct Directory {
    users: BTreeMap<String, Arc<User>>,
    /// Agents by server, then member interface: every fan-out names members by interface.
    by_interface: HashMap<String, HashMap<String, Arc<User>>>,
    /// Agents by server, then each queue they are configured for.
    by_queue: HashMap<String, HashMap<String, Vec<Arc<User>>>>,
    /// The users with the supervisor role (admins too).
    supervisors: Vec<Arc<User>>,
    pause_reasons: Vec<PauseReason>,
}

/// What a member entry is to the user asking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Login,
    Logout,
    Pause,
    Penalty,
    /// Take a chosen waiting caller of the queue to one's own interface.
    Pickup,
}

impl Directory {
    /// Resolves the configured users; `servers` are the `[[ami]]` ids, the first the default.
    pub fn new(
        users: &[UserConfig],
        pause_reasons: &[PauseReason],
        servers: &[&str],
    ) -> Result<Self, DirectoryError> {
        let err = |key: String, message: &str| DirectoryError {
            key,
            message: message.to_owned(),
        };
        let mut by_name = BTreeMap::new();
        let mut interfaces = BTreeSet::new();
        for (i, u) in users.iter().enumerate() {
            let key = |k: &str| format!("users[{i}].{k}");
            if u.name.is_empty()
                || !u
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
            {
                return Err(err(
                    key("name"),
                    "must be non-empty: letters, digits, . _ -",
                ));
            }
            if PasswordHash::new(&u.password_hash).is_err() {
                return Err(err(
                    key("password_hash"),
                    "is not a PHC hash string; make one with `queuebridge hash-password`",
                ));
            }
            let interface = u.interface.clone().unwrap_or_default();
            let watcher = u.roles.iter().any(|r| r == "supervisor" || r == "admin");
            if interface.trim().is_empty() && (u.interface.is_some() || !watcher) {
                return Err(err(
                    key("interface"),
                    "must be a member interface such as PJSIP/201 (only a supervisor or admin \
                     may have none)",
                ));
            }
            if interface.is_empty() && !u.queues.is_empty() {
                return Err(err(
                    key("queues"),
                    "needs an interface: only an agent can log in to a queue",
                ));
            }
            if interface.is_empty() && u.state_interface.is_some() {
                return Err(err(key("state_interface"), "needs an interface"));
            }
            if u.penalty.is_some_and(|p| !(0..=1_000_000).contains(&p)) {
                return Err(err(key("penalty"), "must be between 0 and 1000000"));
            }
            let server = match &u.server {
                Some(s) if servers.contains(&s.as_str()) => s.clone(),
                Some(_) => return Err(err(key("server"), "names no [[ami]] id")),
                None => servers.first().map(|s| (*s).to_owned()).unwrap_or_default(),
            };
            if !interface.is_empty() && !interfaces.insert((server.clone(), interface.clone())) {
                return Err(err(key("interface"), "is already another user's interface"));
            }
            let (mut supervisor, mut admin) = (false, false);
            for (j, role) in u.roles.iter().enumerate() {
                match role.as_str() {
                    "supervisor" => supervisor = true,
                    "admin" => (supervisor, admin) = (true, true),
                    _ => {
                        return Err(err(
                            format!("users[{i}].roles[{j}]"),
                            "unknown role (known: supervisor, admin)",
                        ))
                    }
                }
            }
            let user = User {
                name: u.name.clone(),
                password_hash: u.password_hash.clone(),
                state_interface: u.state_interface.clone().unwrap_or(interface.clone()),
                interface,
                display_name: u.display_name.clone().unwrap_or(u.name.clone()),
                extension: u.extension.clone().unwrap_or_default(),
                supervisor,
                admin,
                server,
                queues: u.queues.iter().cloned().collect(),
                penalty: u.penalty.unwrap_or(0),
            };
            if by_name.insert(u.name.clone(), Arc::new(user)).is_some() {
                return Err(err(key("name"), "duplicate user name"));
            }
        }
        let mut codes = BTreeSet::new();
        for (i, p) in pause_reasons.iter().enumerate() {
            if p.code.is_empty() || !codes.insert(p.code.as_str()) {
                return Err(err(
                    format!("pause_reasons[{i}].code"),
                    "must be non-empty and unique",
                ));
            }
            if p.reason.trim().is_empty()
                || p.reason.len() > MAX_PAUSE_REASON
                || p.reason.contains(['\r', '\n'])
                || p.reason.trim() != p.reason
            {
                return Err(err(
                    format!("pause_reasons[{i}].reason"),
                    "must be one line of 1 to 79 bytes, without leading or trailing spaces \
                     (what Asterisk stores)",
                ));
            }
        }
        let mut by_interface: HashMap<String, HashMap<String, Arc<User>>> = HashMap::new();
        let mut by_queue: HashMap<String, HashMap<String, Vec<Arc<User>>>> = HashMap::new();
        for u in by_name.values().filter(|u| u.is_agent()) {
            by_interface
                .entry(u.server.clone())
                .or_default()
                .entry(u.interface.clone())
                .or_insert_with(|| u.clone());
            let queues = by_queue.entry(u.server.clone()).or_default();
            for q in &u.queues {
                queues.entry(q.clone()).or_default().push(u.clone());
            }
        }
        let supervisors = by_name.values().filter(|u| u.supervisor).cloned().collect();
        Ok(Self {
            users: by_name,
            by_interface,
            by_queue,
            supervisors,
            pause_reasons: pause_reasons.to_vec(),
        })
    }

    /// The user with this login name.
    pub fn user(&self, name: &str) -> Option<&Arc<User>> {
        self.users.get(name)
    }

    /// Every user, by name.
    pub fn users(&self) -> impl Iterator<Item = &Arc<User>> {
        self.users.values()
    }

    /// The agents configured for `queue` on `server` (its `queues` list names it).
    pub fn configured_for(&self, server: &str, queue: &str) -> &[Arc<User>] {
        self.by_queue
            .get(server)
            .and_then(|q| q.get(queue))
            .map_or(&[], Vec::as_slice)
    }

    /// The users with the supervisor role, admins included.
    pub fn supervisors(&self) -> &[Arc<User>] {
        &self.supervisors
    }

    /// The user whose member interface this is on `server`.
    pub fn by_interface(&self, server: &str, interface: &str) -> Option<&Arc<User>> {
        if interface.is_empty() {
            return None;
        }
        self.by_interface.get(server)?.get(interface)
    }

    /// The extension number of the member at `interface` on `server`: its user's number, else
    /// the one in the interface (`Local/204@agents/n` → 204).
    pub fn agent_number(&self, server: &str, interface: &str) -> String {
        self.by_interface(server, interface)
            .map_or_else(|| extension_of(interface), |u| u.number())
            .to_owned()
    }

    /// The user if `password` is theirs. Runs argon2: call it off the async reactor (through
    /// [`crate::http::auth::Logins`], which bounds and throttles it).
    ///
    /// An unknown name costs the same argon2 run against a hash of nobody's password, so the
    /// answer's timing does not tell whether a user exists.
    pub fn authenticate(&self, name: &str, password: &str) -> Option<Arc<User>> {
        let user = self.users.get(name);
        let phc = user.map_or(NOBODY.as_str(), |u| u.password_hash.as_str());
        let hash = PasswordHash::new(phc).ok()?;
        let ok = Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok();
        user.filter(|_| ok).cloned()
    }

    /// The login name of a user given by name or by extension number (PortSIP accepts both).
    pub fn login_name<'a>(&'a self, given: &'a str) -> &'a str {
        if self.users.contains_key(given) {
            return given;
        }
        self.users
            .values()
            .find(|u| !u.number().is_empty() && u.number() == given)
            .map_or(given, |u| u.name.as_str())
    }

    /// The configured pause reasons, in order.
    pub fn pause_reasons(&self) -> &[PauseReason] {
        &self.pause_reasons
    }

    /// The reason Asterisk is sent, and stores, for a requested one. Reasons are free text on
    /// every front end (the pascom seed: "an arbitrary string which will end up in the
    /// queuelog, it can also be empty"): a configured code or reason text (case-insensitive)
    /// becomes the configured text, anything else is taken as it is. Either way it is made
    /// what Asterisk will report back: trimmed, CR and LF as spaces (the codec sends them so),
    /// and cut at a character boundary to [`MAX_PAUSE_REASON`] bytes (Asterisk keeps a
    /// member's reason in 80 bytes with the terminating NUL and cuts the rest).
    pub fn pause_reason(&self, requested: &str) -> String {
        let requested = requested.trim();
        let text = self
            .pause_reasons
            .iter()
            .find(|p| p.code == requested || p.reason.eq_ignore_ascii_case(requested))
            .map_or(requested, |p| p.reason.as_str());
        let text = crate::ami::codec::sent_value(text);
        let mut end = text.len().min(MAX_PAUSE_REASON);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text[..end].trim().to_owned()
    }
}

/// The longest pause reason Asterisk stores, in bytes (`reason_paused[80]` in app_queue).
pub const MAX_PAUSE_REASON: usize = 79;

/// The hash an unknown user's password is checked against: made once, of a random password,
/// with the same parameters as every user's.
static NOBODY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    hash_password(&crate::tokens::random_token()).unwrap_or_else(|_| {
        // Hashing a 32-character password with a fresh salt cannot fail; should it, this
        // fixed hash of a random password has the same parameters.
        "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$Nb2VVW8ykiJJ5U0ew+3LfiJqxgPvXBaCIwlhT1kEgKk"
            .to_owned()
    })
});

/// Hashes a password for `[[users]] password_hash` (argon2id, random salt, PHC string).
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// The current directory, replaceable at runtime.
#[derive(Debug, Default)]
pub struct Access {
    current: RwLock<Arc<Directory>>,
}

impl Access {
    pub fn new(directory: Directory) -> Arc<Self> {
        Arc::new(Self {
            current: RwLock::new(Arc::new(directory)),
        })
    }

    /// The directory now; keep it for the length of one request.
    pub fn directory(&self) -> Arc<Directory> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Installs a new directory (configuration reload).
    pub fn replace(&self, directory: Directory) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(directory);
    }
}

impl Principal {
    /// Whether the queue is visible: supervisors see all, agents the queues they belong to.
    pub fn can_see(&self, queue: &Queue) -> bool {
        match self {
            Principal::User(u) if !u.supervisor => u.belongs_to(
                &queue.server,
                &queue.name,
                queue.members.contains_key(&u.interface),
            ),
            _ => true,
        }
    }

    /// Whether `action` on `interface` in `queue` (or, with `None`, in all its queues) of
    /// `server` is allowed, judged on the current state. `Err` carries the reason.
    pub fn may(
        &self,
        state: &State,
        server: &str,
        queue: Option<&str>,
        interface: &str,
        action: Action,
    ) -> Result<(), String> {
        let user = match self {
            Principal::User(u) if !u.supervisor => u,
            _ => return Ok(()),
        };
        if user.server != server || user.interface != interface {
            return Err(format!(
                "{} may act only on their own member entries",
                user.name
            ));
        }
        let member = queue.and_then(|q| state.queue(server, q)?.members.get(interface));
        match action {
            Action::Login => match queue {
                Some(q) if user.queues.contains(q) => Ok(()),
                _ => Err(format!(
                    "{} is not an agent of queue {}",
                    user.name,
                    queue.unwrap_or_default()
                )),
            },
            Action::Logout => match member {
                Some(m) if m.membership.is_static() => Err(format!(
                    "{} is a static member of this queue and cannot log out",
                    user.name
                )),
                _ => Ok(()),
            },
            Action::Pause => Ok(()),
            Action::Penalty => Err("only a supervisor may change a penalty".into()),
            Action::Pickup => match queue {
                Some(q) if user.queues.contains(q) || member.is_some() => Ok(()),
                _ => Err(format!(
                    "{} is not an agent of queue {}",
                    user.name,
                    queue.unwrap_or_default()
                )),
            },
        }
    }
}

/// A user for unit tests: interface `Local/<name>@agents/n`, a well-formed password hash (only
/// `passwords_verify_against_a_fresh_hash` pays for a real argon2 run).
#[cfg(test)]
pub(crate) fn test_user(name: &str, roles: &[&str], queues: &[&str]) -> UserConfig {
    UserConfig {
        name: name.into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$Nb2VVW8ykiJJ5U0ew+3LfiJqxgPvXBaCIwlhT1kEgKk".into(),
        interface: Some(format!("Local/{name}@agents/n")),
        state_interface: None,
        display_name: None,
        extension: None,
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        server: None,
        queues: queues.iter().map(|q| (*q).to_owned()).collect(),
        penalty: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::QueueIds;

    use super::test_user as user;

    #[test]
    fn bad_entries_name_their_key() {
        let mut bad = user("a", &["boss"], &[]);
        let e = Directory::new(&[bad.clone()], &[], &["pbx1"]).unwrap_err();
        assert_eq!(e.key, "users[0].roles[0]");
        bad.roles.clear();
        bad.password_hash = "plain".into();
        let e = Directory::new(&[bad], &[], &["pbx1"]).unwrap_err();
        assert_eq!(e.key, "users[0].password_hash");
        let twice = [user("a", &[], &[]), user("a", &[], &[])];
        let e = Directory::new(&twice, &[], &["pbx1"]).unwrap_err();
        assert_eq!(e.key, "users[1].interface");
        let reasons = [
            PauseReason {
                code: "*01".into(),
                reason: "Lunch".into(),
            },
            PauseReason {
                code: "*01".into(),
                reason: "Break".into(),
            },
        ];
        let e = Directory::new(&[], &reasons, &["pbx1"]).unwrap_err();
        assert_eq!(e.key, "pause_reasons[1].code");
    }

    #[test]
    fn passwords_verify_against_a_fresh_hash() {
        let mut u = user("tweber", &[], &[]);
        u.password_hash = hash_password("s3cret").unwrap();
        let dir = Directory::new(&[u], &[], &["pbx1"]).unwrap();
        assert!(dir.authenticate("tweber", "s3cret").is_some());
        assert!(dir.authenticate("tweber", "wrong").is_none());
        assert!(dir.authenticate("nobody", "s3cret").is_none());
    }

    #[test]
    fn pause_reasons_match_by_code_or_text() {
        let reasons = [PauseReason {
            code: "*01".into(),
            reason: "Lunch".into(),
        }];
        let dir = Directory::new(&[], &reasons, &["pbx1"]).unwrap();
        assert_eq!(dir.pause_reason("*01"), "Lunch");
        assert_eq!(dir.pause_reason(" lunch "), "Lunch");
        assert_eq!(dir.pause_reason(""), "");
        // Free text is taken as it is, as Asterisk will store it.
        assert_eq!(dir.pause_reason("postprocessing"), "postprocessing");
        assert_eq!(dir.pause_reason("Nap\r\nnow"), "Nap  now");
        let long = "é".repeat(50);
        let cut = dir.pause_reason(&long);
        assert_eq!((cut.len(), cut.chars().count()), (78, 39));
        assert_eq!(dir.pause_reason(&format!("{} x", "a".repeat(78))).len(), 78);
    }

    #[test]
    fn catalogue_reasons_are_what_asterisk_stores() {
        for bad in ["", " Lunch", "Lu\nnch", &"a".repeat(80)] {
            let reasons = [PauseReason {
                code: "1".into(),
                reason: bad.into(),
            }];
            let e = Directory::new(&[], &reasons, &["pbx1"]).unwrap_err();
            assert_eq!(e.key, "pause_reasons[0].reason", "{bad:?}");
        }
    }

    #[test]
    fn supervisors_need_no_interface_agents_do() {
        let mut boss = user("boss", &["supervisor"], &[]);
        boss.interface = None;
        let dir = Directory::new(&[boss.clone()], &[], &["pbx1"]).unwrap();
        let u = dir.user("boss").unwrap();
        assert!(!u.is_agent());
        assert!(u.agent_interface().unwrap_err().contains("not an agent"));
        assert!(dir.by_interface("pbx1", "").is_none());
        assert_eq!(dir.agent_number("pbx1", "Local/204@agents/n"), "204");
        // Two such users do not clash over the empty interface.
        let mut other = boss.clone();
        other.name = "boss2".into();
        Directory::new(&[boss.clone(), other], &[], &["pbx1"]).unwrap();

        let mut agent = user("tweber", &[], &[]);
        agent.interface = None;
        let e = Directory::new(&[agent], &[], &["pbx1"]).unwrap_err();
        assert_eq!(e.key, "users[0].interface");
        let mut joins = boss.clone();
        joins.queues = vec!["sales".into()];
        let e = Directory::new(&[joins], &[], &["pbx1"]).unwrap_err();
        assert_eq!(e.key, "users[0].queues");
        let mut empty = boss;
        empty.interface = Some(" ".into());
        let e = Directory::new(&[empty], &[], &["pbx1"]).unwrap_err();
        assert_eq!(e.key, "users[0].interface");
    }

    /// tweber, an agent who may join sales, and boss, a supervisor.
    fn agent_and_boss() -> Directory {
        Directory::new(
            &[
                user("tweber", &[], &["sales"]),
                user("boss", &["supervisor"], &[]),
            ],
            &[],
            &["pbx1"],
        )
        .unwrap()
    }

    #[test]
    fn agents_act_on_their_own_entries_only() {
        let dir = agent_and_boss();
        let st = State::new(["pbx1"], QueueIds::default());
        let agent = Principal::User(dir.user("tweber").unwrap().clone());
        let boss = Principal::User(dir.user("boss").unwrap().clone());
        let own = "Local/tweber@agents/n";
        let other = "Local/boss@agents/n";
        let may =
            |p: &Principal, q: &str, i: &str, a: Action| p.may(&st, "pbx1", Some(q), i, a).is_ok();
        assert!(may(&agent, "sales", own, Action::Login));
        assert!(!may(&agent, "support", own, Action::Login));
        assert!(may(&agent, "sales", own, Action::Pause));
        assert!(!may(&agent, "sales", other, Action::Pause));
        assert!(!may(&agent, "sales", own, Action::Penalty));
        assert!(may(&boss, "support", own, Action::Pause));
        assert!(may(&boss, "support", own, Action::Penalty));
        assert!(may(&Principal::Service, "support", other, Action::Logout));
        assert!(may(&agent, "sales", own, Action::Pickup));
        assert!(!may(&agent, "support", own, Action::Pickup));
        assert!(!may(&agent, "sales", other, Action::Pickup));
    }

    #[test]
    fn agents_see_the_queues_they_belong_to() {
        let dir = agent_and_boss();
        let queue = |name: &str, member: Option<&str>| Queue {
            server: Arc::from("pbx1"),
            name: Arc::from(name),
            id: 1,
            stats: Default::default(),
            members: member
                .map(|m| crate::state::Member {
                    interface: m.into(),
                    ..Default::default()
                })
                .into_iter()
                .collect(),
            callers: Default::default(),
            connected_calls: Default::default(),
        };
        let agent = Principal::User(dir.user("tweber").unwrap().clone());
        let boss = Principal::User(dir.user("boss").unwrap().clone());
        assert!(agent.can_see(&queue("sales", None)), "listed in queues");
        assert!(
            agent.can_see(&queue("vip", Some("Local/tweber@agents/n"))),
            "a member"
        );
        assert!(!agent.can_see(&queue("support", Some("Local/boss@agents/n"))));
        assert!(boss.can_see(&queue("support", None)));
        assert!(Principal::Service.can_see(&queue("support", None)));
    }
}
