//! The pascom XMPP component end to end: a real Prosody (with the repository's mod_pascom), real
//! slixmpp clients sending the seed's stanzas verbatim — without `to` — and a real Asterisk whose
//! own QueueStatus every answer and event is checked against.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::prosody::{Client, Prosody, COMPONENT, DOMAIN};
use common::proxy::Proxy;
use common::{free_port, sample, until, Asterisk, Bridge, Driver, QUEUE_IDS};
use queuebridge::ami::Message;
use tokio_xmpp::minidom::Element;

const NS: &str = "http://www.pascom.net/mobydick";

// The seed's commands, verbatim (../shared/seeds/000_de3fad11389a6349.txt).
const FIND_OWN_STATE: &str = r#"<iq id="kJHfh-39" type="get">
      <cmd xmlns="http://www.pascom.net/mobydick" module="queue">
        <FindOwnState/>
      </cmd>
    </iq>"#;
const FIND_QUEUE_STATE: &str = r#"<iq id="bWHfh-36" type="get">
      <cmd xmlns="http://www.pascom.net/mobydick" module="queue">
        <FindQueueState name="Support"/>
      </cmd>
    </iq>"#;
const AGENT_LOGIN: &str = r#"<iq id="bWHfh-37" type="get">
      <cmd xmlns="http://www.pascom.net/mobydick" module="queue">
        <AgentLogin queue="Support" penalty=""/>
      </cmd>
    </iq>"#;
const AGENT_LOGOUT: &str = r#"<iq id="bWHfh-38" type="get">
      <cmd xmlns="http://www.pascom.net/mobydick" module="queue">
        <AgentLogout queue="Support"/>
      </cmd>
    </iq>"#;
const AGENT_PAUSE: &str = r#"<iq id="bWHfh-39" type="get">
      <cmd xmlns="http://www.pascom.net/mobydick" module="queue">
        <AgentPause queue="Support" reason="postprocessing"/>
      </cmd>
    </iq>"#;
const AGENT_UNPAUSE: &str = r#"<iq id="bWHfh-39" type="get">
      <cmd xmlns="http://www.pascom.net/mobydick" module="queue">
        <AgentUnpause queue="Support" reason="postprocessing"/>
      </cmd>
    </iq>"#;

const EVERYTHING: &str = r#"<Subscription module="queue" type="*" scope="supervisor"/>"#;

const TWEBER: &str = "Local/agent4@agents/n";

/// The seed's cast: tweber a dynamic agent of support, mmeyer a static member of sales only,
/// mpasquay a supervisor; the seed's pause reasons plus the one its AgentPause example uses.
fn users() -> String {
    let pw = queuebridge::access::hash_password("pw").expect("hash");
    format!(
        r#"
{QUEUE_IDS}
[[users]]
name = "tweber"
password_hash = "{pw}"
interface = "{TWEBER}"
state_interface = "Custom:agent4"
display_name = "Thomas Weber"
extension = "340"
queues = ["support"]
[[users]]
name = "mmeyer"
password_hash = "{pw}"
interface = "Local/agent1@agents/n"
display_name = "Markus Meyer"
extension = "360"
[[users]]
name = "mpasquay"
password_hash = "{pw}"
interface = "Local/agent2@agents/n"
display_name = "Mathias Pasquay"
extension = "320"
roles = ["supervisor"]
[[pause_reasons]]
code = "10"
reason = "Backoffice"
[[pause_reasons]]
code = "20"
reason = "Lunch"
"#
    )
}

/// Parses a stanza as slixmpp prints it (without the stream's `jabber:client` namespace).
fn parse(xml: &str) -> Element {
    let head = &xml[..xml.find('>').unwrap_or(xml.len())];
    let xml = if head.contains("xmlns=") {
        xml.to_owned()
    } else {
        xml.replacen(' ', " xmlns=\"jabber:client\" ", 1)
    };
    xml.parse()
        .unwrap_or_else(|e| panic!("unparseable stanza {xml}: {e}"))
}

/// The `<cmd/>` of a stanza, and the module and name of its one child.
fn cmd(xml: &str) -> (String, Element) {
    let stanza = parse(xml);
    let cmd = stanza
        .get_child("cmd", NS)
        .unwrap_or_else(|| panic!("no cmd in {xml}"));
    let module = cmd.attr("module").unwrap_or_default().to_owned();
    let child = cmd
        .children()
        .next()
        .unwrap_or_else(|| panic!("empty cmd in {xml}"))
        .clone();
    (format!("{module}.{}", child.name()), child)
}

/// Every QueueMemberState below `e`: its attributes plus `phone` and `displayname`.
fn member_states(e: &Element) -> Vec<BTreeMap<String, String>> {
    let mut out = Vec::new();
    let mut stack = vec![e];
    while let Some(e) = stack.pop() {
        if e.name() == "QueueMemberState" {
            let mut m: BTreeMap<String, String> = e
                .attrs()
                .iter()
                .map(|((_, k), v)| (k.to_string(), v.to_owned()))
                .collect();
            let pb = e.get_child("PhonebookEntry", NS).expect("PhonebookEntry");
            for f in ["phone", "displayname", "type"] {
                m.insert(
                    f.into(),
                    pb.get_child(f, NS).map(|c| c.text()).unwrap_or_default(),
                );
            }
            out.push(m);
        }
        stack.extend(e.children());
    }
    out.sort_by(|a, b| (&a["queue"], &a["agent"]).cmp(&(&b["queue"], &b["agent"])));
    out
}

fn state_of<'a>(
    states: &'a [BTreeMap<String, String>],
    queue: &str,
    agent: &str,
) -> &'a BTreeMap<String, String> {
    states
        .iter()
        .find(|s| s["queue"] == queue && s["agent"] == agent)
        .unwrap_or_else(|| panic!("no state of {agent} in {queue}: {states:?}"))
}

fn failure_text(xml: &str) -> String {
    let (name, body) = cmd(xml);
    assert_eq!(name, "base.Failure", "{xml}");
    body.get_child("message", NS)
        .map(|m| m.text())
        .unwrap_or_default()
}

fn assert_success(xml: &str) {
    let (name, _) = cmd(xml);
    assert_eq!(name, "base.Success", "{xml}");
    assert!(xml.contains("<message>Ok</message>"), "{xml}");
}

fn client_info(id: &str, subscriptions: &str) -> String {
    format!(
        r#"<iq id="{id}" type="get"><cmd xmlns="{NS}" module="xmppuser"><ClientInfo><os/><user/><jid/><clientIp/><AddSubscription>{subscriptions}</AddSubscription></ClientInfo></cmd></iq>"#
    )
}

fn command(id: &str, module: &str, body: &str) -> String {
    format!(r#"<iq id="{id}" type="get"><cmd xmlns="{NS}" module="{module}">{body}</cmd></iq>"#)
}

/// Waits until queuebridge answers through Prosody (the component is connected).
async fn answered(client: &mut Client) {
    let mut n = 0;
    until("the component to answer", async || {
        n += 1;
        let id = format!("probe-{n}");
        client.send(&command(&id, "queue", "<FindOwnState/>"));
        let marker = format!("id=\"{id}\"");
        let answer = client.wait_for(Duration::from_secs(2), |s| s.contains(&marker))?;
        (answer.contains("type=\"result\"") && answer.contains("QueueMemberStates")).then_some(())
    })
    .await;
}

/// The next pushed event of the queue module named `name` (headline from the component).
fn event(client: &mut Client, name: &str) -> Element {
    let needle = format!("<{name} ");
    let xml = client
        .wait_for(Duration::from_secs(15), |s| {
            s.starts_with("<message") && s.contains(&needle)
        })
        .unwrap_or_else(|| panic!("{}: no {name} event", client.jid));
    let stanza = parse(&xml);
    assert_eq!(stanza.attr("from"), Some(COMPONENT), "{xml}");
    assert_eq!(stanza.attr("type"), Some("headline"), "{xml}");
    assert_eq!(stanza.attr("to"), Some(client.jid.as_str()), "{xml}");
    cmd(&xml).1
}

fn no_event(client: &mut Client, name: &str, within: Duration) {
    let needle = format!("<{name} ");
    if let Some(xml) = client.wait_for(within, |s| s.starts_with("<message") && s.contains(&needle))
    {
        panic!("{}: unexpected event {xml}", client.jid);
    }
}

struct Setup {
    ast: Asterisk,
    driver: Driver,
    prosody: Prosody,
    bridge: Bridge,
    /// Between queuebridge and Prosody's component port, when asked for.
    proxy: Option<Proxy>,
    /// Where queuebridge's `/metrics` is.
    metrics_port: u16,
}

async fn setup() -> Setup {
    setup_with(false).await
}

async fn setup_with(proxied: bool) -> Setup {
    let ast = Asterisk::start();
    let mut driver = Driver::connect(ast.port).await;
    for agent in ["agent1", "agent2", "agent3", "agent4"] {
        driver.agent_mode(agent, Some("noanswer")).await;
        driver.devstate(agent, "NOT_INUSE").await;
    }
    let prosody = Prosody::start(&[("tweber", "pw"), ("mmeyer", "pw"), ("mpasquay", "pw")]);
    let proxy = match proxied {
        true => Some(Proxy::start(prosody.component_port).await),
        false => None,
    };
    let xmpp = match &proxy {
        Some(p) => prosody.xmpp_config_via(p.port),
        None => prosody.xmpp_config(),
    };
    let metrics_port = free_port();
    let metrics = format!("[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n");
    let bridge = Bridge::start_extra(ast.port, &format!("{}{xmpp}{metrics}", users()));
    bridge.wait_health(200).await;
    Setup {
        ast,
        driver,
        prosody,
        bridge,
        proxy,
        metrics_port,
    }
}

/// The sample `name{labels}` of queuebridge's `/metrics`.
async fn metric(port: u16, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    sample(&text, name, labels)
}

#[tokio::test(flavor = "multi_thread")]
async fn seed_commands_and_events_equal_asterisk() {
    let Setup {
        ast: _ast,
        mut driver,
        prosody,
        bridge,
        metrics_port,
        ..
    } = setup().await;
    let mut tweber = prosody.client("tweber", "pw", "mdfxclient_tw");
    let mut mmeyer = prosody.client("mmeyer", "pw", "desk");
    let mut boss = prosody.client("mpasquay", "pw", "desk");
    answered(&mut tweber).await;

    // Session handshake: UserInfo with identity, roles, own states and the subscriptions.
    let info = tweber.request(
        "ci-1",
        &client_info("ci-1", r#"<Subscription module="queue" type="*"/>"#),
    );
    let stanza = parse(&info);
    // mod_pascom gives the answer the address the client used: its own account.
    assert_eq!(
        stanza.attr("from"),
        Some(format!("tweber@{DOMAIN}").as_str()),
        "{info}"
    );
    let (name, user_info) = cmd(&info);
    assert_eq!(name, "xmppuser.UserInfo");
    assert_eq!(user_info.attr("name"), Some("tweber"));
    let identity = user_info.get_child("Identity", NS).expect("Identity");
    assert_eq!(
        identity.get_child("db_003use_bez", NS).map(|e| e.text()),
        Some("Thomas Weber".into())
    );
    assert_eq!(
        identity
            .get_child("db_009ext_extension", NS)
            .map(|e| e.text()),
        Some("340".into())
    );
    assert!(!info.contains("xmpp.supervisor"), "{info}");
    let subs = user_info
        .get_child("SubscriptionList", NS)
        .expect("SubscriptionList");
    let sub = subs.children().next().expect("the subscription");
    assert_eq!(
        (sub.attr("module"), sub.attr("type"), sub.attr("scope")),
        (Some("queue"), Some("*"), Some("user"))
    );
    let own = member_states(&user_info);
    assert_eq!(own.len(), 1, "{own:?}");
    let s = state_of(&own, "support", "tweber");
    assert_eq!(
        (
            s["dynamic"].as_str(),
            s["loggedin"].as_str(),
            s["paused"].as_str(),
            s["phone"].as_str(),
            s["displayname"].as_str()
        ),
        ("true", "false", "false", "340", "Thomas Weber")
    );
    for (who, sub) in [
        (
            &mut mmeyer,
            r#"<Subscription module="queue" type="*" scope="supervisor"/>"#,
        ),
        // Overlapping subscriptions: every event still arrives once.
        (
            &mut boss,
            r#"<Subscription module="queue" type="*" scope="supervisor"/><Subscription module="queue" type="QueueJoinEvent" scope="supervisor"><AttributeFilter name="queue" equals="support"/></Subscription>"#,
        ),
    ] {
        let info = who.request("ci-1", &client_info("ci-1", sub));
        assert_eq!(cmd(&info).0, "xmppuser.UserInfo", "{info}");
    }
    // mmeyer is no supervisor: the scope was narrowed; mpasquay's RoleList says supervisor.
    let info = mmeyer.request(
        "ci-2",
        &client_info(
            "ci-2",
            r#"<Subscription module="queue" type="*" scope="supervisor"/>"#,
        ),
    );
    assert!(
        info.contains(r#"scope="user""#) && !info.contains(r#"scope="supervisor""#),
        "{info}"
    );
    let info = boss.request("fui-0", &command("fui-0", "xmppuser", "<FindUserInfo/>"));
    assert!(
        info.contains(r#"<Roletype name="xmpp.supervisor"/>"#),
        "{info}"
    );

    // FindOwnState, verbatim.
    let answer = tweber.request("kJHfh-39", FIND_OWN_STATE);
    let (name, body) = cmd(&answer);
    assert_eq!(name, "queue.QueueMemberStates");
    assert_eq!(
        (body.attr("eventType"), body.attr("eventId")),
        (Some(""), Some(""))
    );
    assert_eq!(member_states(&body), own);

    // FindQueueState, verbatim ("Support": Asterisk's queue names ignore case).
    let answer = tweber.request("bWHfh-36", FIND_QUEUE_STATE);
    let (name, body) = cmd(&answer);
    assert_eq!(name, "queue.QueueState");
    assert_eq!(
        (body.attr("jid"), body.attr("name")),
        (Some("q_2"), Some("support"))
    );
    let states = member_states(&body);
    let agent3 = state_of(&states, "support", "Agent Three");
    assert_eq!(
        (agent3["dynamic"].as_str(), agent3["loggedin"].as_str()),
        ("false", "true")
    );
    assert_eq!(state_of(&states, "support", "tweber")["loggedin"], "false");
    assert_eq!(states.len(), 2, "{states:?}");
    let reasons: Vec<(String, String)> = body
        .get_child("QueuePauseReasonList", NS)
        .expect("QueuePauseReasonList")
        .children()
        .map(|r| {
            (
                r.attr("code").unwrap_or_default().to_owned(),
                r.get_child("reason", NS)
                    .map(|t| t.text())
                    .unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        reasons,
        [("10", "Backoffice"), ("20", "Lunch")].map(|(a, b)| (a.to_owned(), b.to_owned()))
    );

    // Permissions: mmeyer belongs to sales only; the supervisor sees support.
    let refused = mmeyer.request("bWHfh-36", FIND_QUEUE_STATE);
    assert!(failure_text(&refused).contains("not a member"), "{refused}");
    let refused = mmeyer.request("bWHfh-37", AGENT_LOGIN);
    assert!(
        failure_text(&refused).contains("not an agent of queue support"),
        "{refused}"
    );
    assert!(driver
        .member("support", "Local/agent1@agents/n")
        .await
        .is_none());
    let answer = boss.request("bWHfh-36", FIND_QUEUE_STATE);
    assert_eq!(cmd(&answer).0, "queue.QueueState", "{answer}");
    let refused = mmeyer.request(
        "fui-1",
        &command(
            "fui-1",
            "xmppuser",
            &format!(r#"<FindUserInfo jid="tweber@{DOMAIN}"/>"#),
        ),
    );
    assert!(
        failure_text(&refused).contains("only a supervisor"),
        "{refused}"
    );
    let other = boss.request(
        "fui-2",
        &command(
            "fui-2",
            "xmppuser",
            &format!(r#"<FindUserInfo jid="tweber@{DOMAIN}"/>"#),
        ),
    );
    assert_eq!(cmd(&other).1.attr("name"), Some("tweber"), "{other}");

    // AgentLogin, verbatim: Asterisk has the dynamic member, everyone concerned hears of it.
    assert_success(&tweber.request("bWHfh-37", AGENT_LOGIN));
    let m = driver
        .member("support", TWEBER)
        .await
        .expect("tweber in Asterisk's support");
    assert_eq!(
        (m.get("Membership"), m.get("Name")),
        (Some("dynamic"), Some("Thomas Weber"))
    );
    for who in [&mut tweber, &mut boss] {
        let e = member_states(&event(who, "QueueMemberState"));
        let s = state_of(&e, "support", "tweber");
        assert_eq!(
            (
                s["loggedin"].as_str(),
                s["dynamic"].as_str(),
                s["phone"].as_str()
            ),
            ("true", "true", "340")
        );
    }
    no_event(&mut mmeyer, "QueueMemberState", Duration::from_millis(500));
    let again = tweber.request("bWHfh-37", AGENT_LOGIN);
    assert!(
        failure_text(&again).contains("already logged in"),
        "{again}"
    );
    // Bad arguments are refused by name.
    for (body, why) in [
        (
            r#"<AgentLogin queue="sales" penalty="abc"/>"#,
            "invalid penalty",
        ),
        (r#"<AgentLogin queue=""/>"#, "no queue given"),
        // The same rule as every front end: an agent does not choose their penalty.
        (
            r#"<AgentLogin queue="sales" penalty="5"/>"#,
            "a penalty is a supervisor's decision",
        ),
        (
            r#"<AgentPause queue="nosuch" reason=""/>"#,
            "no queue nosuch",
        ),
    ] {
        let answer = tweber.request("bad-arg", &command("bad-arg", "queue", body));
        assert!(failure_text(&answer).contains(why), "{body}: {answer}");
    }
    let answer = boss.request(
        "bad-jid",
        &command("bad-jid", "xmppuser", r#"<FindUserInfo jid="a@b@c"/>"#),
    );
    assert!(failure_text(&answer).contains("invalid jid"), "{answer}");

    // AgentPause, verbatim.
    assert_success(&tweber.request("bWHfh-39", AGENT_PAUSE));
    let m = driver.member("support", TWEBER).await.expect("member");
    assert_eq!(
        (m.get("Paused"), m.get("PausedReason")),
        (Some("1"), Some("postprocessing"))
    );
    let e = member_states(&event(&mut tweber, "QueueMemberState"));
    let s = state_of(&e, "support", "tweber");
    assert_eq!(
        (s["paused"].as_str(), s["pauseReason"].as_str()),
        ("true", "postprocessing")
    );
    let answer = tweber.request("kJHfh-39", FIND_OWN_STATE);
    assert_eq!(
        state_of(&member_states(&cmd(&answer).1), "support", "tweber")["paused"],
        "true"
    );

    // AgentUnpause, verbatim; a second one is refused: not paused.
    assert_success(&tweber.request("bWHfh-39", AGENT_UNPAUSE));
    assert_eq!(
        driver
            .member("support", TWEBER)
            .await
            .expect("member")
            .get("Paused"),
        Some("0")
    );
    let e = member_states(&event(&mut tweber, "QueueMemberState"));
    assert_eq!(state_of(&e, "support", "tweber")["paused"], "false");
    let again = tweber.request("bWHfh-39", AGENT_UNPAUSE);
    assert!(failure_text(&again).contains("not paused"), "{again}");
    // Reasons are free text ("postprocessing" above is in no catalogue); a catalogue code
    // becomes its text, and what Asterisk stores is what the confirmation compares: a reason
    // past Asterisk's 79 bytes is cut there, not reported as a timeout.
    let long = format!("coffee {}", "x".repeat(100));
    for (reason, stored) in [
        ("20", "Lunch"),
        ("coffee break", "coffee break"),
        (long.as_str(), &long[..79]),
    ] {
        let answer = tweber.request(
            "p-2",
            &command(
                "p-2",
                "queue",
                &format!(r#"<AgentPause queue="support" reason="{reason}"/>"#),
            ),
        );
        assert_success(&answer);
        let m = driver.member("support", TWEBER).await.expect("member");
        assert_eq!(m.get("PausedReason"), Some(stored), "{reason}");
        let e = member_states(&event(&mut tweber, "QueueMemberState"));
        assert_eq!(state_of(&e, "support", "tweber")["pauseReason"], stored);
        assert_success(&tweber.request("bWHfh-39", AGENT_UNPAUSE));
        let e = member_states(&event(&mut tweber, "QueueMemberState"));
        assert_eq!(state_of(&e, "support", "tweber")["paused"], "false");
    }

    // A static member cannot log out.
    let answer = boss.request(
        "lo-1",
        &command("lo-1", "queue", r#"<AgentLogout queue="sales"/>"#),
    );
    assert!(failure_text(&answer).contains("not dynamic"), "{answer}");

    // QueueJoinEvent and QueueLeaveEvent for a real caller; the entry equals QueueStatus.
    tweber.clear();
    mmeyer.clear();
    boss.clear();
    driver
        .call_with(
            "support",
            ("370", "Thomas Mattausch"),
            1,
            60,
            &[("QTIMEOUT", "4")],
        )
        .await;
    let join = event(&mut tweber, "QueueJoinEvent");
    assert_eq!(
        (join.attr("jid"), join.attr("name")),
        (Some("q_2"), Some("support"))
    );
    let entry = join
        .get_child("QueueCallEntry", NS)
        .expect("QueueCallEntry");
    let field = |e: &Element, n: &str| e.get_child(n, NS).map(|c| c.text()).unwrap_or_default();
    let truth = driver
        .queue_status("support")
        .await
        .into_iter()
        .find(|m| m.event_name() == Some("QueueEntry"))
        .expect("the caller in Asterisk's QueueStatus");
    assert_eq!(
        field(entry, "uniqueId"),
        truth.get("Uniqueid").unwrap_or_default()
    );
    assert_eq!(
        field(entry, "channel"),
        truth.get("Channel").unwrap_or_default()
    );
    assert_eq!(
        field(entry, "position"),
        truth.get("Position").unwrap_or_default()
    );
    let pb = entry
        .get_child("PhonebookEntry", NS)
        .expect("PhonebookEntry");
    assert_eq!(
        (field(pb, "phone"), field(pb, "displayname")),
        ("370".into(), "Thomas Mattausch".into())
    );
    // The supervisor gets it once, although two subscriptions match.
    event(&mut boss, "QueueJoinEvent");
    no_event(&mut boss, "QueueJoinEvent", Duration::from_millis(500));
    no_event(&mut mmeyer, "QueueJoinEvent", Duration::from_millis(100));
    // FindQueueState lists the waiting call.
    let answer = tweber.request("bWHfh-36", FIND_QUEUE_STATE);
    let calls = cmd(&answer).1;
    let list = calls.get_child("QueueCallEntryList", NS).expect("list");
    assert_eq!(list.children().count(), 1, "{answer}");
    // The caller gives up after 4 s: QueueLeaveEvent with the same entry.
    let leave = event(&mut tweber, "QueueLeaveEvent");
    let left = leave.get_child("QueueCallEntry", NS).expect("entry");
    assert_eq!(
        field(left, "uniqueId"),
        truth.get("Uniqueid").unwrap_or_default()
    );
    event(&mut boss, "QueueLeaveEvent");

    // AgentLogout, verbatim; a second one is refused.
    assert_success(&tweber.request("bWHfh-38", AGENT_LOGOUT));
    assert!(driver.member("support", TWEBER).await.is_none());
    let e = member_states(&event(&mut tweber, "QueueMemberState"));
    assert_eq!(state_of(&e, "support", "tweber")["loggedin"], "false");
    let again = tweber.request("bWHfh-38", AGENT_LOGOUT);
    assert!(failure_text(&again).contains("not logged in"), "{again}");

    // Subscriptions: removing the only one stops the events.
    let list = tweber.request(
        "rs-1",
        &command(
            "rs-1",
            "event",
            r#"<RemoveSubscription><Subscription module="queue" type="*"/></RemoveSubscription>"#,
        ),
    );
    let (name, body) = cmd(&list);
    assert_eq!(
        (name.as_str(), body.children().count()),
        ("event.SubscriptionList", 0),
        "{list}"
    );
    assert_success(&tweber.request("bWHfh-37", AGENT_LOGIN));
    no_event(&mut tweber, "QueueMemberState", Duration::from_secs(1));
    let list = tweber.request(
        "as-1",
        &command("as-1", "event", r#"<AddSubscription><Subscription module="queue" type="QueueMemberState"><AttributeFilter name="agent" equals="tweber"/></Subscription></AddSubscription>"#),
    );
    let filter = cmd(&list).1;
    let filter = filter
        .children()
        .next()
        .and_then(|s| s.get_child("AttributeFilter", NS))
        .expect("the filter");
    assert_eq!(
        (filter.attr("name"), filter.attr("equals")),
        (Some("agent"), Some("tweber"))
    );
    assert_success(&tweber.request("bWHfh-38", AGENT_LOGOUT));
    event(&mut tweber, "QueueMemberState");

    // Unknown commands and malformed ones get base.Failure.
    let answer = tweber.request("u-1", &command("u-1", "queue", "<FindEverything/>"));
    assert!(
        failure_text(&answer).contains("unknown command queue.FindEverything"),
        "{answer}"
    );
    let answer = tweber.request(
        "u-2",
        &command("u-2", "queue", "<FindOwnState/><FindOwnState/>"),
    );
    assert!(failure_text(&answer).contains("more than one"), "{answer}");
    let answer = tweber.request(
        "u-3",
        &command(
            "u-3",
            "event",
            r#"<AddSubscription><Subscription type="*"/></AddSubscription>"#,
        ),
    );
    assert!(failure_text(&answer).contains("needs a module"), "{answer}");

    // A client that addresses the component directly needs no server module.
    let direct = tweber.request(
        "d-1",
        &format!(r#"<iq id="d-1" type="get" to="{COMPONENT}"><cmd xmlns="{NS}" module="queue"><FindOwnState/></cmd></iq>"#),
    );
    assert_eq!(parse(&direct).attr("from"), Some(COMPONENT), "{direct}");
    assert_eq!(cmd(&direct).0, "queue.QueueMemberStates");

    // The headlines above were timed from their fold to the component socket (a write each
    // at this pace), on loopback within far less than a second.
    let count = metric(metrics_port, "queuebridge_xmpp_delivery_seconds_count", &[]).await;
    assert!(count.is_some_and(|n| n >= 10.0), "delivery count {count:?}");
    let within = metric(
        metrics_port,
        "queuebridge_xmpp_delivery_seconds_bucket",
        &[("le", "1")],
    )
    .await;
    assert_eq!(within, count, "every write within a second");
    drop(bridge);
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_stanzas_restarts_and_a_dead_ami_link() {
    let Setup {
        mut ast,
        driver: _driver,
        mut prosody,
        bridge,
        ..
    } = setup().await;
    let mut tweber = prosody.client("tweber", "pw", "laptop");
    let mut boss = prosody.client("mpasquay", "pw", "desk");
    answered(&mut tweber).await;
    let subscribe = client_info("ci", EVERYTHING);
    tweber.request("ci", &subscribe);
    boss.request("ci", &subscribe);

    // A presence the component cannot parse, relayed by Prosody: logged and skipped.
    tweber.send(&format!(
        r#"<presence to="{COMPONENT}"><priority>abc</priority></presence>"#
    ));
    let answer = boss.request("kJHfh-39", FIND_OWN_STATE);
    assert_eq!(cmd(&answer).0, "queue.QueueMemberStates", "{answer}");
    let answer = tweber.request("kJHfh-39", FIND_OWN_STATE);
    assert_eq!(cmd(&answer).0, "queue.QueueMemberStates", "{answer}");
    // An IQ Prosody relays but the component cannot parse (text beside the payload) gets
    // bad-request from the component, not silence.
    tweber.send(&format!(
        r#"<iq id="bad-1" type="get" to="{COMPONENT}">junk<cmd xmlns="{NS}" module="queue"><FindOwnState/></cmd></iq>"#
    ));
    let bad = tweber
        .wait_for(Duration::from_secs(10), |s| s.contains(r#"id="bad-1""#))
        .expect("an answer to the malformed IQ");
    let stanza = parse(&bad);
    assert_eq!(
        (stanza.attr("type"), stanza.attr("from")),
        (Some("error"), Some(COMPONENT)),
        "{bad}"
    );
    assert!(
        bad.contains("bad-request") && bad.contains("malformed stanza"),
        "{bad}"
    );
    assert_success(&tweber.request("bWHfh-37", AGENT_LOGIN));
    event(&mut boss, "QueueMemberState");
    assert!(
        bridge.log().contains("malformed stanza skipped"),
        "{}",
        bridge.log()
    );

    // A client that stops reading (its process frozen) holds up nobody: tweber's commands
    // and events go on, and the frozen client gets what it missed when it wakes up.
    boss.freeze(true);
    for (id, command) in [("bWHfh-39", AGENT_PAUSE), ("bWHfh-39", AGENT_UNPAUSE)].repeat(5) {
        assert_success(&tweber.request(id, command));
        event(&mut tweber, "QueueMemberState");
    }
    boss.freeze(false);
    for _ in 0..10 {
        event(&mut boss, "QueueMemberState");
    }

    // Prosody restarts under queuebridge: the component reconnects, the clients log in again.
    drop(tweber);
    drop(boss);
    // mod_pascom tells queuebridge that the sessions ended.
    until("the end of the sessions", async || {
        let log = bridge.log();
        let ended = |jid: &str| {
            log.lines()
                .any(|l| l.contains("session ended") && l.contains(jid))
        };
        (ended("tweber@example.test/laptop") && ended("mpasquay@example.test/desk")).then_some(())
    })
    .await;
    prosody.stop();
    prosody.run();
    let mut tweber = prosody.client("tweber", "pw", "laptop");
    answered(&mut tweber).await;
    tweber.request("ci", &subscribe);
    assert_success(&tweber.request("bWHfh-39", AGENT_PAUSE));
    let e = member_states(&event(&mut tweber, "QueueMemberState"));
    assert_eq!(state_of(&e, "support", "tweber")["paused"], "true");
    assert!(bridge.log().contains("XMPP link lost"), "{}", bridge.log());

    // Keepalive: a quiet link (ping_interval = 5 s) is pinged, not dropped.
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(
        bridge.log().matches("XMPP link lost").count(),
        1,
        "{}",
        bridge.log()
    );
    let answer = tweber.request("kJHfh-39", FIND_OWN_STATE);
    assert_eq!(cmd(&answer).0, "queue.QueueMemberStates", "{answer}");

    // Asterisk stops: commands are answered with the reason, never silence.
    ast.stop();
    let mut bridge_down = false;
    until("queuebridge to see the AMI link down", async || {
        let answer = tweber.request("kJHfh-39", FIND_OWN_STATE);
        bridge_down = answer.contains("Failure");
        bridge_down.then_some(())
    })
    .await;
    let answer = tweber.request("kJHfh-39", FIND_OWN_STATE);
    assert!(
        failure_text(&answer).contains("AMI link to pbx1 is down"),
        "{answer}"
    );
    let answer = tweber.request("bWHfh-39", AGENT_UNPAUSE);
    assert!(
        failure_text(&answer).contains("AMI link to pbx1 is down"),
        "{answer}"
    );
    let answer = tweber.request("ci-2", &client_info("ci-2", EVERYTHING));
    assert_eq!(cmd(&answer).0, "xmppuser.UserInfo", "{answer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_outlive_a_cut_or_dead_component_link() {
    let Setup {
        ast: _ast,
        mut driver,
        prosody,
        bridge,
        proxy,
        ..
    } = setup_with(true).await;
    let proxy = proxy.expect("proxy");
    let mut tweber = prosody.client("tweber", "pw", "laptop");
    answered(&mut tweber).await;
    tweber.request("ci", &client_info("ci", EVERYTHING));
    let reconnected = |n: usize| {
        let bridge = &bridge;
        async move {
            until("the component to reconnect", async || {
                (bridge.log().matches("XMPP component connected").count() >= n).then_some(())
            })
            .await
        }
    };

    // The link is cut, and tweber is logged in (straight over AMI) while it is down:
    // queuebridge reconnects, the client's session and subscription stay, and the client is
    // told what changed meanwhile.
    proxy.refuse(true);
    proxy.cut();
    until("queuebridge to see the link cut", async || {
        (bridge.log().matches("XMPP link lost").count() == 1).then_some(())
    })
    .await;
    let added = driver
        .send(
            Message::action("QueueAdd")
                .with("Queue", "support")
                .with("Interface", TWEBER)
                .with("MemberName", "Thomas Weber")
                .with("StateInterface", "Custom:agent4"),
        )
        .await;
    assert!(added.is_success(), "{:?}", added.response);
    no_event(&mut tweber, "QueueMemberState", Duration::from_secs(1));
    proxy.refuse(false);
    let e = member_states(&event(&mut tweber, "QueueMemberState"));
    assert_eq!(state_of(&e, "support", "tweber")["loggedin"], "true");
    reconnected(2).await;
    assert!(bridge
        .log()
        .contains("sending the clients what changed meanwhile"));

    // The link goes silent without closing (a forgotten NAT flow): the keepalive finds it
    // dead within ping_interval + its answer time (5 + 5 s), and queuebridge reconnects once
    // Prosody lets go of the old connection.
    let lost = bridge.log().matches("XMPP link lost").count();
    proxy.stall();
    until("the keepalive to drop the dead link", async || {
        (bridge.log().matches("XMPP link lost").count() > lost).then_some(())
    })
    .await;
    proxy.cut();
    reconnected(3).await;
    answered(&mut tweber).await;
    assert_success(&tweber.request("bWHfh-38", AGENT_LOGOUT));
    let e = member_states(&event(&mut tweber, "QueueMemberState"));
    assert_eq!(state_of(&e, "support", "tweber")["loggedin"], "false");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_answers_commands_in_flight_then_closes_the_stream() {
    let ast = Asterisk::start();
    let mut driver = Driver::connect(ast.port).await;
    driver.devstate("agent4", "NOT_INUSE").await;
    let prosody = Prosody::start(&[("tweber", "pw")]);
    // Between queuebridge and Asterisk: slows Asterisk's replies down on demand.
    let ami = Proxy::start(ast.port).await;
    let bridge = Bridge::start_extra(ami.port, &format!("{}{}", users(), prosody.xmpp_config()));
    bridge.wait_health(200).await;
    let mut tweber = prosody.client("tweber", "pw", "laptop");
    answered(&mut tweber).await;
    assert_success(&tweber.request("bWHfh-37", AGENT_LOGIN));

    // Asterisk has paused tweber and its reply is on the way when SIGTERM arrives.
    ami.latency(Duration::from_secs(1));
    tweber.send(AGENT_PAUSE);
    until("Asterisk paused tweber", async || {
        let m = driver.member("support", TWEBER).await?;
        (m.get("Paused") == Some("1")).then_some(())
    })
    .await;
    bridge.signal("TERM");
    // A command that arrives while the shutdown waits for the pause is refused, not dropped.
    until("the shutdown to begin", async || {
        bridge.log().contains("shutting down").then_some(())
    })
    .await;
    tweber.send(&command("late-1", "queue", "<FindOwnState/>"));
    let late = tweber
        .wait_for(Duration::from_secs(10), |s| s.contains(r#"id="late-1""#))
        .expect("the late command answered");
    assert!(
        failure_text(&late).contains("queuebridge is shutting down"),
        "{late}"
    );
    let answer = tweber
        .wait_for(Duration::from_secs(10), |s| s.contains(r#"id="bWHfh-39""#))
        .expect("the pause answered");
    assert_success(&answer);
    let (exit, _dir) = bridge.terminate();
    assert!(exit.success(), "{exit:?}");
    // Prosody got the component's end of stream: a clean close, not a broken connection.
    let log = prosody.log();
    let lines: Vec<&str> = log.lines().collect();
    let answered_at = lines.iter().position(|l| {
        l.contains("Received[component]") && l.contains("'bWHfh-39'") && l.contains("'result'")
    });
    let closed_at = lines
        .iter()
        .rposition(|l| l.contains("Received </stream:stream>"));
    assert!(
        matches!((answered_at, closed_at), (Some(a), Some(c)) if a < c),
        "{log}"
    );
}

/// One client floods the component with 10,000 IQs as fast as it can, and a caller whose name
/// carries control characters (which XML cannot hold) joins while clients are subscribed: every
/// IQ is answered, the caller's join reaches everyone with the name made XML-safe, and the
/// other users' commands are answered all along.
#[tokio::test(flavor = "multi_thread")]
async fn a_flooding_client_and_a_caller_xml_cannot_carry_hold_up_nobody() {
    let Setup {
        ast: _ast,
        mut driver,
        prosody,
        bridge,
        proxy: _,
        ..
    } = setup().await;
    let mut tweber = prosody.client("tweber", "pw", "desk");
    let mut boss = prosody.client("mpasquay", "pw", "desk");
    let mut flooder = prosody.client("mmeyer", "pw", "flood");
    answered(&mut tweber).await;
    tweber.request("ci", &client_info("ci", EVERYTHING));
    boss.request(
        "ci",
        &client_info(
            "ci",
            r#"<Subscription module="queue" type="*" scope="supervisor"/>"#,
        ),
    );
    const FLOOD: usize = 10_000;
    for i in 0..FLOOD {
        flooder.send(&command(&format!("f{i}"), "queue", "<FindOwnState/>"));
    }
    // While the flood is under way: a caller named with control characters.
    driver
        .call_with(
            "support",
            ("5550999", "Eve\u{1}\u{1b}[31m"),
            1,
            60,
            &[("QTIMEOUT", "20")],
        )
        .await;
    for who in [&mut tweber, &mut boss] {
        let join = event(who, "QueueJoinEvent");
        let entry = join
            .get_child("QueueCallEntry", NS)
            .expect("QueueCallEntry");
        let pb = entry
            .get_child("PhonebookEntry", NS)
            .expect("PhonebookEntry");
        let text = |n: &str| pb.get_child(n, NS).map(|c| c.text()).unwrap_or_default();
        assert_eq!(
            (text("displayname"), text("phone")),
            ("Eve\u{fffd}\u{fffd}[31m".to_owned(), "5550999".to_owned())
        );
    }
    // The others' commands are answered during the flood.
    for i in 0..5 {
        let id = format!("own-{i}");
        let answer = tweber.request(&id, &command(&id, "queue", "<FindOwnState/>"));
        assert!(answer.contains("QueueMemberStates"), "{answer}");
    }
    let answer = boss.request(
        "qs",
        &command("qs", "queue", r#"<FindQueueState name="support"/>"#),
    );
    // Two commands of one session with the same id at once: each answer comes back addressed
    // as the client expects (mod_pascom keeps both requests).
    tweber.send(&command("dup", "queue", "<FindOwnState/>"));
    tweber.send(&command("dup", "queue", "<FindOwnState/>"));
    for _ in 0..2 {
        let answer = tweber
            .wait_for(Duration::from_secs(25), |s| {
                s.starts_with("<iq") && s.contains("id=\"dup\"")
            })
            .expect("both answers to the same id");
        let iq = parse(&answer);
        assert_eq!(iq.attr("from"), Some("tweber@example.test"), "{answer}");
        assert_eq!(iq.attr("type"), Some("result"), "{answer}");
    }
    assert!(answer.contains("QueueState"), "{answer}");
    // Every one of the flood's IQs got an answer: a result, or "try again" when that user's
    // command slots were full.
    let mut answered = std::collections::BTreeSet::new();
    while answered.len() < FLOOD {
        let Some(s) = flooder.wait_for(Duration::from_secs(20), |s| {
            s.starts_with("<iq") && s.contains("id=\"f")
        }) else {
            break;
        };
        if let Some(id) = s.split("id=\"f").nth(1).and_then(|r| r.split('"').next()) {
            answered.insert(id.to_owned());
        }
    }
    assert_eq!(
        answered.len(),
        FLOOD,
        "{} of {FLOOD} answered",
        answered.len()
    );
    assert!(
        !bridge.log().contains("XMPP link lost"),
        "the component link dropped"
    );
    bridge.assert_exact(&mut driver, "pbx1", "support").await;
}

/// A client's IQ nested eight thousand deep (56 KB, within Prosody's stanza limit) overflowed
/// the stack when queuebridge dropped the parsed element, aborting the daemon. Now the link
/// refuses it before parsing, reconnects, and everyone carries on.
#[tokio::test(flavor = "multi_thread")]
async fn a_deeply_nested_stanza_does_not_take_the_daemon_down() {
    let Setup {
        ast: _ast,
        driver: _driver,
        prosody,
        mut bridge,
        proxy: _,
        ..
    } = setup().await;
    let mut tweber = prosody.client("tweber", "pw", "desk");
    let mut boss = prosody.client("mpasquay", "pw", "desk");
    answered(&mut tweber).await;
    let deep = format!(
        r#"<iq id="deep" type="get"><cmd xmlns="{NS}" module="queue">{}{}</cmd></iq>"#,
        "<a>".repeat(8_000),
        "</a>".repeat(8_000)
    );
    tweber.send(&deep);
    until("the link to refuse the stanza and come back", async || {
        let log = bridge.log();
        (log.contains("nested deeper than the limit")
            && log.matches("XMPP component connected").count() >= 2)
            .then_some(())
    })
    .await;
    assert!(bridge.alive(), "the daemon died:\n{}", bridge.log());
    answered(&mut boss).await;
    answered(&mut tweber).await;
}
