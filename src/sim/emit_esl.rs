//! The simulated call center as FreeSWITCH mod_callcenter would tell it over
//! the event socket: [`render`] turns stories into `CUSTOM callcenter::info`
//! and `CHANNEL_HOLD`/`CHANNEL_UNHOLD` events (pure), [`Esl`] is the
//! server's side of the dialogue (`auth/request`, `auth`, `event json|plain`,
//! `api`), both without sockets. mod_callcenter has no customer callbacks:
//! the stories given here have none (see `strip_callbacks`).

use std::hash::Hasher;

use siphasher::sip::SipHasher13;

use super::emit::{Answer, Message, Pbx};
use super::model::{Model, Story};
use crate::event::Millis;

/// The stories without their callbacks: what an ESL stream (and its
/// truth) can hold.
pub fn strip_callbacks(stories: &[Story]) -> Vec<Story> {
    stories
        .iter()
        .cloned()
        .map(|mut s| {
            if let Story::Answered { callback, .. } = &mut s {
                *callback = None;
            }
            s
        })
        .collect()
}

/// A deterministic UUID (v4 layout) for one role of one call.
fn uuid(seed: u64, call: u64, role: u8) -> String {
    let mut h = SipHasher13::new_with_keys(seed, 0x6573_6c2d_7369_6d75);
    h.write_u64(call);
    h.write_u8(role);
    let a = h.finish();
    h.write_u8(0xff);
    let b = h.finish();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | ((b >> 48) & 0x3fff),
        b & 0xffff_ffff_ffff
    )
}

/// Whole seconds, as the `CC-*-Time` headers carry them.
fn secs(ts: Millis) -> String {
    ts.div_euclid(1000).to_string()
}

fn dates(ts: Millis) -> (String, String) {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ts) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let local = t
        .format(&time::macros::format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second]"
        ))
        .unwrap_or_default();
    let gmt = t
        .format(&time::macros::format_description!(
            "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
        ))
        .unwrap_or_default();
    (local, gmt)
}

struct Ids {
    member: String,
    session: String,
    agent: String,
}

/// Every ESL event of the simulation in time order (a call's own events
/// keep their order at the same time): `member-queue-start`,
/// `agent-offering`, `bridge-agent-start`, `CHANNEL_HOLD`/`UNHOLD` on the
/// agent leg (with `variable_cc_member_uuid`), `bridge-agent-end` and
/// `member-queue-end` (`CC-Cause: Terminated`), or for an abandon
/// `member-queue-end` with `CC-Cause: Cancel` and `CC-Cancel-Reason:
/// BREAK_OUT`. Callbacks are not rendered. `Event-Date-Timestamp` is in µs.
pub fn render(model: &Model, stories: &[Story]) -> Vec<Message> {
    let core = uuid(model.seed, u64::MAX, 0);
    let mut all: Vec<Message> = Vec::new();
    let base = |ts: Millis, name: &'static str| -> Vec<(&'static str, String)> {
        let (local, gmt) = dates(ts);
        let mut h = vec![
            ("Event-Name", name.to_string()),
            ("Core-UUID", core.clone()),
            ("FreeSWITCH-Hostname", "sim-pbx".to_string()),
            ("FreeSWITCH-Switchname", "sim-pbx".to_string()),
            ("FreeSWITCH-IPv4", "127.0.0.1".to_string()),
            ("Event-Date-Local", local),
            ("Event-Date-GMT", gmt),
            ("Event-Date-Timestamp", (ts * 1000).to_string()),
        ];
        if name == "CUSTOM" {
            h.push(("Event-Calling-File", "mod_callcenter.c".into()));
            h.push(("Event-Subclass", "callcenter::info".into()));
        } else {
            h.push(("Event-Calling-File", "switch_channel.c".into()));
        }
        h
    };
    let cc = |ts: Millis, action: &'static str, queue: &str, ids: &Ids| {
        let mut h = base(ts, "CUSTOM");
        h.push(("CC-Queue", queue.to_string()));
        h.push(("CC-Action", action.to_string()));
        h.push(("CC-Member-UUID", ids.member.clone()));
        h.push(("CC-Member-Session-UUID", ids.session.clone()));
        h.push(("CC-Member-CID-Name", "Sam Sample".into()));
        h.push(("CC-Member-CID-Number", "+15550100".into()));
        h
    };
    let member_leg = |h: &mut Vec<(&'static str, String)>, ids: &Ids, call: u64| {
        h.push(("Unique-ID", ids.session.clone()));
        h.push((
            "Channel-Name",
            format!("sofia/external/+15550100@trunk-{call:08x}"),
        ));
        h.push(("Caller-Caller-ID-Number", "+15550100".into()));
    };
    for story in stories {
        let (q, call, offered) = match story {
            Story::Abandoned {
                queue,
                call,
                offered,
                ..
            }
            | Story::Answered {
                queue,
                call,
                offered,
                ..
            } => (*queue, *call, *offered),
        };
        let queue = model.queues[q].name.as_str();
        let ids = Ids {
            member: uuid(model.seed, call, 1),
            session: uuid(model.seed, call, 2),
            agent: uuid(model.seed, call, 3),
        };
        let mut start = cc(offered, "member-queue-start", queue, &ids);
        start.push(("CC-Count", "1".into()));
        member_leg(&mut start, &ids, call);
        all.push(Message {
            ts: offered,
            headers: start,
        });
        match story {
            Story::Abandoned { ended, .. } => {
                let mut end = cc(*ended, "member-queue-end", queue, &ids);
                end.push(("CC-Cause", "Cancel".into()));
                end.push(("CC-Cancel-Reason", "BREAK_OUT".into()));
                end.push(("CC-Member-Joined-Time", secs(offered)));
                end.push(("CC-Member-Leaving-Time", secs(*ended)));
                member_leg(&mut end, &ids, call);
                all.push(Message {
                    ts: *ended,
                    headers: end,
                });
            }
            Story::Answered {
                answered,
                holds,
                ends_on_hold,
                ended,
                transferred,
                ..
            } => {
                let agent = super::emit_ami::agent_name(model, q, call);
                let called = offered.max(answered - 4_000);
                let mut offer = cc(called, "agent-offering", queue, &ids);
                offer.push(("CC-Agent", agent.clone()));
                offer.push(("CC-Agent-Type", "callback".into()));
                offer.push(("CC-Agent-System", "single_box".into()));
                offer.push(("CC-Member-DNIS", queue.to_string()));
                all.push(Message {
                    ts: called,
                    headers: offer,
                });
                let agent_leg = |h: &mut Vec<(&'static str, String)>| {
                    h.push(("Unique-ID", ids.agent.clone()));
                    h.push(("Channel-Name", format!("sofia/internal/{agent}")));
                };
                let mut bridge = cc(*answered, "bridge-agent-start", queue, &ids);
                bridge.push(("CC-Agent", agent.clone()));
                bridge.push(("CC-Agent-System", "single_box".into()));
                bridge.push(("CC-Agent-UUID", ids.agent.clone()));
                bridge.push(("CC-Agent-Called-Time", secs(called)));
                bridge.push(("CC-Agent-Answered-Time", secs(*answered)));
                bridge.push(("CC-Member-Joined-Time", secs(offered)));
                agent_leg(&mut bridge);
                all.push(Message {
                    ts: *answered,
                    headers: bridge,
                });
                let hold = |ts: Millis, on: bool| {
                    let name = if on { "CHANNEL_HOLD" } else { "CHANNEL_UNHOLD" };
                    let mut h = base(ts, name);
                    h.push(("Unique-ID", ids.agent.clone()));
                    h.push(("Channel-Name", format!("sofia/internal/{agent}")));
                    h.push((
                        "Channel-Call-State",
                        if on { "HELD" } else { "ACTIVE" }.into(),
                    ));
                    h.push(("variable_cc_member_uuid", ids.member.clone()));
                    h.push(("variable_cc_member_session_uuid", ids.session.clone()));
                    h.push(("variable_cc_queue", queue.to_string()));
                    h.push(("variable_cc_agent", agent.clone()));
                    Message { ts, headers: h }
                };
                for (i, (s, e)) in holds.iter().enumerate() {
                    all.push(hold(*s, true));
                    if !(*ends_on_hold && i + 1 == holds.len()) {
                        all.push(hold(*e, false));
                    }
                }
                let cause = if *transferred {
                    "BLIND_TRANSFER"
                } else {
                    "NORMAL_CLEARING"
                };
                let mut bend = cc(*ended, "bridge-agent-end", queue, &ids);
                bend.push(("CC-Hangup-Cause", cause.into()));
                bend.push(("CC-Agent", agent.clone()));
                bend.push(("CC-Agent-System", "single_box".into()));
                bend.push(("CC-Agent-UUID", ids.agent.clone()));
                bend.push(("CC-Agent-Bridged", "true".into()));
                bend.push(("CC-Agent-Called-Time", secs(called)));
                bend.push(("CC-Agent-Answered-Time", secs(*answered)));
                bend.push(("CC-Member-Joined-Time", secs(offered)));
                bend.push(("CC-Bridge-Terminated-Time", secs(*ended)));
                agent_leg(&mut bend);
                all.push(Message {
                    ts: *ended,
                    headers: bend,
                });
                let mut end = cc(*ended, "member-queue-end", queue, &ids);
                end.push(("CC-Cause", "Terminated".into()));
                end.push(("CC-Hangup-Cause", cause.into()));
                end.push(("CC-Agent", agent.clone()));
                end.push(("CC-Agent-System", "single_box".into()));
                end.push(("CC-Agent-UUID", ids.agent.clone()));
                end.push(("CC-Agent-Called-Time", secs(called)));
                end.push(("CC-Agent-Answered-Time", secs(*answered)));
                end.push(("CC-Member-Joined-Time", secs(offered)));
                end.push(("CC-Member-Leaving-Time", secs(*ended)));
                member_leg(&mut end, &ids, call);
                all.push(Message {
                    ts: *ended,
                    headers: end,
                });
            }
        }
    }
    all.sort_by_key(|m| m.ts);
    for (n, m) in all.iter_mut().enumerate() {
        m.headers.push(("Event-Sequence", (n + 1).to_string()));
    }
    all
}

/// How the client subscribed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    Json,
    Plain,
}

/// A value as `event plain` sends it: URL-encoded (RFC 3986 unreserved
/// characters kept).
pub fn url_encode(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for b in v.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                s.push(b as char)
            }
            _ => s.push_str(&format!("%{b:02X}")),
        }
    }
    s
}

/// One event with its framing: `Content-Length`, `Content-Type`, a blank
/// line, the body.
pub fn encode(m: &Message, body: Body) -> String {
    let (kind, text) = match body {
        Body::Json => {
            let map: serde_json::Map<String, serde_json::Value> = m
                .headers
                .iter()
                .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.clone())))
                .collect();
            (
                "text/event-json",
                serde_json::Value::Object(map).to_string(),
            )
        }
        Body::Plain => {
            let mut t = String::new();
            for (k, v) in &m.headers {
                t.push_str(k);
                t.push_str(": ");
                t.push_str(&url_encode(v));
                t.push('\n');
            }
            t.push('\n');
            ("text/event-plain", t)
        }
    };
    format!(
        "Content-Length: {}\nContent-Type: {kind}\n\n{text}",
        text.len()
    )
}

/// The server's side of one event-socket connection.
pub struct Esl {
    /// `Some`: only this password is accepted; `None`: any.
    password: Option<String>,
    authed: bool,
    body: Option<Body>,
    events: Subscription,
}

impl Esl {
    pub fn new(password: Option<String>) -> Esl {
        Esl {
            password,
            authed: false,
            body: None,
            events: Subscription::default(),
        }
    }
}

/// What an `event <format> ...` command subscribes to, read as
/// mod_event_socket reads it: event names until the word `CUSTOM`, and
/// every word after it a subclass of CUSTOM events (so a name written after
/// `CUSTOM x` is taken as a subclass, and never sent: the trap the
/// simulator must not hide).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Subscription {
    pub all: bool,
    pub names: Vec<String>,
    pub subclasses: Vec<String>,
}

impl Subscription {
    pub fn parse(words: &str) -> Subscription {
        let mut s = Subscription::default();
        let mut custom = false;
        for w in words.split_whitespace() {
            if custom {
                s.subclasses.push(w.to_string());
            } else if w == "CUSTOM" {
                custom = true;
            } else if w == "ALL" {
                s.all = true;
            } else {
                s.names.push(w.to_string());
            }
        }
        s
    }

    /// Whether an event of `name` (and `subclass`, for CUSTOM) is sent.
    pub fn wants(&self, name: &str, subclass: Option<&str>) -> bool {
        if self.all {
            return true;
        }
        match (name, subclass) {
            ("CUSTOM", Some(sub)) => self.subclasses.iter().any(|s| s == sub),
            _ => self.names.iter().any(|n| n == name),
        }
    }
}

fn command_reply(text: &str) -> String {
    format!("Content-Type: command/reply\nReply-Text: {text}\n\n")
}

fn api_response(body: &str) -> String {
    format!(
        "Content-Type: api/response\nContent-Length: {}\n\n{body}",
        body.len()
    )
}

/// The header line of `callcenter_config queue list members`.
const MEMBERS_HEADER: &str = "queue|instance_id|uuid|session_uuid|cid_number|cid_name|system_epoch|joined_epoch|rejoined_epoch|bridge_epoch|abandoned_epoch|base_score|skill_score|serving_agent|serving_system|state|score";

impl Pbx for Esl {
    fn greeting(&self) -> String {
        "Content-Type: auth/request\n\n".to_string()
    }

    fn answer(&mut self, request: &str, _now: Millis) -> Answer {
        let line = request.lines().next().unwrap_or("").trim();
        let (verb, rest) = line.split_once(' ').unwrap_or((line, ""));
        let ok = |text: String| Answer { text, close: false };
        match verb {
            "auth" => {
                let good = self.password.as_deref().is_none_or(|p| p == rest.trim());
                if good {
                    self.authed = true;
                    ok(command_reply("+OK accepted"))
                } else {
                    Answer {
                        text: command_reply("-ERR invalid")
                            + "Content-Type: text/disconnect-notice\nContent-Length: 0\n\n",
                        close: true,
                    }
                }
            }
            "exit" => Answer {
                text: command_reply("+OK bye"),
                close: true,
            },
            _ if !self.authed => ok(command_reply("-ERR command not found")),
            "event" => {
                let format = rest.split_whitespace().next().unwrap_or("");
                let body = match format {
                    "json" => Body::Json,
                    "plain" => Body::Plain,
                    other => {
                        return ok(command_reply(&format!(
                            "-ERR {other} events are not simulated (json or plain)"
                        )))
                    }
                };
                self.body = Some(body);
                let words = rest.split_once(' ').map_or("", |(_, w)| w);
                self.events = Subscription::parse(words);
                ok(command_reply(&format!(
                    "+OK event listener enabled {format}"
                )))
            }
            "api" | "bgapi" => {
                let cmd = rest.trim();
                let out = if cmd.starts_with("callcenter_config") && cmd.contains("list") {
                    format!("{MEMBERS_HEADER}\n+OK\n")
                } else if cmd == "status" {
                    "UP 0 years, 0 days, 0 hours, 1 minute\nFreeSWITCH (simulated by ringwatch) is ready\n+OK\n"
                        .to_string()
                } else {
                    "+OK\n".to_string()
                };
                ok(api_response(&out))
            }
            "filter" | "nixevent" | "noevents" | "log" | "nolog" | "linger" | "nolinger"
            | "myevents" | "divert_events" => ok(command_reply("+OK")),
            _ => ok(command_reply("-ERR command not found")),
        }
    }

    fn ready(&self) -> bool {
        self.authed && self.body.is_some()
    }

    /// Events the client did not subscribe to are not sent, as
    /// FreeSWITCH would not send them.
    fn encode(&self, m: &Message) -> String {
        let name = m.get("Event-Name").unwrap_or("");
        if !self.events.wants(name, m.get("Event-Subclass")) {
            return String::new();
        }
        encode(m, self.body.unwrap_or(Body::Json))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::model::{Callback, QueueSpec, Resolution};

    const T: Millis = 1_795_420_800_000;

    fn model() -> Model {
        Model {
            seed: 5,
            queues: vec![QueueSpec {
                name: "support".into(),
                calls_per_hour: 1.0,
                agents: 1,
            }],
            ..Model::default()
        }
    }

    fn what(m: &Message) -> String {
        match m.get("CC-Action") {
            Some(a) => a.to_string(),
            None => m.get("Event-Name").unwrap_or("?").to_string(),
        }
    }

    #[test]
    fn an_answered_call_and_an_abandon() {
        let stories = [
            Story::Answered {
                queue: 0,
                call: 1,
                offered: T + 1,
                answered: T + 18_001,
                holds: vec![(T + 20_000, T + 37_000), (T + 40_000, T + 50_000)],
                ends_on_hold: true,
                ended: T + 50_000,
                transferred: false,
                callback: Some(Callback {
                    promised: T + 49_000,
                    due: T + 90_000,
                    resolution: Resolution::Never,
                }),
            },
            Story::Abandoned {
                queue: 0,
                call: 2,
                offered: T + 60_000,
                ended: T + 63_500,
            },
        ];
        let ms = render(&model(), &strip_callbacks(&stories));
        let names: Vec<String> = ms.iter().map(what).collect();
        assert_eq!(
            names,
            [
                "member-queue-start",
                "agent-offering",
                "bridge-agent-start",
                "CHANNEL_HOLD",
                "CHANNEL_UNHOLD",
                "CHANNEL_HOLD",
                "bridge-agent-end",
                "member-queue-end",
                "member-queue-start",
                "member-queue-end",
            ]
        );
        let start = &ms[0];
        assert_eq!(start.get("Event-Subclass"), Some("callcenter::info"));
        assert_eq!(start.get("Event-Date-Timestamp"), Some("1795420800001000"));
        assert_eq!(start.get("CC-Queue"), Some("support"));
        assert_eq!(start.get("Event-Sequence"), Some("1"));
        let member = start.get("CC-Member-UUID").unwrap().to_string();
        assert_eq!(member.len(), 36);
        let bridge = &ms[2];
        assert_eq!(bridge.get("CC-Agent"), Some("agent-support-1"));
        assert_eq!(bridge.get("CC-Agent-Answered-Time"), Some("1795420818"));
        let hold = &ms[3];
        assert_eq!(
            hold.get("Unique-ID"),
            bridge.get("CC-Agent-UUID"),
            "agent leg"
        );
        assert_eq!(hold.get("variable_cc_member_uuid"), Some(member.as_str()));
        assert_eq!(hold.get("Event-Subclass"), None);
        let end = &ms[7];
        assert_eq!(end.get("CC-Cause"), Some("Terminated"));
        let abandon = &ms[9];
        assert_eq!(abandon.get("CC-Cause"), Some("Cancel"));
        assert_eq!(abandon.get("CC-Cancel-Reason"), Some("BREAK_OUT"));
        assert_ne!(abandon.get("CC-Member-UUID"), Some(member.as_str()));
        // the same seed, the same ids
        assert_eq!(render(&model(), &strip_callbacks(&stories)), ms);
    }

    #[test]
    fn framing_in_json_and_plain() {
        let m = Message {
            ts: T,
            headers: vec![
                ("Event-Name", "CUSTOM".into()),
                ("CC-Queue", "a b:c".into()),
            ],
        };
        let j = encode(&m, Body::Json);
        let (head, body) = j.split_once("\n\n").unwrap();
        assert_eq!(
            head,
            format!(
                "Content-Length: {}\nContent-Type: text/event-json",
                body.len()
            )
        );
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["CC-Queue"], "a b:c");
        let p = encode(&m, Body::Plain);
        let (head, body) = p.split_once("\n\n").unwrap();
        assert_eq!(
            head,
            format!(
                "Content-Length: {}\nContent-Type: text/event-plain",
                body.len()
            )
        );
        assert_eq!(body, "Event-Name: CUSTOM\nCC-Queue: a%20b%3Ac\n\n");
    }

    #[test]
    fn subscriptions_read_names_before_custom_and_subclasses_after() {
        let wrong = Subscription::parse(
            "CUSTOM callcenter::info CHANNEL_HOLD CHANNEL_UNHOLD CHANNEL_HANGUP_COMPLETE",
        );
        assert!(wrong.wants("CUSTOM", Some("callcenter::info")));
        assert!(!wrong.wants("CHANNEL_HOLD", None), "taken as a subclass");
        let right = Subscription::parse(crate::sources::freeswitch_esl::SUBSCRIBE_EVENTS);
        for name in ["CHANNEL_HOLD", "CHANNEL_UNHOLD", "CHANNEL_HANGUP_COMPLETE"] {
            assert!(right.wants(name, None), "{name}");
        }
        assert!(right.wants("CUSTOM", Some("callcenter::info")));
        assert!(!right.wants("CUSTOM", Some("conference::maintenance")));
        assert!(!right.wants("HEARTBEAT", None));
        assert!(Subscription::parse("ALL").wants("HEARTBEAT", None));
    }

    #[test]
    fn the_dialogue_authenticates_and_subscribes() {
        let mut esl = Esl::new(Some("ClueCon".into()));
        assert_eq!(esl.greeting(), "Content-Type: auth/request\n\n");
        let a = esl.answer("event json CUSTOM callcenter::info\n", T);
        assert!(a.text.contains("-ERR") && !esl.ready());
        let a = esl.answer("auth wrong\n", T);
        assert!(a.close && a.text.contains("-ERR invalid"));
        let mut esl = Esl::new(Some("ClueCon".into()));
        let a = esl.answer("auth ClueCon\n", T);
        assert_eq!(
            a.text,
            "Content-Type: command/reply\nReply-Text: +OK accepted\n\n"
        );
        assert!(!esl.ready(), "not subscribed yet");
        let a = esl.answer(
            "event json CHANNEL_HOLD CHANNEL_UNHOLD CUSTOM callcenter::info\n",
            T,
        );
        assert_eq!(
            a.text,
            "Content-Type: command/reply\nReply-Text: +OK event listener enabled json\n\n"
        );
        assert!(esl.ready());
        let a = esl.answer("api status\n", T);
        assert!(a
            .text
            .starts_with("Content-Type: api/response\nContent-Length: "));
        let a = esl.answer("api callcenter_config queue list members support\n", T);
        assert!(a.text.ends_with("|state|score\n+OK\n"), "{}", a.text);
        let a = esl.answer("exit\n", T);
        assert!(a.close);
        let mut any = Esl::new(None);
        any.answer("auth whatever\n", T);
        any.answer("event plain ALL\n", T);
        assert!(any.ready());
        assert!(any
            .encode(&Message {
                ts: T,
                headers: vec![]
            })
            .contains("text/event-plain"));
    }
}
