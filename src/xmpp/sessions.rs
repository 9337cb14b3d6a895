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

/// Every client session, and each user's.
#[derive(Debug)]
pub struct Sessions {
    by_jid: HashMap<FullJid, Session>,
    /// The sessions of each user, so an event is judged only for the users it may concern.
    by_user: HashMap<String, Vec<FullJid>>,
    max_per_user: usize,
    clock: u64,
}

impl Sessions {
    pub fn new(max_per_user: usize) -> Self {
        Self {
            by_jid: HashMap::new(),
            by_user: HashMap::new(),
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
        let known = self.by_jid.get(jid).map(|s| s.user != user);
        if known == Some(true) {
            // The directory changed under a live JID: start clean, as the new user's.
            self.remove(jid);
        }
        if known != Some(false) {
            let mine = self.by_user.entry(user.to_owned()).or_default();
            if mine.len() >= self.max_per_user {
                let by_jid = &self.by_jid;
                let oldest = mine
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, j)| by_jid.get(*j).map_or(0, |s| s.active))
                    .map(|(i, _)| i);
                if let Some(i) = oldest {
                    let gone = mine.swap_remove(i);
                    self.by_jid.remove(&gone);
                }
            }
            mine.push(jid.clone());
        }
        let session = self.by_jid.entry(jid.clone()).or_insert_with(|| Session {
            user: user.to_owned(),
            subscriptions: Vec::new(),
            active,
        });
        session.active = active;
        session
    }

    /// Ends a session.
    pub fn remove(&mut self, jid: &FullJid) -> bool {
        let Some(session) = self.by_jid.remove(jid) else {
            return false;
        };
        if let Some(mine) = self.by_user.get_mut(&session.user) {
            mine.retain(|j| j != jid);
            if mine.is_empty() {
                self.by_user.remove(&session.user);
            }
        }
        true
    }

    /// The sessions that get `event`: each once, however many of its subscriptions match.
    ///
    /// Only the users the event may concern are judged — the supervisors, the agents
    /// configured for its queue, its queue's members and the member it is about — so the cost
    /// grows with the queue's audience, not with the number of sessions.
    pub fn recipients(
        &self,
        event: &Event,
        dir: &Directory,
        published: &Published,
    ) -> Vec<FullJid> {
        let server = event.server();
        let members = published.members(server, event.queue());
        let mut users: Vec<&str> = dir
            .supervisors()
            .iter()
            .chain(dir.configured_for(server, event.queue()))
            .map(|u| u.name.as_str())
            .collect();
        if let Some(m) = members {
            users.extend(
                m.keys()
                    .filter_map(|i| dir.by_interface(server, i))
                    .map(|u| u.name.as_str()),
            );
        }
        if let Event::Member { interface, .. } = event {
            users.extend(dir.by_interface(server, interface).map(|u| u.name.as_str()));
        }
        users.sort_unstable();
        users.dedup();
        users
            .into_iter()
            .filter_map(|u| self.by_user.get(u))
            .flatten()
            .filter(|j| {
                self.by_jid.get(*j).is_some_and(|s| {
                    s.subscriptions
                        .iter()
                        .any(|sub| matches(sub, &s.user, event, dir, members))
                })
            })
            .cloned()
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
    members: Option<&BTreeMap<crate::state::Text, MemberState>>,
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
    let is_member = members.is_some_and(|m| m.contains_key(user.interface.as_str()));
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
            interface: format!("Local/{agent}@agents/n").into(),
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
        assert!(!sessions.by_user.contains_key("boss"));
    }

    #[test]
    fn a_jid_whose_user_changed_starts_clean_as_the_new_users() {
        let mut sessions = Sessions::new(2);
        let j = jid("anna@example.test/desk");
        let s = sessions.touch(&j, "anna");
        add(
            &mut s.subscriptions,
            vec![sub("*", Scope::User, &[])],
            false,
        )
        .expect("add");
        // A reload gave the JID's login to another user.
        assert!(sessions.touch(&j, "boss").subscriptions.is_empty());
        assert!(!sessions.by_user.contains_key("anna"));
        assert_eq!(sessions.by_user["boss"], vec![j.clone()]);
        assert_eq!(sessions.len(), 1);
    }

    /// What every session's subscriptions say, judged one session at a time (the rule
    /// [`Sessions::recipients`] narrows by its index).
    fn by_scan(
        sessions: &Sessions,
        event: &Event,
        dir: &Directory,
        published: &Published,
    ) -> Vec<String> {
        let members = published.members(event.server(), event.queue());
        let mut r: Vec<String> = sessions
            .by_jid
            .iter()
            .filter(|(_, s)| {
                s.subscriptions
                    .iter()
                    .any(|sub| matches(sub, &s.user, event, dir, members))
            })
            .map(|(j, _)| j.to_string())
            .collect();
        r.sort();
        r
    }

    proptest::proptest! {
        /// Asking only the users an event may concern finds exactly the sessions a look at
        /// every session finds, whatever the roles, queues, members and subscriptions.
        #[test]
        fn the_index_finds_what_a_scan_finds(
            roles in proptest::collection::vec(proptest::bool::ANY, 6),
            queues in proptest::collection::vec(0u8..4, 6),
            members in proptest::collection::vec(0u8..4, 7),
            sessions in proptest::collection::vec((0usize..7, 0u8..3, 0u8..4, 0u8..2, 0u8..3), 0..24),
        ) {
            let names = ["u0", "u1", "u2", "u3", "u4", "u5", "ghost"];
            let queue_names = |bits: u8| -> Vec<&str> {
                [(1, "sales"), (2, "support")]
                    .into_iter()
                    .filter(|(b, _)| bits & b != 0)
                    .map(|(_, q)| q)
                    .collect()
            };
            let users: Vec<_> = (0..6)
                .map(|i| {
                    let r: &[&str] = if roles[i] { &["supervisor"] } else { &[] };
                    user(names[i], r, &queue_names(queues[i]))
                })
                .collect();
            let dir = Directory::new(&users, &[], &["pbx1"]).expect("directory");
            // Members of each queue by their bits (the seventh is nobody's interface).
            let mut state = crate::state::State::new(["pbx1"], crate::state::QueueIds::default());
            for (id, queue) in [(1, "sales"), (2, "support")] {
                let bit = if queue == "sales" { 1 } else { 2 };
                let mut q = crate::state::Queue::new(Arc::from("pbx1"), Arc::from(queue), id);
                for (i, m) in members.iter().enumerate() {
                    if m & bit != 0 {
                        q.members.insert(crate::state::Member {
                            interface: format!("Local/{}@agents/n", names[i]).into(),
                            ..crate::state::Member::default()
                        });
                    }
                }
                state.server_mut("pbx1").queues.insert(queue.into(), q);
            }
            let published = Published::of(&state, &dir);
            let mut table = Sessions::new(2);
            for (u, resource, kind, scope, filter) in sessions {
                let s = table.touch(&jid(&format!("{}@example.test/r{resource}", names[u])), names[u]);
                let kind = ["*", "QueueJoinEvent", "QueueMemberState", "QueueLeaveEvent"][kind as usize];
                let scope = if scope == 0 { Scope::User } else { Scope::Supervisor };
                let filters: &[(&str, &str)] = match filter {
                    0 => &[],
                    1 => &[("queue", "support")],
                    _ => &[("name", "sales")],
                };
                let supervisor = dir.user(names[u]).is_some_and(|u| u.supervisor);
                add(&mut s.subscriptions, vec![sub(kind, scope, filters)], supervisor).expect("add");
            }
            let mut events = vec![join("sales"), join("support")];
            for queue in ["sales", "support"] {
                for n in names {
                    events.push(member(n, queue));
                }
            }
            for e in &events {
                let mut found: Vec<String> = table
                    .recipients(e, &dir, &published)
                    .iter()
                    .map(|j| j.to_string())
                    .collect();
                found.sort();
                proptest::prop_assert_eq!(found, by_scan(&table, e, &dir, &published));
            }
        }
    }
}
