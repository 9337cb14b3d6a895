//! The pascom "mobydick" command API on the wire: parsing a `<cmd/>` and building the elements
//! of the queue, base, event and xmppuser modules exactly as pascom's documentation writes them
//! (`../shared/seeds/000_…`: the queue module), empty elements and empty attributes included.
//!
//! Everything here is pure: it turns values into [`Element`]s and back, and knows nothing of
//! Asterisk, sessions or the XMPP link.

use tokio_xmpp::minidom::rxml::{Namespace, NcName};
use tokio_xmpp::minidom::Element;

/// The namespace of every command, response and event.
pub const NS: &str = "http://www.pascom.net/mobydick";

/// Most `<Subscription/>` elements one command may carry.
pub const MAX_SUBSCRIPTIONS: usize = 64;
/// Most `<AttributeFilter/>` elements one subscription may carry.
pub const MAX_FILTERS: usize = 16;

/// Whether XML 1.0 allows `c` in a document (its `Char` production): tab, line feed, carriage
/// return and everything from U+0020 but U+FFFE and U+FFFF (Rust's `char` has no surrogates).
fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{fffe}' && c != '\u{ffff}')
}

/// `text` as XML can carry it: every character XML 1.0 forbids — a caller id name from the
/// phone network with a control character, a member name or pause reason from Asterisk —
/// becomes U+FFFD. The serializer refuses such characters (and minidom's `String::from` panics
/// on them), which would otherwise fail the stanza or, mid-write, the whole link.
pub fn xml_safe(text: &str) -> std::borrow::Cow<'_, str> {
    if text.chars().all(xml_char) {
        std::borrow::Cow::Borrowed(text)
    } else {
        std::borrow::Cow::Owned(
            text.chars()
                .map(|c| if xml_char(c) { c } else { '\u{fffd}' })
                .collect(),
        )
    }
}

/// An element of the mobydick namespace with these attributes, in this order; values are made
/// [`xml_safe`].
pub fn el(name: &str, attrs: &[(&str, &str)]) -> Element {
    let mut e = Element::bare(name, NS);
    for (k, v) in attrs {
        // Attribute names are this module's constants; one that is not an XML name would be
        // a bug here, never input, and is left out rather than panicking.
        if let Ok(k) = NcName::try_from(*k) {
            e.set_attr(Namespace::NONE, k, xml_safe(v).into_owned());
        }
    }
    e
}

/// An element holding only ([`xml_safe`]) text; an empty text gives the empty element
/// (`<id/>`).
pub fn text_el(name: &str, text: &str) -> Element {
    let mut e = el(name, &[]);
    if !text.is_empty() {
        e.append_text(xml_safe(text).into_owned());
    }
    e
}

fn with_children(mut e: Element, children: impl IntoIterator<Item = Element>) -> Element {
    for c in children {
        e.append_child(c);
    }
    e
}

/// `<cmd xmlns=NS module="…">child</cmd>`.
pub fn cmd(module: &str, child: Element) -> Element {
    with_children(el("cmd", &[("module", module)]), [child])
}

/// `base.Success`: `<Success><message>Ok</message></Success>`.
pub fn success() -> Element {
    cmd(
        "base",
        with_children(el("Success", &[]), [text_el("message", "Ok")]),
    )
}

/// `base.Failure` with a human-readable reason.
pub fn failure(reason: &str) -> Element {
    cmd(
        "base",
        with_children(el("Failure", &[]), [text_el("message", reason)]),
    )
}

/// A command as received: `<cmd module="M"><Name …/></cmd>`.
#[derive(Debug)]
pub struct Request {
    pub module: String,
    pub name: String,
    /// The command element itself, for its attributes and children.
    pub body: Element,
}

impl Request {
    /// `M.Name`, as the documentation writes commands.
    pub fn full_name(&self) -> String {
        format!("{}.{}", self.module, self.name)
    }

    /// An attribute of the command element, empty when absent.
    pub fn attr<'a>(&'a self, name: &'a str) -> &'a str {
        self.body.attr(name).unwrap_or_default()
    }
}

/// Reads the one command out of an IQ payload; `Err` is the reason for a `base.Failure`.
pub fn parse_request(payload: &Element) -> Result<Request, String> {
    if !payload.is("cmd", NS) {
        return Err(format!(
            "not a mobydick command: <{}/> in namespace {}",
            payload.name(),
            payload.ns()
        ));
    }
    let module = payload.attr("module").unwrap_or_default().trim();
    if module.is_empty() {
        return Err("the cmd element has no module attribute".into());
    }
    let mut children = payload.children();
    let body = match (children.next(), children.next()) {
        (Some(b), None) => b.clone(),
        (None, _) => return Err(format!("the {module} command is empty")),
        (Some(_), Some(_)) => {
            return Err(format!("the {module} command holds more than one element"))
        }
    };
    Ok(Request {
        module: module.to_owned(),
        name: body.name().to_owned(),
        body,
    })
}

/// The phone book data queuebridge knows of a person: a user's or a caller's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Person {
    pub phone: String,
    pub displayname: String,
}

/// `<PhonebookEntry>` as in the seed: every element present, only phone and display name
/// filled.
pub fn phonebook(p: &Person) -> Element {
    with_children(
        el("PhonebookEntry", &[("eventId", ""), ("eventType", "")]),
        [
            text_el("type", "undef"),
            text_el("id", ""),
            text_el("firstname", ""),
            text_el("surname", ""),
            text_el("phone", &p.phone),
            text_el("fax", ""),
            text_el("mobile", ""),
            text_el("homephone", ""),
            text_el("email", ""),
            text_el("displayname", &p.displayname),
            text_el("organisation", ""),
        ],
    )
}

/// One agent in one queue (`queue.QueueMemberState`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberState {
    /// The user name, or the member's name in Asterisk when no user has its interface.
    pub agent: String,
    pub queue: String,
    pub dynamic: bool,
    pub loggedin: bool,
    pub paused: bool,
    pub pause_reason: String,
    pub person: Person,
}

fn flag(b: bool) -> &'static str {
    if b {
        "true"
    } else {
        "false"
    }
}

impl MemberState {
    pub fn element(&self) -> Element {
        with_children(
            el(
                "QueueMemberState",
                &[
                    ("agent", &self.agent),
                    ("queue", &self.queue),
                    ("dynamic", flag(self.dynamic)),
                    ("loggedin", flag(self.loggedin)),
                    ("paused", flag(self.paused)),
                    ("eventType", ""),
                    ("eventId", ""),
                    ("pauseReason", &self.pause_reason),
                ],
            ),
            [phonebook(&self.person)],
        )
    }

    /// The attribute an `AttributeFilter` names.
    pub fn attr(&self, name: &str) -> Option<&str> {
        Some(match name {
            "agent" => &self.agent,
            "queue" => &self.queue,
            "dynamic" => flag(self.dynamic),
            "loggedin" => flag(self.loggedin),
            "paused" => flag(self.paused),
            "pauseReason" => &self.pause_reason,
            _ => return None,
        })
    }

    /// Whether a client would see a difference: login, pause or reason.
    pub fn same_state(&self, other: &MemberState) -> bool {
        (self.loggedin, self.paused, &self.pause_reason, self.dynamic)
            == (
                other.loggedin,
                other.paused,
                &other.pause_reason,
                other.dynamic,
            )
    }
}

/// `<QueueMemberStates eventType="" eventId="">…</QueueMemberStates>`.
pub fn member_states<'a>(states: impl IntoIterator<Item = &'a MemberState>) -> Element {
    with_children(
        el("QueueMemberStates", &[("eventType", ""), ("eventId", "")]),
        states.into_iter().map(MemberState::element),
    )
}

/// A waiting caller (`QueueCallEntry`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallEntry {
    pub position: i64,
    pub channel: String,
    pub uniqueid: String,
    pub person: Person,
}

impl CallEntry {
    pub fn element(&self) -> Element {
        with_children(
            el("QueueCallEntry", &[]),
            [
                text_el("position", &self.position.to_string()),
                text_el("channel", &self.channel),
                text_el("uniqueId", &self.uniqueid),
                phonebook(&self.person),
            ],
        )
    }
}

/// A queue's identity on the wire: `jid="q_<id>" name="<name>"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueRef {
    pub id: u64,
    pub name: String,
}

impl QueueRef {
    pub fn jid(&self) -> String {
        format!("q_{}", self.id)
    }
}

/// `queue.QueueJoinEvent` or `queue.QueueLeaveEvent` (`kind`), payload of a headline.
pub fn call_event(kind: &str, queue: &QueueRef, entry: &CallEntry) -> Element {
    cmd(
        "queue",
        with_children(
            el(kind, &[("jid", &queue.jid()), ("name", &queue.name)]),
            [entry.element()],
        ),
    )
}

/// `queue.QueueState`: the waiting calls, the members and the pause reasons of one queue.
pub fn queue_state(
    queue: &QueueRef,
    calls: &[CallEntry],
    members: &[MemberState],
    pause_reasons: &[crate::access::PauseReason],
) -> Element {
    cmd(
        "queue",
        with_children(
            el(
                "QueueState",
                &[("jid", &queue.jid()), ("name", &queue.name)],
            ),
            [
                with_children(
                    el("QueueCallEntryList", &[]),
                    calls.iter().map(CallEntry::element),
                ),
                member_states(members),
                with_children(
                    el("QueuePauseReasonList", &[]),
                    pause_reasons.iter().map(|p| {
                        with_children(
                            el("QueuePauseReason", &[("code", &p.code)]),
                            [text_el("reason", &p.reason)],
                        )
                    }),
                ),
            ],
        ),
    )
}

/// Whom a subscription asks events about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The user and the queues they belong to.
    User,
    /// Everyone; honoured for supervisors only.
    Supervisor,
}

impl Scope {
    fn as_str(self) -> &'static str {
        match self {
            Scope::User => "user",
            Scope::Supervisor => "supervisor",
        }
    }
}

/// One `<Subscription module type scope>` with its `<AttributeFilter name equals/>`s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    pub module: String,
    /// `*` or an event name.
    pub kind: String,
    pub scope: Scope,
    /// All must hold (name, value).
    pub filters: Vec<(String, String)>,
}

impl Subscription {
    /// Reads one `<Subscription/>`; `module` is required, `type` defaults to `*`, `scope` to
    /// `user`.
    pub fn parse(e: &Element) -> Result<Self, String> {
        if e.name() != "Subscription" {
            return Err(format!("<{}/> is not a Subscription", e.name()));
        }
        let module = e.attr("module").unwrap_or_default().trim();
        if module.is_empty() {
            return Err("a Subscription needs a module".into());
        }
        let kind = match e.attr("type").map(str::trim) {
            None | Some("") => "*",
            Some(k) => k,
        };
        let scope = match e.attr("scope").map(str::trim) {
            None | Some("") | Some("user") => Scope::User,
            Some("supervisor") => Scope::Supervisor,
            Some(other) => {
                return Err(format!(
                    "unknown subscription scope {other:?} (user or supervisor)"
                ))
            }
        };
        let mut filters = Vec::new();
        for f in e.children() {
            if f.name() != "AttributeFilter" {
                return Err(format!("<{}/> is not an AttributeFilter", f.name()));
            }
            let (Some(name), Some(equals)) = (f.attr("name"), f.attr("equals")) else {
                return Err("an AttributeFilter needs name and equals".into());
            };
            filters.push((name.to_owned(), equals.to_owned()));
        }
        if filters.len() > MAX_FILTERS {
            return Err(format!(
                "more than {MAX_FILTERS} filters in one Subscription"
            ));
        }
        Ok(Self {
            module: module.to_owned(),
            kind: kind.to_owned(),
            scope,
            filters,
        })
    }

    /// Reads the `<Subscription/>` children of an Add/RemoveSubscription element.
    pub fn parse_list(e: &Element) -> Result<Vec<Self>, String> {
        let list = e
            .children()
            .map(Self::parse)
            .collect::<Result<Vec<_>, _>>()?;
        if list.len() > MAX_SUBSCRIPTIONS {
            return Err(format!(
                "more than {MAX_SUBSCRIPTIONS} subscriptions in one command"
            ));
        }
        Ok(list)
    }

    pub fn element(&self) -> Element {
        with_children(
            el(
                "Subscription",
                &[
                    ("module", &self.module),
                    ("type", &self.kind),
                    ("scope", self.scope.as_str()),
                ],
            ),
            self.filters
                .iter()
                .map(|(n, v)| el("AttributeFilter", &[("name", n), ("equals", v)])),
        )
    }
}

/// `<SubscriptionList>` with every scope written out.
pub fn subscription_list(subs: &[Subscription]) -> Element {
    with_children(
        el("SubscriptionList", &[]),
        subs.iter().map(Subscription::element),
    )
}

/// Who a user is, for `xmppuser.UserInfo`.
#[derive(Clone, Debug)]
pub struct Identity {
    pub name: String,
    pub full_name: String,
    pub extension: String,
    /// Configured role names and whether each carries `xmpp.supervisor`.
    pub roles: Vec<(String, bool)>,
}

/// `xmppuser.UserInfo`: identity, roles, the user's queue states and subscriptions; the
/// blocks that mean nothing without pascom are present and empty.
pub fn user_info(who: &Identity, states: &[MemberState], subs: &[Subscription]) -> Element {
    cmd(
        "xmppuser",
        with_children(
            el("UserInfo", &[("name", &who.name)]),
            [
                with_children(
                    el("Identity", &[]),
                    [
                        text_el("db_003use_name", &who.name),
                        text_el("db_003use_bez", &who.full_name),
                        text_el("db_009ext_extension", &who.extension),
                    ],
                ),
                with_children(
                    el("RoleList", &[]),
                    who.roles.iter().map(|(role, supervisor)| {
                        with_children(
                            el("Role", &[("name", role)]),
                            [with_children(
                                el("RoletypeList", &[]),
                                supervisor.then(|| el("Roletype", &[("name", "xmpp.supervisor")])),
                            )],
                        )
                    }),
                ),
                member_states(states),
                subscription_list(subs),
                el("LocationList", &[]),
                el("Voicemailbox", &[]),
                el("RedirectEntry", &[]),
            ],
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Element {
        s.parse().expect("test XML")
    }

    #[test]
    fn member_state_is_written_as_in_the_seed() {
        let s = MemberState {
            agent: "tweber".into(),
            queue: "support".into(),
            dynamic: true,
            loggedin: false,
            paused: false,
            pause_reason: String::new(),
            person: Person {
                phone: "340".into(),
                displayname: "Thomas Weber".into(),
            },
        };
        let want = r#"<QueueMemberState xmlns="http://www.pascom.net/mobydick" agent="tweber" queue="support" dynamic="true" loggedin="false" paused="false" eventType="" eventId="" pauseReason=""><PhonebookEntry eventId="" eventType=""><type>undef</type><id/><firstname/><surname/><phone>340</phone><fax/><mobile/><homephone/><email/><displayname>Thomas Weber</displayname><organisation/></PhonebookEntry></QueueMemberState>"#;
        // Equal as XML: every element and attribute, empty ones included. (minidom writes
        // attributes in its own order, which XML leaves free.)
        assert_eq!(s.element(), parse(want));
    }

    #[test]
    fn requests_parse_and_refuse_clearly() {
        let r = parse_request(&parse(
            r#"<cmd xmlns="http://www.pascom.net/mobydick" module="queue"><AgentLogin queue="Support" penalty=""/></cmd>"#,
        ))
        .expect("request");
        assert_eq!(r.full_name(), "queue.AgentLogin");
        assert_eq!(r.attr("queue"), "Support");
        assert_eq!(r.attr("reason"), "");
        for (bad, why) in [
            (
                r#"<cmd xmlns="urn:other" module="queue"><X/></cmd>"#,
                "not a mobydick",
            ),
            (
                r#"<cmd xmlns="http://www.pascom.net/mobydick"><X/></cmd>"#,
                "no module",
            ),
            (
                r#"<cmd xmlns="http://www.pascom.net/mobydick" module="queue"/>"#,
                "empty",
            ),
            (
                r#"<cmd xmlns="http://www.pascom.net/mobydick" module="queue"><X/><Y/></cmd>"#,
                "more than one",
            ),
        ] {
            let e = parse_request(&parse(bad)).expect_err(bad);
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn subscriptions_default_and_write_out_their_scope() {
        let list = parse(
            r#"<AddSubscription xmlns="http://www.pascom.net/mobydick"><Subscription module="queue" type="*"/><Subscription module="queue" type="QueueJoinEvent" scope="supervisor"><AttributeFilter name="queue" equals="support"/></Subscription></AddSubscription>"#,
        );
        let subs = Subscription::parse_list(&list).expect("subs");
        assert_eq!(subs[0].scope, Scope::User);
        assert_eq!(subs[1].filters, vec![("queue".into(), "support".into())]);
        assert_eq!(
            subscription_list(&subs),
            parse(
                r#"<SubscriptionList xmlns="http://www.pascom.net/mobydick"><Subscription module="queue" type="*" scope="user"/><Subscription module="queue" type="QueueJoinEvent" scope="supervisor"><AttributeFilter name="queue" equals="support"/></Subscription></SubscriptionList>"#
            )
        );
        for bad in [
            r#"<A xmlns="http://www.pascom.net/mobydick"><Subscription type="*"/></A>"#,
            r#"<A xmlns="http://www.pascom.net/mobydick"><Subscription module="queue" scope="all"/></A>"#,
            r#"<A xmlns="http://www.pascom.net/mobydick"><Subscription module="queue"><AttributeFilter name="x"/></Subscription></A>"#,
            r#"<A xmlns="http://www.pascom.net/mobydick"><Other/></A>"#,
        ] {
            assert!(Subscription::parse_list(&parse(bad)).is_err(), "{bad}");
        }
    }

    /// A caller named `"Eve\x01"` (Originate … CallerID) made the serializer fail.
    #[test]
    fn control_characters_never_reach_the_serializer() {
        assert_eq!(xml_safe("Eve\u{1}"), "Eve\u{fffd}");
        assert_eq!(xml_safe("tab\tok\r\n"), "tab\tok\r\n");
        assert_eq!(
            xml_safe("x\u{fffe}\u{ffff}\u{0}"),
            "x\u{fffd}\u{fffd}\u{fffd}"
        );
        assert!(matches!(
            xml_safe("Müller 😀"),
            std::borrow::Cow::Borrowed(_)
        ));
        let mut e = el("QueueCallEntry", &[("name", "Eve\u{1}\u{8}")]);
        e.append_child(text_el("displayName", "Eve\u{1b}[31m"));
        let written = String::from(&e);
        let back: Element = written.parse().expect("well-formed");
        assert_eq!(back.attr("name"), Some("Eve\u{fffd}\u{fffd}"));
        assert_eq!(
            back.get_child("displayName", NS).map(Element::text),
            Some("Eve\u{fffd}[31m".to_owned())
        );
    }

    #[test]
    fn empty_pause_reason_list_is_kept() {
        let q = QueueRef {
            id: 1,
            name: "support".into(),
        };
        assert_eq!(
            queue_state(&q, &[], &[], &[]),
            parse(
                r#"<cmd xmlns="http://www.pascom.net/mobydick" module="queue"><QueueState jid="q_1" name="support"><QueueCallEntryList/><QueueMemberStates eventType="" eventId=""/><QueuePauseReasonList/></QueueState></cmd>"#
            )
        );
    }
}
