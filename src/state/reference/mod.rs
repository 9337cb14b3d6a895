//! The fold as it was before its records were indexed: every lookup a scan, every leave a
//! renumbering. Kept, for tests only, as the oracle the indexed fold is checked against
//! (`tests::the_indexed_fold_equals_the_scanning_one`): on any stream both publish the same
//! changes and end in the same state, as JSON.
#![allow(dead_code)]

mod fold;
mod model;

pub use fold::apply;
pub use model::State;

use super::ids;
use super::{
    Change, ChangeKind, ConnectedCall, Input, Link, LinkChange, Member, QueueStats, QueueStatus,
    Scope, Waiting, What,
};
use model::{Caller, Queue, Ringing};

/// The published form of a caller the scanning fold kept with its position inside.
fn published(c: &Caller) -> Waiting {
    Waiting {
        position: c.position,
        caller: super::Caller {
            channel: c.channel.as_str().into(),
            uniqueid: c.uniqueid.as_str().into(),
            linkedid: c.linkedid.as_str().into(),
            caller_id_num: c.caller_id_num.as_str().into(),
            caller_id_name: c.caller_id_name.as_str().into(),
            connected_line_num: c.connected_line_num.as_str().into(),
            connected_line_name: c.connected_line_name.as_str().into(),
            entered: c.entered,
            priority: c.priority,
            dialled: c.dialled.as_str().into(),
            privacy: c.privacy,
            abandoned: c.abandoned,
            ringing: Default::default(),
        },
    }
}
