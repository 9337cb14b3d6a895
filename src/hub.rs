//! The hub: the one task that owns the queue state, and how everyone else reads it.
//!
//! AMI clients send [`Input`]s over a bounded channel; [`run`] folds them with
//! [`state::apply`](crate::state::apply) and publishes every change twice: into a ring of recent
//! changes (so a reconnecting SSE client gets exactly what it missed) and onto a broadcast
//! channel. The broadcast never waits for a receiver: one that falls behind by more than
//! [`BROADCAST_CAPACITY`] changes is told it lagged and gets a fresh snapshot instead, so no
//! consumer can ever stall the AMI reader. Readers take the lock only to copy what they need;
//! it is never held across an `.await`.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, mpsc};
use tokio::time::{Interval, MissedTickBehavior};
use tracing::{info_span, warn, Instrument};

use crate::state::{self, Change, Input, Snapshot, State, What};

/// Inputs queued from all AMI links to the state task, and events queued by one link (a read's
/// events travel as one input). The fold is far faster than any AMI link, so this only fills
/// if the process is starved: 8,192 inputs are eight seconds of a busy site's 1,000 events/s,
/// longer than folding the largest resync (40,000 queues: about 1.5 s on the machine of
/// BENCHMARKS.md). An AMI reader never waits for room: it drops what
/// does not fit and resyncs (`ami::client`), so Asterisk's `writetimeout` is never hit.
pub const INPUT_QUEUE: usize = 8192;
/// Events folded under one hold of the state lock and published as one batch, as many as one
/// read brings at most: a batch then holds fewer than twice as many, so readers of the state
/// wait a fraction of a millisecond, and the [`BROADCAST_CAPACITY`] batches a slow subscriber
/// may lag behind by (kept, with their SSE rendering) stay the size they were when a batch was
/// at most 256 inputs of one event.
const FOLD_BATCH: usize = 256;
/// Batches a subscriber may fall behind before it is resynced with a snapshot.
pub const BROADCAST_CAPACITY: usize = 4096;
/// Changes kept for `Last-Event-ID` resumption.
pub const RECENT_CHANGES: usize = 20_000;

struct Shared {
    state: State,
    recent: VecDeque<Arc<Change>>,
}

/// The changes of one batch of inputs, in order: what the broadcast carries. A resync's tens
/// of thousands of changes are one message, so no subscriber lags behind because of it.
pub type Batch = Arc<Changes>;

/// A batch's changes, and their rendering for the subscribers that write every change the same
/// way to every client (the native event stream): made once, by the first that needs it.
#[derive(Debug)]
pub struct Changes {
    changes: Vec<Arc<Change>>,
    rendered: OnceLock<bytes::Bytes>,
    folded: Instant,
}

impl Changes {
    /// A batch folded now.
    pub fn new(changes: Vec<Arc<Change>>) -> Self {
        Self {
            changes,
            rendered: OnceLock::new(),
            folded: Instant::now(),
        }
    }

    /// When the changes were folded: what a front end's delivery time is measured from.
    pub fn folded(&self) -> Instant {
        self.folded
    }

    /// The changes rendered by `render`; the first caller renders, the others share it.
    pub fn rendered(&self, render: impl FnOnce(&[Arc<Change>]) -> bytes::Bytes) -> bytes::Bytes {
        self.rendered.get_or_init(|| render(&self.changes)).clone()
    }
}

impl std::ops::Deref for Changes {
    type Target = [Arc<Change>];

    fn deref(&self) -> &[Arc<Change>] {
        &self.changes
    }
}

/// Shared handle to the state and its change stream.
pub struct Hub {
    shared: RwLock<Shared>,
    changes: broadcast::Sender<Batch>,
}

/// Where a subscriber resumes.
pub enum Resume {
    /// The changes after the given id, all still in the ring.
    Backlog(Vec<Arc<Change>>),
    /// Too old, unknown or absent id: start over from this snapshot.
    Snapshot(Snapshot),
}

impl Hub {
    /// A hub over an initial state.
    pub fn new(state: State) -> Arc<Self> {
        let (changes, _) = broadcast::channel(BROADCAST_CAPACITY);
        Arc::new(Self {
            shared: RwLock::new(Shared {
                state,
                recent: VecDeque::with_capacity(RECENT_CHANGES),
            }),
            changes,
        })
    }

    fn read_guard(&self) -> RwLockReadGuard<'_, Shared> {
        // A panic while holding the lock cannot leave the state half-folded in a way readers
        // could misuse more than a stale copy: recover the guard rather than poison every reader.
        self.shared.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_guard(&self) -> RwLockWriteGuard<'_, Shared> {
        self.shared.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Folds one input and publishes its changes. Only the state task (or an offline replay)
    /// calls this.
    pub fn apply(&self, input: &Input) -> usize {
        self.apply_all(std::slice::from_ref(input))
    }

    /// Folds inputs in order and publishes their changes as one batch (one wake-up for every
    /// subscriber, however many inputs a read brought).
    pub fn apply_all(&self, inputs: &[Input]) -> usize {
        let changes: Vec<Arc<Change>> = {
            let mut shared = self.write_guard();
            // About one change per event: sized so that a batch rarely regrows it.
            let events = inputs.iter().map(|i| i.what.events()).sum();
            let mut changes: Vec<Arc<Change>> = Vec::with_capacity(events);
            for input in inputs {
                state::apply_into(&mut shared.state, input, &mut changes);
            }
            for c in &changes {
                if shared.recent.len() == RECENT_CHANGES {
                    shared.recent.pop_front();
                }
                shared.recent.push_back(c.clone());
            }
            changes
        };
        let n = changes.len();
        if n > 0 {
            // No receivers is fine: nobody is listening.
            let _ = self.changes.send(Arc::new(Changes::new(changes)));
        }
        n
    }

    /// Reads the state under the lock; `f` must be quick and must not block.
    pub fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self.read_guard().state)
    }

    /// Writes the state under the lock (persistence bookkeeping only).
    fn write<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.write_guard().state)
    }

    /// Subscribes to changes from now on, a batch per batch of inputs the state task took.
    pub fn subscribe(&self) -> broadcast::Receiver<Batch> {
        self.changes.subscribe()
    }

    /// Waits until `done` holds on the state, checking again after every change, until
    /// `deadline`; false if it did not. Subscribe `changes` before doing what is awaited, so
    /// no change slips past.
    pub async fn wait_for(
        &self,
        changes: &mut broadcast::Receiver<Batch>,
        deadline: tokio::time::Instant,
        done: impl Fn(&State) -> bool,
    ) -> bool {
        loop {
            if self.read(&done) {
                return true;
            }
            match tokio::time::timeout_at(deadline, changes.recv()).await {
                Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
                Ok(Err(broadcast::error::RecvError::Closed)) | Err(_) => return false,
            }
        }
    }

    /// What a subscriber that saw everything up to `last_seq` needs to catch up.
    pub fn resume(&self, last_seq: Option<u64>) -> Resume {
        let shared = self.read_guard();
        if let Some(last) = last_seq {
            let current = shared.state.seq;
            let oldest = shared.recent.front().map_or(current + 1, |c| c.seq);
            if last <= current && last + 1 >= oldest {
                return Resume::Backlog(
                    shared
                        .recent
                        .iter()
                        .filter(|c| c.seq > last)
                        .cloned()
                        .collect(),
                );
            }
        }
        Resume::Snapshot(shared.state.snapshot())
    }
}

/// Who is told how the state task is doing (the service manager, in the daemon); called from
/// the state task only.
pub trait Liveness: Send {
    /// How often the state task must prove it is alive; `None`: never.
    fn keepalive_every(&self) -> Option<Duration>;
    /// After a fold that moved a link (a login, a logoff, a snapshot), and at the start.
    fn observe(&mut self, state: &State);
    /// The keepalive tick, with the state lock held: the fold and its lock work.
    fn alive(&mut self, state: &State);
}

/// The state task: folds inputs until every sender is gone, persisting new queue ids.
pub async fn run(
    hub: Arc<Hub>,
    mut inputs: mpsc::Receiver<Input>,
    state_dir: Option<PathBuf>,
    mut notifier: impl Liveness,
) {
    async move {
        let mut batch = Vec::with_capacity(256);
        // The watchdog's keepalive is ticked from this loop, and only after taking the state
        // lock: a wedged fold or lock stops it.
        let mut keepalive = notifier.keepalive_every().map(|every| {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            tick
        });
        hub.read(|s| notifier.observe(s));
        loop {
            tokio::select! {
                got = inputs.recv_many(&mut batch, 256) => if got == 0 { break },
                () = tick(&mut keepalive) => {
                    hub.read(|s| notifier.alive(s));
                    continue;
                }
            }
            // Only logins, logoffs and QueueStatus snapshots change what systemd is told.
            let links_moved = batch
                .iter()
                .any(|i| !matches!(i.what, What::Event(_) | What::Events(_)));
            // A read brings up to `ami::client::READ_BATCH` events in one input: the lock is
            // held, and a batch published, for about `FOLD_BATCH` events at a time.
            let mut from = 0;
            let mut events = 0;
            for (i, input) in batch.iter().enumerate() {
                events += input.what.events();
                if events >= FOLD_BATCH || i + 1 == batch.len() {
                    hub.apply_all(&batch[from..=i]);
                    from = i + 1;
                    events = 0;
                }
            }
            batch.clear();
            let dirty_ids = hub.write(|s| s.ids.take_dirty().then(|| s.ids.clone()));
            if let (Some(ids), Some(dir)) = (dirty_ids, &state_dir) {
                if let Err(err) = ids.save(dir) {
                    warn!(%err, dir = %dir.display(), "cannot persist queue ids");
                }
            }
            if links_moved {
                hub.read(|s| notifier.observe(s));
            }
        }
    }
    .instrument(info_span!("state"))
    .await
}

/// The next keepalive tick; never without a watchdog.
async fn tick(keepalive: &mut Option<Interval>) {
    match keepalive {
        Some(tick) => {
            tick.tick().await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts keepalives.
    struct Counting(Arc<AtomicUsize>);

    impl Liveness for Counting {
        fn keepalive_every(&self) -> Option<Duration> {
            Some(Duration::from_millis(50))
        }
        fn observe(&mut self, _: &State) {}
        fn alive(&mut self, _: &State) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    async fn until(what: impl Fn() -> bool) {
        for _ in 0..500 {
            if what() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("timed out");
    }

    /// The watchdog keepalive proves the state task and its lock work: while the lock is
    /// wedged, none is sent.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keepalives_stop_while_the_state_is_wedged() {
        let hub = Hub::new(State::new(["pbx1"], Default::default()));
        let alive = Arc::new(AtomicUsize::new(0));
        let (_inputs, rx) = mpsc::channel(1);
        let task = tokio::spawn(run(hub.clone(), rx, None, Counting(alive.clone())));
        until(|| alive.load(Ordering::SeqCst) >= 2).await;

        let wedged = hub.clone();
        let (before, during, alive) = tokio::task::spawn_blocking(move || {
            let guard = wedged.write_guard();
            let before = alive.load(Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(500));
            let during = alive.load(Ordering::SeqCst);
            drop(guard);
            (before, during, alive)
        })
        .await
        .unwrap();
        assert_eq!(during, before);
        until(|| alive.load(Ordering::SeqCst) > before).await;
        task.abort();
    }
}
