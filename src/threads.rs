//! The core's own threads: the AMI links and the state task each run on a runtime of their
//! own, one thread each, apart from the runtime that serves HTTP, XMPP and the rest.
//!
//! Asterisk drops a manager session that does not read within its `writetimeout` (100 ms by
//! default, ami.md §1.12). On a shared runtime a reader can be held up by anything else that
//! occupies the workers: a fold of a 40,000-queue resync (half a second of CPU), HTTP handlers
//! waiting for the state's lock while it is folded, a large snapshot being serialised. Here
//! the AMI thread only reads and writes sockets and hands inputs on without waiting
//! (`ami::client`); the state thread only folds.

use std::sync::OnceLock;

use tokio::runtime::{Builder, Handle, Runtime};
use tracing::warn;

static AMI: OnceLock<Option<Runtime>> = OnceLock::new();
static STATE: OnceLock<Option<Runtime>> = OnceLock::new();

fn handle(cell: &'static OnceLock<Option<Runtime>>, name: &str) -> Handle {
    let runtime = cell.get_or_init(|| {
        Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(name)
            .enable_all()
            .build()
            .map_err(|err| warn!(%err, thread = name, "cannot start a thread of its own; sharing"))
            .ok()
    });
    match runtime {
        Some(rt) => rt.handle().clone(),
        None => Handle::current(),
    }
}

/// Where the AMI clients run.
pub fn ami() -> Handle {
    handle(&AMI, "qb-ami")
}

/// Where the state task runs.
pub fn state() -> Handle {
    handle(&STATE, "qb-state")
}
