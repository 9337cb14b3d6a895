//! The fold as it was before its records were indexed: every lookup a scan, every leave a
//! renumbering. Kept, for tests only, as the oracle the indexed fold is checked against
//! (`tests::the_indexed_fold_equals_the_scanning_one`): on any stream both publish the same
//! changes and end in the same state, as JSON.
#![allow(dead_code)]

mod change;
mod fold;
mod model;

pub use fold::apply;
pub use model::State;

use super::ids;
use super::{Input, LinkChange, QueueStatus, Scope, What};
use change::{Change, ChangeKind};
use model::{Caller, ConnectedCall, Link, Member, Queue, QueueStats, Ringing};
