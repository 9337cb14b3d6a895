//! Client sessions (one per full JID) and their subscriptions, and who gets an event.
//!
//! A session starts with the user's first command and ends with their unavailable presence
//! (the Prosody module sends it when the client's session ends). Sessions outlive a reconnect
//! of the component link, so subscriptions survive an XMPP server restart. Each user keeps at
//! most `max_per_user` sessions: a client that vanished without an unavailable presence is
//! replaced by the user's next one, so the table stays bounded.
//!
//! Permissions are judged on every event with the current directory, so a reload that takes
//! away a role takes away its events at once.

use std::collections::{BTreeMap, HashMap};

use tokio_xmpp::jid::FullJid;

use crate::access::Directory;

use super::events::{Event, Published};
use super::pascom::{MemberState, Scope, Subscription, MAX_SUBSCRIPTIONS};

/// One client session.
#[derive(Debug)]
pub struct Session {
    /// The configured user's name.
    pub user: String,
    pub subscriptions: Vec<Subscription>,
    /// Order of last activity, for eviction.
    active: u64,
}

/// Every client session.
#[derive(Debug)]
pub struct Sessions {
    by_jid: HashMap<FullJid, Session>,
    max_per_user: usize,
    clock: u64,
}

impl Sessions {
    pub fn new(max_per_user: usize) -> Self {
        Self {
            by_jid: HashMap::new(),
            max_per_user: max_per_user.max(1),
            clock: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.by_jid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_jid.is_empty()
    }

    /// Subscriptions of all sessions.
    pub fn subscription_count(&self) -> usize {
        self.by_jid.values().map(|s| s.subscriptions.len()).sum()
    }

    /// The session of `jid` (user `user`), created if new; the user's least recently active
    /// session goes when they have too many.
    pub fn touch(&mut self, jid: &FullJid, user: &str) -> &mut Session {
        self.clock += 1;
        let active = self.clock;
        if !self.by_jid.contains_key(jid) {
            let mine: Vec<(&FullJid, u64)> = self
                .by_jid
                .iter()
                .filter(|(_, s)| s.user == user)
                .map(|(j, s)| (j, s.active))
                .collect();
            if mine.len() >= self.max_per_user {
                if let Some(oldest) = mine
                    .iter()
                    .min_by_key(|(_, a)| *a)
                    .map(|(j, _)| (*j).clone())
                {
                    self.by_jid.remove(&oldest);
                }
            }
        }
        let session = self.by_jid.entry(jid.clone()).or_insert_with(|| Session {
            user: user.to_owned(),
            subscriptions: Vec::new(),
            active,
        });
        if session.user != user {
            // The directory changed under a live JID: start clean.
            session.user = user.to_owned();
            session.subscriptions.clear();
        }
        session.active = active;
        session
    }

    /// Ends a session.
    pub fn remove(&mut self, jid: &FullJid) -> bool {
        self.by_jid.remove(jid).is_some()
    }

    /// The sessions that get `event`: each once, however many of its subscriptions match.
    pub fn recipients(
        &self,
        event: &Event,
        dir: &Directory,
        published: &Published,
    ) -> Vec<FullJid> {
        let members = published.members(event.server(), event.queue());
        self.by_jid
            .iter()
            .filter(|(_, s)| {
                s.subscriptions
                    .iter()
                    .any(|sub| matches(sub, &s.user, event, dir, members))
            })
            .map(|(j, _)| j.clone())
            .collect()
    }
}

/// Adds subscriptions to a session's list; `scope="supervisor"` becomes `user` for users
/// without the supervisor role. Subscriptions already in the list are not added twice.
pub fn add(
    list: &mut Vec<Subscription>,
    new: Vec<Subscription>,
    supervisor: bool,
) -> Result<(), String> {
    for mut sub in new {
        if !supervisor {
            sub.scope = Scope::User;
        }
        if !list.contains(&sub) {
            if list.len() >= MAX_SUBSCRIPTIONS {
                return Err(format!(
                    "a session may hold at most {MAX_SUBSCRIPTIONS} subscriptions"
                ));
            }
            list.push(sub);
        }
    }
    Ok(())
}

/// Removes the subscriptions equal to `gone` (after the same scope rule as [`add`]).
pub fn remove(list: &mut Vec<Subscription>, gone: Vec<Subscription>, supervisor: bool) {
    for mut sub in gone {
        if !supervisor {
            sub.scope = Scope::User;
        }
        list.retain(|s| *s != sub);
    }
}

/// Whether `sub` of `user` asks for `event` and the user may see it; `members` are the
/// event's queue's, as published.
fn matches(
    sub: &Subscription,
    user: &str,
    event: &Event,
    dir: &Directory,
    members: Option<&BTreeMap<String, MemberState>>,
) -> bool {
    if sub.module != "queue" || (sub.kind != "*" && sub.kind != event.name()) {
        return false;
    }
    if !sub
        .filters
        .iter()
        .all(|(name, value)| event.attr(name) == Some(value.as_str()))
    {
        return false;
    }
    let Some(user) = dir.user(user) else {
        return false;
    };
    if sub.scope == Scope::Supervisor && user.supervisor {
        return true;
    }
    // Scope user: events about the user, and about the queues they belong to.
    if let Event::Member {
        server, interface, ..
    } = event
    {
        if **server == *user.server && *interface == user.interface {
            return true;
        }
    }
    let is_member = members.is_some_and(|m| m.contains_key(&user.interface));
    user.belongs_to(event.server(), event.queue(), is_member)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::test_user as user;
    use crate::xmpp::pascom::{CallEntry, MemberState, Person, QueueRef};
    use std::sync::Arc;

    fn dir() -> Directory {
        Directory::new(
            &[
                user("anna", &[], &["sales"]),
                user("boss", &["supervisor"], &[]),
            ],
            &[],
            &["pbx1"],
        )
        .expect("directory")
    }

    fn jid(s: &str) -> FullJid {
        FullJid::new(s).expect("jid")
    }

    fn join(queue: &str) -> Event {
        Event::Join {
            server: Arc::from("pbx1"),
            queue: QueueRef {
                id: 1,
                name: queue.into(),
            },
            entry: CallEntry {
                position: 1,
                channel: "Local/x".into(),
                uniqueid: "1.1".into(),
                person: Person::default(),
            },
        }
    }

    fn member(agent: &str, queue: &str) -> Event {
        Event::Member {
            server: Arc::from("pbx1"),
            interface: format!("Local/{agent}@agents/n"),
            state: MemberState {
                agent: agent.into(),
                queue: queue.into(),
                dynamic: true,
                loggedin: true,
                paused: false,
                pause_reason: String::new(),
                person: Person::default(),
            },
        }
    }

    fn sub(kind: &str, scope: Scope, filters: &[(&str, &str)]) -> Subscription {
        Subscription {
            module: "queue".into(),
            kind: kind.into(),
            scope,
            filters: filters
                .iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn agents_get_their_queues_supervisors_everything_and_nobody_twice() {
        let (dir, published) = (dir(), Published::default());
        let mut sessions = Sessions::new(4);
        let anna = jid("anna@example.test/desk");
        let boss = jid("boss@example.test/desk");
        for (j, user, sup) in [(&anna, "anna", false), (&boss, "boss", true)] {
            let s = sessions.touch(j, user);
            add(
                &mut s.subscriptions,
                vec![
                    sub("*", Scope::Supervisor, &[]),
                    sub("QueueJoinEvent", Scope::User, &[]),
                    sub("*", Scope::Supervisor, &[]),
                ],
                sup,
            )
            .expect("add");
        }
        // Anna's supervisor scope was narrowed to user, and duplicates were not kept.
        assert_eq!(sessions.by_jid[&anna].subscriptions.len(), 2);
        assert_eq!(sessions.by_jid[&anna].subscriptions[0].scope, Scope::User);
        let to = |e: &Event| {
            let mut r = sessions.recipients(e, &dir, &published);
            r.sort_by_key(|j| j.to_string());
            r
        };
        assert_eq!(to(&join("sales")), vec![anna.clone(), boss.clone()]);
        assert_eq!(to(&join("support")), vec![boss.clone()]);
        // About the user: seen even in a queue they do not belong to.
        assert_eq!(
            to(&member("anna", "support")),
            vec![anna.clone(), boss.clone()]
        );
        assert_eq!(to(&member("other", "support")), vec![boss.clone()]);
    }

    #[test]
    fn filters_and_removal() {
        let (dir, published) = (dir(), Published::default());
        let mut sessions = Sessions::new(4);
        let boss = jid("boss@example.test/desk");
        let s = sessions.touch(&boss, "boss");
        let only_support = sub("*", Scope::Supervisor, &[("queue", "support")]);
        add(&mut s.subscriptions, vec![only_support.clone()], true).expect("add");
        assert_eq!(
            sessions.recipients(&join("sales"), &dir, &published),
            Vec::<FullJid>::new()
        );
        assert_eq!(
            sessions.recipients(&join("support"), &dir, &published),
            vec![boss.clone()]
        );
        let s = sessions.touch(&boss, "boss");
        remove(&mut s.subscriptions, vec![only_support], true);
        assert_eq!(
            sessions.recipients(&join("support"), &dir, &published),
            Vec::<FullJid>::new()
        );
    }

    #[test]
    fn sessions_per_user_are_bounded() {
        let mut sessions = Sessions::new(2);
        for r in ["a", "b", "c"] {
            sessions.touch(&jid(&format!("anna@example.test/{r}")), "anna");
        }
        sessions.touch(&jid("boss@example.test/a"), "boss");
        assert_eq!(sessions.len(), 3);
        assert!(!sessions.by_jid.contains_key(&jid("anna@example.test/a")));
        assert!(sessions.remove(&jid("boss@example.test/a")));
        assert!(!sessions.remove(&jid("boss@example.test/a")));
    }
}
