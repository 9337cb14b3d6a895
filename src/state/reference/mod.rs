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
            channel: c.channel.clone(),
            uniqueid: c.uniqueid.clone(),
            linkedid: c.linkedid.clone(),
            caller_id_num: c.caller_id_num.clone(),
            caller_id_name: c.caller_id_name.clone(),
            connected_line_num: c.connected_line_num.clone(),
            connected_line_name: c.connected_line_name.clone(),
            entered: c.entered,
            priority: c.priority,
            dialled: c.dialled.clone(),
            privacy: c.privacy,
            abandoned: c.abandoned,
            ringing: Default::default(),
        },
    }
}
