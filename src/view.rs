//! What every front end shows, read one way: a queue by id as its asker may see it, the agents
//! of a queue, an agent's name and number, a member's availability, whether a link is up.
//! XMPP, the vendor dialects, the native API and the metrics read the state through these, so
//! that a rule (who may see a queue, whose name is shown) is written once. Pure functions of
//! the state and the directory: no I/O, no clock.

use std::sync::Arc;

use crate::access::{extension_of, Directory, Principal, User};
use crate::state::{DeviceState, Member, Queue, State};

/// What a member can do now, in the order it is judged: paused first, then in a call, rung,
/// unreachable, free. The metrics' `state` label and every dialect's agent status start here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Availability {
    Available,
    InCall,
    Ringing,
    Paused,
    Unavailable,
}

impl Availability {
    /// Every value, in the metrics' exposition order.
    pub const ALL: [Availability; 5] = [
        Self::Available,
        Self::InCall,
        Self::Ringing,
        Self::Paused,
        Self::Unavailable,
    ];

    /// A member's availability. Rung while in use counts as in a call.
    pub fn of(m: &Member) -> Self {
        if m.paused {
            Self::Paused
        } else if m.in_call || m.status.in_call() {
            Self::InCall
        } else if m.status == DeviceState::Ringing {
            Self::Ringing
        } else if m.status.unreachable() {
            Self::Unavailable
        } else {
            Self::Available
        }
    }

    /// `available`, `in_call`, `ringing`, `paused`, `unavailable`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Available => "available",
            Self::InCall => "in_call",
            Self::Ringing => "ringing",
            Self::Paused => "paused",
            Self::Unavailable => "unavailable",
        }
    }
}

/// An agent of a queue: a member, a configured user allowed in, or both.
#[derive(Clone, Debug)]
pub struct Agent<'q> {
    /// The extension number: the configured user's, else the one in the interface
    /// (`Local/204@agents/n` → 204).
    pub number: String,
    /// The configured user's display name, else the member name Asterisk reports.
    pub name: String,
    /// The member entry, while logged in (or static).
    pub member: Option<&'q Member>,
    /// The configured user, if any.
    pub user: Option<Arc<User>>,
}

/// A member's extension number and shown name: its configured user's, else the number in the
/// interface and the name Asterisk reports.
pub fn identity(user: Option<&User>, member: &Member) -> (String, String) {
    match user {
        Some(u) => (u.number().to_owned(), u.display_name.clone()),
        None => (
            extension_of(&member.interface).to_owned(),
            member.name.to_string(),
        ),
    }
}

impl<'q> Agent<'q> {
    /// The agent of a member of `server`.
    pub fn of_member(directory: &Directory, server: &str, member: &'q Member) -> Self {
        let user = directory.by_interface(server, &member.interface).cloned();
        let (number, name) = identity(user.as_deref(), member);
        Agent {
            number,
            name,
            member: Some(member),
            user,
        }
    }

    /// A configured user who is not a member now.
    pub fn of_user(user: &Arc<User>) -> Self {
        Agent {
            number: user.number().to_owned(),
            name: user.display_name.clone(),
            member: None,
            user: Some(user.clone()),
        }
    }
}

/// The agents of a queue: its members, then the configured users allowed in who are not
/// logged in.
pub fn agents<'q>(directory: &Directory, q: &'q Queue) -> Vec<Agent<'q>> {
    let mut out: Vec<Agent<'q>> = q
        .members
        .values()
        .map(|m| Agent::of_member(directory, &q.server, m))
        .collect();
    out.extend(
        directory
            .users()
            .filter(|u| {
                u.belongs_to(&q.server, &q.name, false) && !q.members.contains_key(&u.interface)
            })
            .map(Agent::of_user),
    );
    out
}

/// Why a queue asked for by id is not shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unseen {
    /// No queue has that id.
    Missing,
    /// It exists; the asker may not see it.
    Hidden,
}

/// The queue with id `id`, if `who` may see it.
pub fn queue_by_id<'s>(state: &'s State, who: &Principal, id: u64) -> Result<&'s Queue, Unseen> {
    match state.queues().find(|q| q.id == id) {
        None => Err(Unseen::Missing),
        Some(q) if !who.can_see(q) => Err(Unseen::Hidden),
        Some(q) => Ok(q),
    }
}

/// Whether `server`'s AMI link is logged in and its state synced (what a command or a fresh
/// figure needs).
pub fn link_up(state: &State, server: &str) -> bool {
    state
        .servers
        .get(server)
        .is_some_and(|s| s.link.connected && s.link.synced)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn availability_is_judged_paused_first_then_busy_ringing_unreachable() {
        let m = |code, paused, in_call| Member {
            status: DeviceState::from_code(code),
            paused,
            in_call,
            ..Member::default()
        };
        let of = |code, paused, in_call| Availability::of(&m(code, paused, in_call)).as_str();
        assert_eq!(of(1, true, false), "paused");
        assert_eq!(of(2, false, false), "in_call");
        assert_eq!(of(1, false, true), "in_call");
        assert_eq!(of(6, false, false), "ringing");
        assert_eq!(of(7, false, false), "in_call");
        assert_eq!(of(8, false, false), "in_call");
        assert_eq!(of(5, false, false), "unavailable");
        assert_eq!(of(4, false, false), "unavailable");
        assert_eq!(of(1, false, false), "available");
        assert_eq!(of(0, false, false), "available");
        assert_eq!(of(99, false, false), "available");
    }
}
