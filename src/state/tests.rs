//! The fold as a pure function: inputs built by hand, changes and state checked exactly.
//!
//! The end-to-end tests prove the fold against a real Asterisk; these pin down each rule of
//! [`apply`] on its own — positions, races with snapshots, scopes, counters that never go back.

use std::sync::Arc;

use super::{
    apply, ChangeKind, DeviceState, Input, LinkChange, Membership, QueueIds, QueueStatus, Scope,
    State, What,
};
use crate::ami::Message;

const SERVER: &str = "pbx1";

fn state() -> State {
    State::new([SERVER], QueueIds::default())
}

fn input(at_ms: u64, what: What) -> Input {
    Input {
        server: Arc::from(SERVER),
        at_ms,
        what,
    }
}

fn message(headers: &[(&str, &str)]) -> Message {
    headers.iter().copied().collect()
}

fn event(st: &mut State, at_ms: u64, headers: &[(&str, &str)]) -> Vec<ChangeKind> {
    let changes = apply(st, &input(at_ms, What::Event(message(headers))));
    changes.into_iter().map(|c| c.kind).collect()
}

fn join(st: &mut State, queue: &str, uniqueid: &str, position: &str) -> Vec<ChangeKind> {
    event(
        st,
        10_000,
        &[
            ("Event", "QueueCallerJoin"),
            ("Queue", queue),
            ("Channel", &format!("Local/{uniqueid}@callers-0001;2")),
            ("Uniqueid", uniqueid),
            ("Linkedid", uniqueid),
            ("CallerIDNum", "<unknown>"),
            ("CallerIDName", "Alice"),
            ("Position", position),
        ],
    )
}

fn leave(st: &mut State, queue: &str, uniqueid: &str) -> Vec<ChangeKind> {
    event(
        st,
        20_000,
        &[
            ("Event", "QueueCallerLeave"),
            ("Queue", queue),
            ("Uniqueid", uniqueid),
        ],
    )
}

fn member(queue: &str, interface: &str, status: &str, calls: &str) -> Vec<(String, String)> {
    [
        ("Queue", queue),
        ("MemberName", "Agent"),
        ("Interface", interface),
        ("StateInterface", "Custom:agent"),
        ("Membership", "dynamic"),
        ("Penalty", "0"),
        ("CallsTaken", calls),
        ("LastCall", "0"),
        ("LastPause", "0"),
        ("LoginTime", "1763700000"),
        ("InCall", "0"),
        ("Status", status),
        ("Paused", "0"),
        ("PausedReason", ""),
        ("Wrapuptime", "0"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect()
}

fn member_event(st: &mut State, name: &str, fields: &[(String, String)]) -> Vec<ChangeKind> {
    let mut headers = vec![("Event", name)];
    headers.extend(fields.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    event(st, 10_000, &headers)
}

fn params(queue: &str, calls: &str) -> Message {
    message(&[
        ("Event", "QueueParams"),
        ("Queue", queue),
        ("Max", "0"),
        ("Strategy", "ringall"),
        ("Calls", calls),
        ("Holdtime", "0"),
        ("TalkTime", "0"),
        ("Completed", "0"),
        ("Abandoned", "0"),
        ("ServiceLevel", "60"),
        ("ServicelevelPerf", "0.0"),
        ("ServicelevelPerf2", "0.0"),
        ("Weight", "0"),
    ])
}

fn list_member(fields: &[(String, String)]) -> Message {
    let mut m = Message::new().with("Event", "QueueMember");
    for (k, v) in fields {
        let k = match k.as_str() {
            "Interface" => "Location",
            "MemberName" => "Name",
            k => k,
        };
        m.push(k, v);
    }
    m
}

fn entry(queue: &str, uniqueid: &str, position: &str, wait: &str) -> Message {
    message(&[
        ("Event", "QueueEntry"),
        ("Queue", queue),
        ("Position", position),
        ("Channel", &format!("Local/{uniqueid}@callers-0001;2")),
        ("Uniqueid", uniqueid),
        ("CallerIDNum", "unknown"),
        ("CallerIDName", "Alice"),
        ("Wait", wait),
        ("Priority", "5"),
    ])
}

fn snapshot(st: &mut State, at_ms: u64, scope: Scope, items: Vec<Message>) -> Vec<ChangeKind> {
    let what = What::Snapshot(QueueStatus { scope, items });
    apply(st, &input(at_ms, what))
        .into_iter()
        .map(|c| c.kind)
        .collect()
}

fn positions(st: &State, queue: &str) -> Vec<(String, i64)> {
    st.queue(SERVER, queue)
        .map(|q| {
            q.waiting()
                .map(|w| (w.caller.uniqueid.to_string(), w.position))
                .collect()
        })
        .unwrap_or_default()
}

fn uid(s: &str) -> String {
    s.to_owned()
}

#[test]
fn callers_are_placed_at_their_position_and_move_up_as_others_leave() {
    let mut st = state();
    let first = join(&mut st, "sales", "1.1", "1");
    // The first mention of a queue creates it, then the caller joins.
    assert!(matches!(&first[0], ChangeKind::QueueUpdated { queue, .. } if &**queue == "sales"));
    assert!(matches!(&first[1], ChangeKind::CallerJoined { caller, .. }
        if caller.position == 1 && caller.caller.entered == 10
            && caller.caller.caller_id_num.is_empty()));
    join(&mut st, "sales", "1.2", "2");
    join(&mut st, "sales", "1.3", "3");
    // A higher priority caller is placed ahead by Asterisk: position 1.
    join(&mut st, "sales", "1.4", "1");
    assert_eq!(
        positions(&st, "sales"),
        [
            (uid("1.4"), 1),
            (uid("1.1"), 2),
            (uid("1.2"), 3),
            (uid("1.3"), 4)
        ]
    );
    let left = leave(&mut st, "sales", "1.1");
    assert!(matches!(
        &left[..],
        [ChangeKind::CallerLeft {
            position: 2,
            abandoned: false,
            ..
        }]
    ));
    // Asterisk does not re-announce positions: everyone behind moved up by one.
    assert_eq!(
        positions(&st, "sales"),
        [(uid("1.4"), 1), (uid("1.2"), 2), (uid("1.3"), 3)]
    );
    assert_eq!(st.queue(SERVER, "sales").map(|q| q.stats.calls), Some(3));
}

#[test]
fn a_position_past_the_end_appends_and_an_unknown_leave_changes_nothing() {
    let mut st = state();
    join(&mut st, "sales", "1.1", "7");
    assert_eq!(positions(&st, "sales"), [(uid("1.1"), 1)]);
    assert!(leave(&mut st, "sales", "9.9").is_empty());
}

#[test]
fn abandon_marks_the_caller_and_its_leave_says_so() {
    let mut st = state();
    join(&mut st, "sales", "1.1", "1");
    let abandon = event(
        &mut st,
        15_000,
        &[
            ("Event", "QueueCallerAbandon"),
            ("Queue", "sales"),
            ("Uniqueid", "1.1"),
            ("Position", "1"),
            ("OriginalPosition", "1"),
            ("HoldTime", "5"),
        ],
    );
    assert!(
        abandon.is_empty(),
        "abandon alone publishes nothing: the leave follows"
    );
    let left = leave(&mut st, "sales", "1.1");
    assert!(matches!(
        &left[..],
        [ChangeKind::CallerLeft {
            abandoned: true,
            ..
        }]
    ));
}

#[test]
fn a_repeated_member_event_changes_nothing() {
    let mut st = state();
    let m = member("sales", "Local/agent1@agents", "1", "0");
    let first = member_event(&mut st, "QueueMemberAdded", &m);
    assert!(
        matches!(&first[..], [ChangeKind::QueueUpdated { .. }, ChangeKind::MemberUpdated { member, .. }]
        if member.status == DeviceState::NotInUse && member.membership == Membership::Dynamic)
    );
    assert!(member_event(&mut st, "QueueMemberStatus", &m).is_empty());
    let ringing = member("sales", "Local/agent1@agents", "6", "0");
    let changed = member_event(&mut st, "QueueMemberStatus", &ringing);
    assert!(
        matches!(&changed[..], [ChangeKind::MemberUpdated { member, .. }]
        if member.status == DeviceState::Ringing)
    );
}

#[test]
fn an_event_older_than_the_snapshot_never_takes_back_a_call_count() {
    let mut st = state();
    let counted = member("sales", "Local/agent1@agents", "1", "3");
    snapshot(
        &mut st,
        10_000,
        Scope::All,
        vec![params("sales", "0"), list_member(&counted)],
    );
    // Queued before the snapshot: CallsTaken 2 — the snapshot's 3 stays.
    let stale = member("sales", "Local/agent1@agents", "2", "2");
    member_event(&mut st, "QueueMemberStatus", &stale);
    let m = st
        .queue(SERVER, "sales")
        .and_then(|q| q.members.get("Local/agent1@agents"));
    assert_eq!(
        m.map(|m| (m.calls_taken, m.status)),
        Some((3, DeviceState::InUse))
    );
}

#[test]
fn removing_a_member_publishes_once() {
    let mut st = state();
    member_event(
        &mut st,
        "QueueMemberAdded",
        &member("sales", "Local/agent1@agents", "1", "0"),
    );
    let removed = member_event(
        &mut st,
        "QueueMemberRemoved",
        &member("sales", "Local/agent1@agents", "1", "0"),
    );
    assert!(
        matches!(&removed[..], [ChangeKind::MemberRemoved { interface, .. }]
        if interface == "Local/agent1@agents")
    );
    let again = member_event(
        &mut st,
        "QueueMemberRemoved",
        &member("sales", "Local/agent1@agents", "1", "0"),
    );
    assert!(again.is_empty());
}

#[test]
fn connect_links_caller_and_member_until_complete() {
    let mut st = state();
    member_event(
        &mut st,
        "QueueMemberAdded",
        &member("sales", "Local/agent1@agents", "1", "0"),
    );
    let agent = |name: &'static str| {
        vec![
            ("Event", name),
            ("Queue", "sales"),
            ("Uniqueid", "1.1"),
            ("Channel", "Local/alice@callers-0001;2"),
            ("CallerIDNum", "100"),
            ("Interface", "Local/agent1@agents"),
            ("MemberName", "Agent"),
            ("HoldTime", "4"),
            ("RingTime", "2"),
            ("TalkTime", "30"),
            ("Reason", "caller"),
        ]
    };
    let connected = event(&mut st, 30_000, &agent("AgentConnect"));
    assert!(matches!(&connected[..], [
        ChangeKind::MemberUpdated { member, .. },
        ChangeKind::CallConnected { call, .. },
    ] if member.in_call && call.interface == "Local/agent1@agents" && call.connected_at == 30));
    let q = st.queue(SERVER, "sales");
    assert_eq!(q.map(|q| q.connected_calls.len()), Some(1));

    let done = event(&mut st, 60_000, &agent("AgentComplete"));
    assert!(matches!(&done[..], [
        ChangeKind::MemberUpdated { member, .. },
        ChangeKind::CallCompleted { reason, talk_time: 30, .. },
    ] if !member.in_call && reason == "caller"));
    let q = st.queue(SERVER, "sales");
    assert_eq!(q.map(|q| q.connected_calls.len()), Some(0));
    // CallsTaken is not guessed: the client's targeted QueueStatus reads it back.
    let m = q.and_then(|q| q.members.get("Local/agent1@agents"));
    assert_eq!(m.map(|m| m.calls_taken), Some(0));
}

#[test]
fn a_complete_without_its_caller_block_ends_the_call_the_member_answered() {
    // Asterisk 22 sends AgentComplete without the caller's channel fields when the caller's
    // channel is gone before the event is built (seen against a real Asterisk).
    let mut st = state();
    for (interface, uniqueid, dest) in [
        ("Local/agent1@agents", "1.1", "Local/agent1@agents-0001;1"),
        ("Local/agent2@agents", "1.2", "Local/agent2@agents-0002;1"),
    ] {
        member_event(
            &mut st,
            "QueueMemberAdded",
            &member("sales", interface, "1", "0"),
        );
        event(
            &mut st,
            30_000,
            &[
                ("Event", "AgentConnect"),
                ("Queue", "sales"),
                ("Uniqueid", uniqueid),
                ("Interface", interface),
                ("DestChannel", dest),
            ],
        );
    }
    let complete = |dest: &'static str| {
        vec![
            ("Event", "AgentComplete"),
            ("Queue", "sales"),
            ("Interface", "Local/agent2@agents"),
            ("MemberName", "Agent"),
            ("DestChannel", dest),
            ("TalkTime", "30"),
            ("Reason", "caller"),
        ]
    };
    // By the agent's channel when the Dest block is there …
    let done = event(&mut st, 60_000, &complete("Local/agent2@agents-0002;1"));
    assert!(matches!(&done[..], [
        ChangeKind::MemberUpdated { .. },
        ChangeKind::CallCompleted { uniqueid, .. },
    ] if uniqueid == "1.2"));
    let calls = |st: &State| {
        st.queue(SERVER, "sales").map(|q| {
            q.connected_calls
                .iter()
                .map(|c| c.uniqueid.to_string())
                .collect::<Vec<_>>()
        })
    };
    assert_eq!(calls(&st), Some(vec!["1.1".to_owned()]));
    // … by the member's interface when it is not.
    let mut by_member = complete("");
    by_member[2].1 = "Local/agent1@agents";
    let done = event(&mut st, 61_000, &by_member);
    assert!(
        matches!(&done[..], [.., ChangeKind::CallCompleted { uniqueid, .. }] if uniqueid == "1.1")
    );
    assert_eq!(calls(&st), Some(vec![]));
}

#[test]
fn a_snapshot_racing_a_join_neither_doubles_nor_loses_the_caller() {
    let mut st = state();
    join(&mut st, "sales", "1.1", "1");
    // The snapshot was taken after the join: it lists the caller with a priority.
    let changes = snapshot(
        &mut st,
        12_000,
        Scope::Queue("sales".into()),
        vec![params("sales", "1"), entry("sales", "1.1", "1", "2")],
    );
    assert!(changes
        .iter()
        .all(|c| !matches!(c, ChangeKind::CallerJoined { .. })));
    let q = st.queue(SERVER, "sales");
    let callers: Vec<_> = q
        .map(|q| q.callers.iter().cloned().collect())
        .unwrap_or_default();
    assert_eq!(callers.len(), 1);
    // What only the event knew (entered, linkedid) is kept; what only QueueStatus tells
    // (priority) is taken.
    assert_eq!(
        (
            callers[0].entered,
            callers[0].priority,
            callers[0].linkedid.as_str()
        ),
        (10, 5, "1.1")
    );
    // Re-applying the join (it was queued before the snapshot) changes nothing.
    assert!(join(&mut st, "sales", "1.1", "1").is_empty());
}

#[test]
fn a_caller_first_seen_in_a_snapshot_entered_wait_seconds_ago() {
    let mut st = state();
    snapshot(
        &mut st,
        100_000,
        Scope::All,
        vec![params("sales", "1"), entry("sales", "1.1", "1", "30")],
    );
    let q = st.queue(SERVER, "sales");
    let first = q.and_then(|q| q.callers.iter().next());
    assert_eq!(first.map(|c| c.entered), Some(70));
}

#[test]
fn a_queue_first_seen_in_a_snapshot_is_announced_once_with_its_statistics() {
    let mut st = state();
    let quiet = snapshot(
        &mut st,
        0,
        Scope::Merge,
        vec![
            params("sales", "0"),
            list_member(&member("sales", "Local/agent1@agents", "1", "0")),
        ],
    );
    assert!(
        matches!(&quiet[..], [ChangeKind::QueueUpdated { stats, .. }, ChangeKind::MemberUpdated { .. }]
        if stats.strategy == "ringall" && stats.service_level == 60 && stats.calls == 0)
    );
    // With callers, the count follows them: every announcement agrees with the callers
    // published before it.
    let busy = snapshot(
        &mut st,
        0,
        Scope::Merge,
        vec![params("support", "1"), entry("support", "1.1", "1", "5")],
    );
    assert!(matches!(&busy[..], [
        ChangeKind::QueueUpdated { stats: before, .. },
        ChangeKind::CallerJoined { .. },
        ChangeKind::QueueUpdated { stats: after, .. },
    ] if before.calls == 0 && before.strategy == "ringall" && after.calls == 1));
}

#[test]
fn a_full_snapshot_removes_what_is_gone_and_marks_the_link_synced() {
    let mut st = state();
    apply(&mut st, &input(0, What::Link(LinkChange::Up)));
    join(&mut st, "old", "1.1", "1");
    member_event(
        &mut st,
        "QueueMemberAdded",
        &member("sales", "Local/agent9@agents", "1", "0"),
    );
    let changes = snapshot(
        &mut st,
        10_000,
        Scope::All,
        vec![
            params("sales", "0"),
            list_member(&member("sales", "Local/agent1@agents", "1", "0")),
        ],
    );
    assert!(changes
        .iter()
        .any(|c| matches!(c, ChangeKind::QueueRemoved { queue, .. } if &**queue == "old")));
    assert!(changes.iter().any(
        |c| matches!(c, ChangeKind::MemberRemoved { interface, .. } if interface == "Local/agent9@agents")
    ));
    assert!(matches!(changes.last(), Some(ChangeKind::Link(l)) if l.synced && l.connected));
    assert!(st.all_synced());
    let members: Vec<String> = st
        .queue(SERVER, "sales")
        .map(|q| q.members.keys().map(str::to_owned).collect())
        .unwrap_or_default();
    assert_eq!(members, ["Local/agent1@agents"]);
}

#[test]
fn a_callers_only_snapshot_keeps_the_members() {
    let mut st = state();
    member_event(
        &mut st,
        "QueueMemberAdded",
        &member("sales", "Local/agent1@agents", "1", "0"),
    );
    snapshot(
        &mut st,
        10_000,
        Scope::Callers("sales".into()),
        vec![params("sales", "1"), entry("sales", "1.1", "1", "0")],
    );
    let q = st.queue(SERVER, "sales");
    assert_eq!(q.map(|q| (q.members.len(), q.callers.len())), Some((1, 1)));
}

#[test]
fn a_merge_snapshot_removes_nothing_and_does_not_mark_synced() {
    let mut st = state();
    apply(&mut st, &input(0, What::Link(LinkChange::Up)));
    join(&mut st, "support", "1.1", "1");
    snapshot(&mut st, 10_000, Scope::Merge, vec![params("sales", "0")]);
    assert!(st.queue(SERVER, "support").is_some());
    assert!(st.queue(SERVER, "sales").is_some());
    assert!(!st.all_synced());
}

#[test]
fn link_down_is_published_once_and_sequence_numbers_only_grow() {
    let mut st = state();
    let mut seqs = Vec::new();
    for what in [
        What::Link(LinkChange::Up),
        What::Link(LinkChange::Down("connection reset".into())),
        What::Link(LinkChange::Down("connection reset".into())),
    ] {
        seqs.extend(apply(&mut st, &input(0, what)).iter().map(|c| c.seq));
    }
    assert_eq!(seqs.len(), 2, "the repeated Down changed nothing");
    join(&mut st, "sales", "1.1", "1");
    let after = apply(
        &mut st,
        &input(
            0,
            What::Event(message(&[
                ("Event", "QueueCallerLeave"),
                ("Queue", "sales"),
                ("Uniqueid", "1.1"),
            ])),
        ),
    );
    seqs.extend(after.iter().map(|c| c.seq));
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert_eq!(st.seq, *seqs.last().unwrap_or(&0));
}

#[test]
fn events_of_other_modules_change_nothing() {
    let mut st = state();
    let changes = event(
        &mut st,
        0,
        &[("Event", "Newchannel"), ("Channel", "PJSIP/100-0001")],
    );
    assert!(changes.is_empty());
    assert_eq!(st.seq, 0);
}

#[test]
fn a_removed_server_takes_its_queues_along_and_says_so_last() {
    let mut st = state();
    join(&mut st, "sales", "1.1", "1");
    join(&mut st, "support", "1.2", "1");
    let changes: Vec<ChangeKind> = apply(&mut st, &input(0, What::Link(LinkChange::Removed)))
        .into_iter()
        .map(|c| c.kind)
        .collect();
    assert_eq!(changes.len(), 3, "{changes:?}");
    assert!(matches!(changes[0], ChangeKind::QueueRemoved { .. }));
    assert!(matches!(changes[1], ChangeKind::QueueRemoved { .. }));
    assert_eq!(changes[2], ChangeKind::ServerRemoved);
    assert!(st.servers.is_empty());
    let again = apply(&mut st, &input(0, What::Link(LinkChange::Removed)));
    assert!(again.is_empty(), "removing twice changes nothing");
}

/// One step of a random stream: events about a few callers and members of two queues, and
/// now and then a QueueStatus snapshot or a link change.
/// A member's device state and membership are enums in the model; the JSON keeps Asterisk's
/// number, name and word.
#[test]
fn a_member_serializes_its_device_state_as_number_and_name() {
    let m = super::Member {
        interface: "PJSIP/201".into(),
        status: DeviceState::from_code(2),
        membership: Membership::from_ami("static"),
        ..Default::default()
    };
    let v = serde_json::to_value(&m).unwrap_or_default();
    assert_eq!(v["status"], 2);
    assert_eq!(v["status_name"], "In use");
    assert_eq!(v["membership"], "static");
    assert_eq!(DeviceState::from_code(42), DeviceState::Unknown);
    assert_eq!(Membership::from_ami("realtime"), Membership::Realtime);
}

#[derive(Clone, Debug)]
enum Step {
    Join(usize, usize, i64),
    Leave(usize, usize),
    Abandon(usize, usize),
    Agent(&'static str, usize, usize, usize),
    Member(&'static str, usize, usize, u8, bool),
    Removed(usize, usize),
    /// Scope (0 all, 1 one queue, 2 its callers only), queue, callers listed (in that order,
    /// one bit per caller), members listed (one bit per member).
    Snapshot(u8, usize, Vec<usize>, u8),
    Link(bool),
}

const QUEUES: [&str; 2] = ["sales", "support"];

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    let q = 0..QUEUES.len();
    let caller = 0usize..10;
    let member = 0usize..4;
    prop_oneof![
        6 => (q.clone(), caller.clone(), 0i64..14).prop_map(|(q, c, p)| Step::Join(q, c, p)),
        4 => (q.clone(), caller.clone()).prop_map(|(q, c)| Step::Leave(q, c)),
        1 => (q.clone(), caller.clone()).prop_map(|(q, c)| Step::Abandon(q, c)),
        6 => (
            prop::sample::select(vec![
                "AgentCalled", "AgentRingNoAnswer", "AgentConnect", "AgentComplete", "AgentDump",
            ]),
            q.clone(),
            caller.clone(),
            member.clone(),
        )
            .prop_map(|(e, q, c, m)| Step::Agent(e, q, c, m)),
        3 => (
            prop::sample::select(vec!["QueueMemberStatus", "QueueMemberAdded", "QueueMemberPause"]),
            q.clone(),
            member.clone(),
            0u8..9,
            any::<bool>(),
        )
            .prop_map(|(e, q, m, st, p)| Step::Member(e, q, m, st, p)),
        1 => (q.clone(), member).prop_map(|(q, m)| Step::Removed(q, m)),
        1 => (
            0u8..3,
            q,
            proptest::collection::vec(caller, 0..8),
            any::<u8>(),
        )
            .prop_map(|(s, q, c, m)| Step::Snapshot(s, q, c, m)),
        1 => any::<bool>().prop_map(Step::Link),
    ]
}

fn caller_headers(event: &str, q: usize, c: usize) -> Vec<(String, String)> {
    [
        ("Event", event.to_owned()),
        ("Queue", QUEUES[q].to_owned()),
        ("Channel", format!("PJSIP/trunk-{c:04}")),
        ("Uniqueid", format!("1763700000.{c}")),
        ("Linkedid", format!("1763700000.{c}")),
        ("CallerIDNum", format!("49{c}")),
        ("CallerIDName", format!("Caller {c}")),
        ("Exten", "100".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

fn interface(m: usize) -> String {
    format!("PJSIP/{}", 200 + m)
}

fn member_fields(q: usize, m: usize, status: u8, paused: bool) -> Vec<(String, String)> {
    let mut fields = member(
        QUEUES[q],
        &interface(m),
        &status.to_string(),
        &m.to_string(),
    );
    fields.push(("Paused".into(), u8::from(paused).to_string()));
    fields
}

fn inputs_of(step: &Step, at_ms: u64) -> Vec<Input> {
    let msg = |headers: Vec<(String, String)>| {
        let pairs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        input(at_ms, What::Event(message(&pairs)))
    };
    match step {
        Step::Join(q, c, p) => {
            let mut h = caller_headers("QueueCallerJoin", *q, *c);
            h.push(("Position".into(), p.to_string()));
            vec![msg(h)]
        }
        Step::Leave(q, c) => vec![msg(caller_headers("QueueCallerLeave", *q, *c))],
        Step::Abandon(q, c) => vec![msg(caller_headers("QueueCallerAbandon", *q, *c))],
        Step::Agent(e, q, c, m) => {
            let mut h = caller_headers(e, *q, *c);
            h.extend(
                [
                    ("Interface", interface(*m)),
                    ("MemberName", format!("Agent {m}")),
                    ("DestChannel", format!("{}-0001", interface(*m))),
                    ("HoldTime", "4".into()),
                    ("RingTime", "2".into()),
                    ("TalkTime", "30".into()),
                    ("Reason", "caller".into()),
                ]
                .map(|(k, v)| (k.to_owned(), v)),
            );
            vec![msg(h)]
        }
        Step::Member(e, q, m, status, paused) => {
            let mut h = vec![("Event".to_owned(), (*e).to_owned())];
            h.extend(member_fields(*q, *m, *status, *paused));
            vec![msg(h)]
        }
        Step::Removed(q, m) => vec![msg(vec![
            ("Event".into(), "QueueMemberRemoved".into()),
            ("Queue".into(), QUEUES[*q].into()),
            ("Interface".into(), interface(*m)),
        ])],
        Step::Snapshot(scope, q, callers, members) => {
            let listed: Vec<usize> = match scope {
                0 => (0..QUEUES.len()).collect(),
                _ => vec![*q],
            };
            let mut items = Vec::new();
            for &q in &listed {
                items.push(params(QUEUES[q], "0"));
                for m in (0..4).filter(|m| members & (1 << m) != 0) {
                    items.push(list_member(&member_fields(q, m, 1, false)));
                }
                let mut seen = Vec::new();
                for &c in callers {
                    if seen.contains(&c) {
                        continue;
                    }
                    seen.push(c);
                    let position = seen.len().to_string();
                    items.push(entry(QUEUES[q], &format!("1763700000.{c}"), &position, "3"));
                }
            }
            let scope = match scope {
                0 => Scope::All,
                1 => Scope::Queue(QUEUES[*q].into()),
                _ => Scope::Callers(QUEUES[*q].into()),
            };
            vec![input(at_ms, What::Snapshot(QueueStatus { scope, items }))]
        }
        Step::Link(up) => {
            let change = if *up {
                LinkChange::Up
            } else {
                LinkChange::Down("gone".into())
            };
            vec![input(at_ms, What::Link(change))]
        }
    }
}

/// The state as JSON, with each queue's `ringing` in a canonical order: the scanning fold
/// listed it in AgentCalled order across callers, the indexed one caller by caller.
fn canonical(mut snapshot: serde_json::Value) -> serde_json::Value {
    if let Some(queues) = snapshot["queues"].as_array_mut() {
        for q in queues {
            if let Some(ringing) = q["ringing"].as_array_mut() {
                ringing.sort_by_key(|r| r.to_string());
            }
        }
    }
    snapshot
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// On any stream the indexed fold publishes exactly the changes the scanning fold did, and
    /// ends in the same state.
    #[test]
    fn the_indexed_fold_equals_the_scanning_one(
        steps in proptest::collection::vec(step(), 0..120),
    ) {
        let mut indexed = state();
        let mut scanning = super::reference::State::new([SERVER], QueueIds::default());
        for (i, step) in steps.iter().enumerate() {
            for input in inputs_of(step, 1_000 * i as u64) {
                let new = serde_json::to_value(apply(&mut indexed, &input)).ok();
                let old = serde_json::to_value(super::reference::apply(&mut scanning, &input)).ok();
                proptest::prop_assert_eq!(new, old, "changes of step {} {:?}", i, step);
            }
        }
        let new = serde_json::to_value(indexed.snapshot()).map(canonical).ok();
        let old = serde_json::to_value(scanning.snapshot()).map(canonical).ok();
        proptest::prop_assert_eq!(new, old);
    }
}

proptest::proptest! {
    /// The members of a queue, found by binary search when few and by their index when many,
    /// behave as a map kept in interface order, across every crossing of the threshold.
    #[test]
    fn members_behave_as_an_ordered_map_indexed_or_not(
        ops in proptest::collection::vec((0u8..4, 0usize..3 * super::model::INDEXED_FROM), 0..400),
    ) {
        use super::{Member, Members};
        use std::collections::BTreeMap;
        let interface = |k: usize| format!("PJSIP/agent-{k:04}");
        let mut members = Members::default();
        let mut oracle: BTreeMap<String, i64> = BTreeMap::new();
        for (step, (op, k)) in ops.into_iter().enumerate() {
            let key = interface(k);
            match op {
                0 | 1 => {
                    let old = members.insert(Member {
                        interface: key.as_str().into(),
                        penalty: step as i64,
                        ..Member::default()
                    });
                    let expected = oracle.insert(key.clone(), step as i64);
                    proptest::prop_assert_eq!(old.map(|m| m.penalty), expected);
                }
                2 => {
                    let gone = members.remove(&key).map(|m| m.penalty);
                    proptest::prop_assert_eq!(gone, oracle.remove(&key));
                }
                _ => {
                    members.retain(|m| m.penalty % 3 != 0);
                    oracle.retain(|_, p| *p % 3 != 0);
                }
            }
            proptest::prop_assert_eq!(members.len(), oracle.len());
            proptest::prop_assert!(members.keys().eq(oracle.keys().map(String::as_str)));
            for k in 0..3 * super::model::INDEXED_FROM {
                let key = interface(k);
                proptest::prop_assert_eq!(
                    members.get(&key).map(|m| m.penalty),
                    oracle.get(&key).copied()
                );
            }
        }
    }
}
