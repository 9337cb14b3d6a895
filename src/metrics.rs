//! Every metric queuebridge exports: names, help texts, labels, and the recording functions
//! the layers that count call. A leaf: the scrape side, which reads the state, is
//! [`crate::exporter`].
//!
//! Names follow Prometheus' conventions: a `queuebridge_` prefix, base units in the name
//! (`_seconds`), `_total` for counters, `_ratio` for 0–1 values. Labels are bounded: `server`
//! (configured or added AMI servers), `queue`, `state` (five values), `route` (the HTTP router's
//! patterns), `status`, `event` (AMI event names queuebridge knows, else `other`) — never a
//! channel, uniqueid or caller number.
//!
//! Two kinds of upkeep:
//!
//! * **gauges are read from the state at scrape time** ([`crate::exporter::Exporter::render`]): what is exported
//!   is what the state holds at that moment, exactly, and a queue that is gone is gone from the
//!   exposition too (gauges not refreshed by a scrape expire);
//! * **counters and histograms count changes** as they happen ([`crate::exporter::count_changes`] reads the hub's
//!   change stream; the AMI client, the XMPP front end and the HTTP layer count their own).

use std::collections::BTreeMap;
use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const QUEUE_CALLERS_WAITING: &str = "queuebridge_queue_callers_waiting";
pub const QUEUE_LONGEST_WAIT: &str = "queuebridge_queue_longest_wait_seconds";
pub const QUEUE_MEMBERS: &str = "queuebridge_queue_members";
pub const QUEUE_MEMBERS_LOGGED_IN: &str = "queuebridge_queue_members_logged_in";
pub const QUEUE_SERVICE_LEVEL: &str = "queuebridge_queue_service_level_ratio";
pub const QUEUE_CALLERS_JOINED: &str = "queuebridge_queue_callers_joined_total";
pub const QUEUE_CALLERS_ANSWERED: &str = "queuebridge_queue_callers_answered_total";
pub const QUEUE_CALLERS_ABANDONED: &str = "queuebridge_queue_callers_abandoned_total";
pub const QUEUE_WAIT: &str = "queuebridge_queue_wait_seconds";
pub const QUEUE_TALK: &str = "queuebridge_queue_talk_seconds";
pub const AMI_LINK_UP: &str = "queuebridge_ami_link_up";
pub const AMI_RECONNECTS: &str = "queuebridge_ami_reconnects_total";
pub const AMI_MESSAGES: &str = "queuebridge_ami_messages_total";
pub const AMI_MALFORMED: &str = "queuebridge_ami_malformed_messages_total";
pub const AMI_INPUT_DROPPED: &str = "queuebridge_ami_input_dropped_total";
pub const AMI_ACTION_DURATION: &str = "queuebridge_ami_action_duration_seconds";
pub const AMI_RESYNC_DURATION: &str = "queuebridge_ami_last_resync_duration_seconds";
pub const XMPP_LINK_UP: &str = "queuebridge_xmpp_link_up";
pub const XMPP_SESSIONS: &str = "queuebridge_xmpp_sessions";
pub const XMPP_SUBSCRIPTIONS: &str = "queuebridge_xmpp_subscriptions";
pub const XMPP_DELIVERY: &str = "queuebridge_xmpp_delivery_seconds";
pub const HTTP_REQUESTS: &str = "queuebridge_http_requests_total";

/// The member states of [`QUEUE_MEMBERS`], in exposition order.
pub const MEMBER_STATES: [&str; 5] = ["available", "in_call", "ringing", "paused", "unavailable"];

/// Wait and talk buckets, seconds: a call centre's service levels sit between 10 s and 2 min.
const CALL_BUCKETS: [f64; 12] = [
    5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0,
];
/// AMI action buckets, seconds.
const ACTION_BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];
/// Headline delivery buckets, seconds: a client's picture should be a few milliseconds behind.
const DELIVERY_BUCKETS: [f64; 12] = [
    0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 1.0, 5.0,
];

fn describe() {
    describe_gauge!(QUEUE_CALLERS_WAITING, "Callers waiting in the queue now.");
    describe_gauge!(
        QUEUE_LONGEST_WAIT,
        Unit::Seconds,
        "How long the longest waiting caller has waited."
    );
    describe_gauge!(
        QUEUE_MEMBERS,
        "Queue members by state (available, in_call, ringing, paused, unavailable)."
    );
    describe_gauge!(
        QUEUE_MEMBERS_LOGGED_IN,
        "Members of the queue (static and logged-in dynamic ones)."
    );
    describe_gauge!(QUEUE_SERVICE_LEVEL, "Share of answered calls answered within the queue's service level (Asterisk's ServicelevelPerf / 100).");
    describe_counter!(QUEUE_CALLERS_JOINED, "Callers who joined the queue.");
    describe_counter!(QUEUE_CALLERS_ANSWERED, "Callers answered by a member.");
    describe_counter!(
        QUEUE_CALLERS_ABANDONED,
        "Callers who hung up, timed out or were withdrawn while waiting."
    );
    describe_histogram!(
        QUEUE_WAIT,
        Unit::Seconds,
        "How long answered callers waited."
    );
    describe_histogram!(
        QUEUE_TALK,
        Unit::Seconds,
        "How long answered calls lasted after the answer."
    );
    describe_gauge!(
        AMI_LINK_UP,
        "1 while the AMI link to the server is logged in."
    );
    describe_counter!(AMI_RECONNECTS, "AMI logins after the first.");
    describe_counter!(AMI_MESSAGES, "AMI events received, by event name.");
    describe_counter!(
        AMI_MALFORMED,
        "AMI messages skipped as malformed or oversized."
    );
    describe_counter!(
        AMI_INPUT_DROPPED,
        "AMI events and snapshots dropped because the state task's queue was full; each drop \
         is followed by a full resync."
    );
    describe_histogram!(
        AMI_ACTION_DURATION,
        Unit::Seconds,
        "Time from sending an AMI action to its response."
    );
    describe_gauge!(
        AMI_RESYNC_DURATION,
        Unit::Seconds,
        "How long the last full QueueStatus resync took."
    );
    describe_gauge!(XMPP_LINK_UP, "1 while the XMPP component is connected.");
    describe_gauge!(XMPP_SESSIONS, "XMPP client sessions.");
    describe_gauge!(
        XMPP_SUBSCRIPTIONS,
        "Event subscriptions of all XMPP client sessions."
    );
    describe_histogram!(
        XMPP_DELIVERY,
        Unit::Seconds,
        "Time from the fold of a change to its headlines written to the component socket, \
         one observation per write (up to 32 KiB of headlines)."
    );
    describe_counter!(HTTP_REQUESTS, "HTTP requests, by route and status code.");
}

static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();

/// What a front end with sessions reports at scrape time (the XMPP component implements it).
pub trait SessionGauges: Send + Sync {
    /// Whether its link is up, its sessions, and their subscriptions.
    fn session_gauges(&self) -> (bool, usize, usize);
}

/// Installs the process-wide recorder, once; a second daemon in the same process shares it.
/// Call it before the AMI links start, so that their first actions are recorded too.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    match HANDLE.get() {
        Some(h) => Ok(h.clone()),
        None => {
            let h = recorder()?;
            Ok(HANDLE.get_or_init(|| h).clone())
        }
    }
}

fn recorder() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(QUEUE_WAIT.into()), &CALL_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(QUEUE_TALK.into()), &CALL_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(AMI_ACTION_DURATION.into()), &ACTION_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(XMPP_DELIVERY.into()), &DELIVERY_BUCKETS)?
        // Gauges are set at every scrape; one the last scrape did not set (a queue that is
        // gone) is dropped a second later.
        .idle_timeout(
            metrics_util::MetricKindMask::GAUGE,
            Some(Duration::from_secs(1)),
        )
        .install_recorder()?;
    describe();
    Ok(handle)
}

/// Records one AMI action's round trip.
pub fn action_duration(server: &str, took: Duration) {
    histogram!(AMI_ACTION_DURATION, "server" => server.to_owned()).record(took.as_secs_f64());
}

/// Records that a chunk of headlines reached the component socket `took` after the fold that
/// made them: one observation per write, not per headline (a write carries up to 32 KiB).
pub fn xmpp_delivery(took: Duration) {
    histogram!(XMPP_DELIVERY).record(took.as_secs_f64());
}

/// How often histogram samples are folded into their buckets when nobody scrapes.
pub const UPKEEP: Duration = Duration::from_secs(5);

/// Folds the histograms' samples into their buckets every [`UPKEEP`]: the exporter keeps each
/// sample until then, so without it they would pile up between scrapes (or forever, with no
/// scraper).
pub async fn upkeep(handle: PrometheusHandle, shutdown: tokio_util::sync::CancellationToken) {
    let mut tick = tokio::time::interval(UPKEEP);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => handle.run_upkeep(),
        }
    }
}

/// Counts AMI events by name for one link; names outside the known set are counted as
/// `other`, so a server cannot grow the label set. The counters' handles are kept: no label
/// set is built and looked up per event. At most one handle per known name, one for `other`.
pub struct EventCounters {
    server: String,
    /// Whether an event name is one of the known set (the AMI layer says).
    is_known: fn(&str) -> bool,
    /// Looked up once per event, so hashed with foldhash rather than SipHash; only the fixed
    /// set of known names is ever inserted.
    known: foldhash::HashMap<String, metrics::Counter>,
    other: Option<metrics::Counter>,
}

impl EventCounters {
    pub fn new(server: &str, is_known: fn(&str) -> bool) -> Self {
        Self {
            server: server.to_owned(),
            is_known,
            known: Default::default(),
            other: None,
        }
    }

    /// Counts one AMI event.
    pub fn count(&mut self, name: &str) {
        if let Some(c) = self.known.get(name) {
            c.increment(1);
            return;
        }
        let server = self.server.clone();
        if !(self.is_known)(name) {
            self.other
                .get_or_insert_with(
                    || counter!(AMI_MESSAGES, "server" => server, "event" => "other"),
                )
                .increment(1);
            return;
        }
        let handle = counter!(AMI_MESSAGES, "server" => server, "event" => name.to_owned());
        handle.increment(1);
        self.known.insert(name.to_owned(), handle);
    }
}

/// Counts AMI inputs (events, snapshots) dropped for want of room in the state task's queue.
pub fn ami_input_dropped(server: &str, inputs: u64) {
    counter!(AMI_INPUT_DROPPED, "server" => server.to_owned()).increment(inputs);
}

/// Counts one skipped AMI message.
pub fn ami_malformed(server: &str) {
    counter!(AMI_MALFORMED, "server" => server.to_owned()).increment(1);
}

/// The last full resync's duration per server, seconds: exported at every scrape like the
/// other gauges.
static RESYNC: std::sync::Mutex<BTreeMap<String, f64>> = std::sync::Mutex::new(BTreeMap::new());

/// The last full resync's duration per server, seconds, for the scrape.
pub fn resync_durations() -> BTreeMap<String, f64> {
    RESYNC.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Records how long a full resync took.
pub fn resync_duration(server: &str, took: Duration) {
    RESYNC
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(server.to_owned(), took.as_secs_f64());
}

/// Counts one HTTP request.
pub fn http_request(route: String, status: u16) {
    counter!(HTTP_REQUESTS, "route" => route, "status" => status.to_string()).increment(1);
}
