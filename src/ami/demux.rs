//! Routes server messages: direct replies and event lists to their action, the rest as events.
//!
//! An action's reply is one `Response:` frame, or — for list actions such as QueueStatus —
//! `Response: Success` with `EventList: start`, the items (each carrying the ActionID), and a
//! `*Complete` event with `EventList: Complete` (ami.md §1.8). Lists never interleave with async
//! events (§1.14), but events may arrive between a list and the next reply.

use std::collections::HashMap;

use super::{Kind, Message};

/// Most items one list may collect before it is cut short: a runaway list must not eat memory.
pub const MAX_LIST_ITEMS: usize = 200_000;

/// The complete answer to one action.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reply {
    /// The `Response:` frame.
    pub response: Message,
    /// The list items, without the closing `*Complete` event.
    pub items: Vec<Message>,
}

impl Reply {
    /// `Response: Success` (or `Goodbye`).
    pub fn is_success(&self) -> bool {
        !matches!(self.response.kind(), Kind::Response(r) if r.eq_ignore_ascii_case("Error"))
    }

    /// The `Message:` header, Asterisk's human-readable outcome.
    pub fn message(&self) -> &str {
        self.response.get("Message").unwrap_or_default()
    }
}

/// What one incoming message turned out to be.
#[derive(Debug)]
pub enum Routed {
    /// An asynchronous event (or a reply nobody can be matched to).
    Event(Message),
    /// The last frame of an action's answer arrived.
    Reply { action_id: String, reply: Reply },
    /// Consumed into an open list.
    Pending,
}

/// Collects list replies by ActionID.
#[derive(Debug, Default)]
pub struct Demux {
    open: HashMap<String, Reply>,
}

impl Demux {
    /// Routes one message.
    pub fn push(&mut self, msg: Message) -> Routed {
        match msg.kind() {
            Kind::Response(_) => {
                let Some(id) = msg.action_id().map(str::to_owned) else {
                    return Routed::Event(msg);
                };
                let starts_list = msg
                    .get("EventList")
                    .is_some_and(|v| v.eq_ignore_ascii_case("start"));
                let reply = Reply {
                    response: msg,
                    items: Vec::new(),
                };
                if starts_list {
                    self.open.insert(id, reply);
                    Routed::Pending
                } else {
                    Routed::Reply {
                        action_id: id,
                        reply,
                    }
                }
            }
            // No list open: no event can belong to one (and the ActionID scan is skipped).
            Kind::Event(_) if self.open.is_empty() => Routed::Event(msg),
            Kind::Event(_) => {
                let Some(id) = msg.action_id() else {
                    return Routed::Event(msg);
                };
                let Some(list) = self.open.get_mut(id) else {
                    return Routed::Event(msg);
                };
                let ends = msg.get("EventList").is_some_and(|v| {
                    v.eq_ignore_ascii_case("Complete") || v.eq_ignore_ascii_case("Cancelled")
                });
                if ends {
                    let id = id.to_owned();
                    let reply = self.open.remove(&id).unwrap_or_default();
                    return Routed::Reply {
                        action_id: id,
                        reply,
                    };
                }
                if list.items.len() < MAX_LIST_ITEMS {
                    list.items.push(msg);
                }
                Routed::Pending
            }
            _ => Routed::Event(msg),
        }
    }

    /// How many items the open list of this action holds so far.
    pub fn items(&self, action_id: &str) -> Option<usize> {
        self.open.get(action_id).map(|r| r.items.len())
    }

    /// Forgets an open list (its action timed out).
    pub fn cancel(&mut self, action_id: &str) {
        self.open.remove(action_id);
    }

    /// Forgets every open list (the connection ended).
    pub fn clear(&mut self) {
        self.open.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_a_list_and_passes_events_through() {
        let mut d = Demux::default();
        let start = Message::new()
            .with("Response", "Success")
            .with("ActionID", "1")
            .with("EventList", "start");
        assert!(matches!(d.push(start), Routed::Pending));
        let item = Message::new()
            .with("Event", "QueueParams")
            .with("ActionID", "1");
        assert!(matches!(d.push(item), Routed::Pending));
        let other = Message::new().with("Event", "QueueMemberStatus");
        assert!(matches!(d.push(other), Routed::Event(_)));
        let done = Message::new()
            .with("Event", "QueueStatusComplete")
            .with("ActionID", "1")
            .with("EventList", "Complete");
        let Routed::Reply { action_id, reply } = d.push(done) else {
            panic!("no reply")
        };
        assert_eq!(action_id, "1");
        assert_eq!(reply.items.len(), 1);
        assert!(reply.is_success());
    }
}
