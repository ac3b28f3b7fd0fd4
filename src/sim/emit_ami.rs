//! The simulated call center as Asterisk 12+ would tell it over the Manager
//! Interface: [`render`] turns stories into AMI events with `Timestamp:`
//! headers (pure), [`Ami`] is the server's side of the dialogue (banner,
//! Login, Ping, QueueStatus, Logoff), both without sockets.

use super::emit::{Answer, Message, Pbx};
use super::model::{Model, Resolution, Story};
use crate::event::Millis;

/// What Asterisk 20 announces (the AMI version, not Asterisk's).
pub const BANNER: &str = "Asterisk Call Manager/9.0.0";

/// `sec.usec`, as `timestampevents = yes` stamps events.
pub fn timestamp(ts: Millis) -> String {
    format!("{}.{:06}", ts.div_euclid(1000), ts.rem_euclid(1000) * 1000)
}

/// A channel as AMI snapshots it.
struct Channel {
    name: String,
    uniqueid: String,
    linkedid: String,
    cid_num: String,
    cid_name: String,
    exten: String,
}

impl Channel {
    /// The snapshot headers, with `prefix` (`""` or `"Dest"`).
    fn snapshot(&self, prefix: &'static str, h: &mut Vec<(&'static str, String)>) {
        let k = |name: &'static str| -> &'static str {
            match (prefix, name) {
                ("", n) => n,
                (_, "Channel") => "DestChannel",
                (_, "ChannelState") => "DestChannelState",
                (_, "ChannelStateDesc") => "DestChannelStateDesc",
                (_, "CallerIDNum") => "DestCallerIDNum",
                (_, "CallerIDName") => "DestCallerIDName",
                (_, "ConnectedLineNum") => "DestConnectedLineNum",
                (_, "ConnectedLineName") => "DestConnectedLineName",
                (_, "Language") => "DestLanguage",
                (_, "AccountCode") => "DestAccountCode",
                (_, "Context") => "DestContext",
                (_, "Exten") => "DestExten",
                (_, "Priority") => "DestPriority",
                (_, "Uniqueid") => "DestUniqueid",
                (_, "Linkedid") => "DestLinkedid",
                (_, n) => n,
            }
        };
        h.push((k("Channel"), self.name.clone()));
        h.push((k("ChannelState"), "6".into()));
        h.push((k("ChannelStateDesc"), "Up".into()));
        h.push((k("CallerIDNum"), self.cid_num.clone()));
        h.push((k("CallerIDName"), self.cid_name.clone()));
        h.push((k("ConnectedLineNum"), "<unknown>".into()));
        h.push((k("ConnectedLineName"), "<unknown>".into()));
        h.push((k("Language"), "en".into()));
        h.push((k("AccountCode"), String::new()));
        h.push((k("Context"), "from-queue".into()));
        h.push((k("Exten"), self.exten.clone()));
        h.push((k("Priority"), "1".into()));
        h.push((k("Uniqueid"), self.uniqueid.clone()));
        h.push((k("Linkedid"), self.linkedid.clone()));
    }
}

/// Collects the messages of one story, stamped.
struct Out<'a> {
    all: &'a mut Vec<Message>,
}

impl Out<'_> {
    fn event(&mut self, ts: Millis, name: &'static str, privilege: &'static str) -> Builder<'_> {
        let headers = vec![
            ("Event", name.to_string()),
            ("Privilege", privilege.to_string()),
            ("Timestamp", timestamp(ts)),
        ];
        Builder {
            all: self.all,
            ts,
            headers,
        }
    }
}

struct Builder<'a> {
    all: &'a mut Vec<Message>,
    ts: Millis,
    headers: Vec<(&'static str, String)>,
}

impl Builder<'_> {
    fn chan(mut self, c: &Channel) -> Self {
        c.snapshot("", &mut self.headers);
        self
    }
    fn dest(mut self, c: &Channel) -> Self {
        c.snapshot("Dest", &mut self.headers);
        self
    }
    fn h(mut self, k: &'static str, v: impl Into<String>) -> Self {
        self.headers.push((k, v.into()));
        self
    }
    fn push(self) {
        self.all.push(Message {
            ts: self.ts,
            headers: self.headers,
        });
    }
}

/// The agent the simulator names for a call (as [`super::events`] does).
pub fn agent_name(model: &Model, queue: usize, call: u64) -> String {
    format!("agent-{}-{}", model.queues[queue].name, call % 7)
}

/// The promise id a story's callback carries (as [`super::events`] does).
pub fn promise_name(model: &Model, call: u64) -> String {
    format!("p{}-{call}", model.seed)
}

fn caller(offered: Millis, call: u64, queue: &str) -> Channel {
    let uniqueid = format!("{}.{}", offered.div_euclid(1000), 2 * call);
    Channel {
        name: format!("PJSIP/trunk-{call:08x}"),
        linkedid: uniqueid.clone(),
        uniqueid,
        cid_num: "+15550100".into(),
        cid_name: "Sam Sample".into(),
        exten: queue.to_string(),
    }
}

/// Every AMI event of the simulation, in time order (the events of one
/// call keep their order when several share a time), in the order a real
/// capture shows: `QueueCallerJoin`, `MusicOnHoldStart` while waiting,
/// `AgentCalled`, `MusicOnHoldStop`, `QueueCallerLeave` before
/// `AgentConnect`, `Hold`/`Unhold` on the agent's channel, the
/// `RingwatchCallback` user events, `AgentComplete` and the `Hangup`s; an
/// abandon is `QueueCallerAbandon`, `QueueCallerLeave` and the caller's
/// `Hangup`.
pub fn render(model: &Model, stories: &[Story]) -> Vec<Message> {
    let mut all = Vec::new();
    let mut out = Out { all: &mut all };
    for story in stories {
        match story {
            Story::Abandoned {
                queue: q,
                call,
                offered,
                ended,
            } => {
                let queue = model.queues[*q].name.as_str();
                let c = caller(*offered, *call, queue);
                join(&mut out, *offered, &c, queue);
                let waited = ((ended - offered) / 1000).to_string();
                out.event(*ended, "QueueCallerAbandon", "agent,all")
                    .chan(&c)
                    .h("Queue", queue)
                    .h("Position", "1")
                    .h("OriginalPosition", "1")
                    .h("HoldTime", waited)
                    .push();
                out.event(*ended, "MusicOnHoldStop", "call,all")
                    .chan(&c)
                    .push();
                out.event(*ended, "QueueCallerLeave", "agent,all")
                    .chan(&c)
                    .h("Queue", queue)
                    .h("Count", "0")
                    .h("Position", "1")
                    .push();
                hangup(&mut out, *ended, &c);
            }
            Story::Answered {
                queue: q,
                call,
                offered,
                answered,
                holds,
                ends_on_hold,
                ended,
                transferred,
                callback,
            } => {
                let queue = model.queues[*q].name.as_str();
                let c = caller(*offered, *call, queue);
                let agent_name = agent_name(model, *q, *call);
                let interface = format!("PJSIP/{agent_name}");
                let rung = (*offered).max(answered - 4_000);
                let agent = Channel {
                    name: format!("{interface}-{call:08x}"),
                    uniqueid: format!("{}.{}", rung.div_euclid(1000), 2 * call + 1),
                    linkedid: c.uniqueid.clone(),
                    cid_num: agent_name.clone(),
                    cid_name: agent_name.clone(),
                    exten: "s".into(),
                };
                join(&mut out, *offered, &c, queue);
                out.event(rung, "AgentCalled", "agent,all")
                    .chan(&c)
                    .dest(&agent)
                    .h("Queue", queue)
                    .h("MemberName", agent_name.as_str())
                    .h("Interface", interface.as_str())
                    .push();
                out.event(*answered, "MusicOnHoldStop", "call,all")
                    .chan(&c)
                    .push();
                out.event(*answered, "QueueCallerLeave", "agent,all")
                    .chan(&c)
                    .h("Queue", queue)
                    .h("Count", "0")
                    .h("Position", "1")
                    .push();
                let waited = ((answered - offered) / 1000).to_string();
                out.event(*answered, "AgentConnect", "agent,all")
                    .chan(&c)
                    .dest(&agent)
                    .h("Queue", queue)
                    .h("MemberName", agent_name.as_str())
                    .h("Interface", interface.as_str())
                    .h("HoldTime", waited.as_str())
                    .h("RingTime", ((answered - rung) / 1000).to_string())
                    .push();
                // Holds and the promise interleave by time.
                let mut middle: Vec<(Millis, u8, usize)> = Vec::new();
                for (i, (start, end)) in holds.iter().enumerate() {
                    middle.push((*start, 0, i));
                    if !(*ends_on_hold && i + 1 == holds.len()) {
                        middle.push((*end, 1, i));
                    }
                }
                if let Some(cb) = callback {
                    middle.push((cb.promised, 2, 0));
                }
                // Stable: a hold before the promise at the same time, as
                // `events` has them.
                middle.sort_by_key(|(ts, _, _)| *ts);
                for (ts, kind, _) in middle {
                    match kind {
                        0 => out
                            .event(ts, "Hold", "call,all")
                            .chan(&agent)
                            .h("MusicClass", "default")
                            .push(),
                        1 => out.event(ts, "Unhold", "call,all").chan(&agent).push(),
                        _ => {
                            if let Some(cb) = callback {
                                out.event(ts, "UserEvent", "user,all")
                                    .chan(&c)
                                    .h("UserEvent", "RingwatchCallback")
                                    .h("Action", "promised")
                                    .h("Promise", promise_name(model, *call))
                                    .h("Due", due(cb.due))
                                    .h("Agent", agent_name.as_str())
                                    .push();
                            }
                        }
                    }
                }
                let reason = if *transferred { "transfer" } else { "caller" };
                out.event(*ended, "AgentComplete", "agent,all")
                    .chan(&c)
                    .dest(&agent)
                    .h("Queue", queue)
                    .h("MemberName", agent_name.as_str())
                    .h("Interface", interface.as_str())
                    .h("HoldTime", waited)
                    .h("TalkTime", ((ended - answered) / 1000).to_string())
                    .h("Reason", reason)
                    .push();
                hangup(&mut out, *ended, &c);
                hangup(&mut out, *ended, &agent);
                if let Some(cb) = callback {
                    let resolved = match cb.resolution {
                        Resolution::Completed(at) => Some((at, "completed")),
                        Resolution::Cancelled(at) => Some((at, "cancelled")),
                        Resolution::Never => None,
                    };
                    if let Some((at, action)) = resolved {
                        let back = Channel {
                            name: format!("Local/callback@ringwatch-{call:08x};1"),
                            uniqueid: format!("{}.{}", at.div_euclid(1000), 1_000_000 + call),
                            linkedid: format!("{}.{}", at.div_euclid(1000), 1_000_000 + call),
                            cid_num: agent_name.clone(),
                            cid_name: agent_name.clone(),
                            exten: "callback".into(),
                        };
                        let mut b = out
                            .event(at, "UserEvent", "user,all")
                            .chan(&back)
                            .h("UserEvent", "RingwatchCallback")
                            .h("Action", action)
                            .h("Promise", promise_name(model, *call));
                        if action == "completed" {
                            b = b.h("Agent", agent_name.as_str());
                        }
                        b.push();
                    }
                }
            }
        }
    }
    // Stable: the events of one call with the same time keep their order.
    all.sort_by_key(|m| m.ts);
    all
}

/// `Due:` as Unix seconds with the milliseconds.
fn due(ms: Millis) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

fn join(out: &mut Out<'_>, ts: Millis, c: &Channel, queue: &str) {
    out.event(ts, "QueueCallerJoin", "agent,all")
        .chan(c)
        .h("Queue", queue)
        .h("Position", "1")
        .h("Count", "1")
        .push();
    out.event(ts, "MusicOnHoldStart", "call,all")
        .chan(c)
        .h("Class", "default")
        .push();
}

fn hangup(out: &mut Out<'_>, ts: Millis, c: &Channel) {
    out.event(ts, "Hangup", "call,all")
        .chan(c)
        .h("Cause", "16")
        .h("Cause-txt", "Normal Clearing")
        .push();
}

/// One message as AMI text: `Key: Value` lines ending in CRLF, a blank line.
pub fn encode(m: &Message) -> String {
    let mut s = String::with_capacity(m.headers.len() * 32);
    for (k, v) in &m.headers {
        s.push_str(k);
        s.push_str(": ");
        s.push_str(v);
        s.push_str("\r\n");
    }
    s.push_str("\r\n");
    s
}

/// The server's side of one AMI connection.
pub struct Ami {
    /// `Some((username, secret))`: only that login is accepted; `None`: any.
    login: Option<(String, String)>,
    logged_in: bool,
}

impl Ami {
    pub fn new(login: Option<(String, String)>) -> Ami {
        Ami {
            login,
            logged_in: false,
        }
    }
}

/// `Key: Value` lines of a request; keys lower-cased (AMI matches them
/// regardless of case).
fn headers(request: &str) -> Vec<(String, String)> {
    request
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect()
}

fn reply(lines: &[(&str, &str)], action_id: Option<&str>) -> String {
    let mut s = String::new();
    let mut put = |k: &str, v: &str| {
        s.push_str(k);
        s.push_str(": ");
        s.push_str(v);
        s.push_str("\r\n");
    };
    if let Some((k, v)) = lines.first() {
        put(k, v);
    }
    if let Some(id) = action_id {
        put("ActionID", id);
    }
    for (k, v) in lines.iter().skip(1) {
        put(k, v);
    }
    s.push_str("\r\n");
    s
}

impl Pbx for Ami {
    fn greeting(&self) -> String {
        format!("{BANNER}\r\n")
    }

    fn answer(&mut self, request: &str, now: Millis) -> Answer {
        let h = headers(request);
        let get = |k: &str| h.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        let id = get("actionid");
        let action = get("action").unwrap_or("").to_ascii_lowercase();
        let text = |lines: &[(&str, &str)]| Answer {
            text: reply(lines, id),
            close: false,
        };
        match action.as_str() {
            "login" => {
                let ok = match &self.login {
                    None => true,
                    Some((user, secret)) => {
                        get("username") == Some(user.as_str())
                            && get("secret") == Some(secret.as_str())
                    }
                };
                if !ok {
                    return Answer {
                        text: reply(
                            &[("Response", "Error"), ("Message", "Authentication failed")],
                            id,
                        ),
                        close: true,
                    };
                }
                self.logged_in = true;
                let mut s = reply(
                    &[
                        ("Response", "Success"),
                        ("Message", "Authentication accepted"),
                    ],
                    id,
                );
                s.push_str(&encode(&Message {
                    ts: now,
                    headers: vec![
                        ("Event", "FullyBooted".into()),
                        ("Privilege", "system,all".into()),
                        // As every event with `timestampevents = yes`.
                        ("Timestamp", timestamp(now)),
                        ("Uptime", "1".into()),
                        ("LastReload", "1".into()),
                        ("Status", "Fully Booted".into()),
                    ],
                }));
                Answer {
                    text: s,
                    close: false,
                }
            }
            "logoff" => Answer {
                text: reply(
                    &[
                        ("Response", "Goodbye"),
                        ("Message", "Thanks for all the fish."),
                    ],
                    id,
                ),
                close: true,
            },
            "challenge" => text(&[
                ("Response", "Error"),
                (
                    "Message",
                    "Only plain logins here (AuthType MD5 is not simulated)",
                ),
            ]),
            _ if !self.logged_in => text(&[
                ("Response", "Error"),
                ("Message", "Authentication Required"),
            ]),
            "ping" => {
                let stamp = timestamp(now);
                text(&[
                    ("Response", "Success"),
                    ("Ping", "Pong"),
                    ("Timestamp", stamp.as_str()),
                ])
            }
            "events" => text(&[("Response", "Success"), ("Events", "On")]),
            "queuestatus" | "coreshowchannels" => {
                let (message, complete) = if action == "queuestatus" {
                    ("Queue status will follow", "QueueStatusComplete")
                } else {
                    ("Channels will follow", "CoreShowChannelsComplete")
                };
                let mut s = reply(
                    &[
                        ("Response", "Success"),
                        ("EventList", "start"),
                        ("Message", message),
                    ],
                    id,
                );
                s.push_str(&reply(
                    &[
                        ("Event", complete),
                        ("EventList", "Complete"),
                        ("ListItems", "0"),
                    ],
                    id,
                ));
                Answer {
                    text: s,
                    close: false,
                }
            }
            _ => text(&[
                ("Response", "Error"),
                ("Message", "Invalid/unknown command"),
            ]),
        }
    }

    fn ready(&self) -> bool {
        self.logged_in
    }

    fn encode(&self, m: &Message) -> String {
        encode(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::model::{Callback, QueueSpec};

    fn model() -> Model {
        Model {
            seed: 7,
            queues: vec![QueueSpec {
                name: "sales".into(),
                calls_per_hour: 1.0,
                agents: 1,
            }],
            ..Model::default()
        }
    }

    const T: Millis = 1_795_420_800_000;

    fn names(ms: &[Message]) -> Vec<String> {
        ms.iter()
            .map(|m| {
                let e = m.get("Event").unwrap_or("?");
                match m.get("Action") {
                    Some(a) => format!("{e}:{a}"),
                    None => e.to_string(),
                }
            })
            .collect()
    }

    #[test]
    fn an_answered_call_reads_like_a_real_capture() {
        let story = Story::Answered {
            queue: 0,
            call: 3,
            offered: T + 250,
            answered: T + 19_251,
            holds: vec![(T + 30_000, T + 47_001)],
            ends_on_hold: false,
            ended: T + 90_000,
            transferred: false,
            callback: Some(Callback {
                promised: T + 90_000,
                due: T + 3_690_500,
                resolution: Resolution::Completed(T + 600_000),
            }),
        };
        let ms = render(&model(), &[story]);
        assert_eq!(
            names(&ms),
            [
                "QueueCallerJoin",
                "MusicOnHoldStart",
                "AgentCalled",
                "MusicOnHoldStop",
                "QueueCallerLeave",
                "AgentConnect",
                "Hold",
                "Unhold",
                "UserEvent:promised",
                "AgentComplete",
                "Hangup",
                "Hangup",
                "UserEvent:completed",
            ]
        );
        let join = &ms[0];
        assert_eq!(join.get("Timestamp"), Some("1795420800.250000"));
        assert_eq!(join.get("Uniqueid"), Some("1795420800.6"));
        assert_eq!(join.get("Linkedid"), Some("1795420800.6"));
        assert_eq!(join.get("Queue"), Some("sales"));
        let connect = &ms[5];
        assert_eq!(connect.get("Timestamp"), Some("1795420819.251000"));
        assert_eq!(connect.get("HoldTime"), Some("19"), "queue wait, seconds");
        assert_eq!(connect.get("MemberName"), Some("agent-sales-3"));
        assert_eq!(connect.get("DestUniqueid"), Some("1795420815.7"));
        assert_eq!(connect.get("DestLinkedid"), Some("1795420800.6"));
        let hold = &ms[6];
        assert_eq!(hold.get("Channel"), Some("PJSIP/agent-sales-3-00000003"));
        assert_eq!(
            hold.get("Uniqueid"),
            Some("1795420815.7"),
            "the agent's leg"
        );
        assert_eq!(hold.get("Linkedid"), Some("1795420800.6"));
        assert_eq!(ms[7].get("Timestamp"), Some("1795420847.001000"));
        let promised = &ms[8];
        assert_eq!(promised.get("UserEvent"), Some("RingwatchCallback"));
        assert_eq!(promised.get("Promise"), Some("p7-3"));
        assert_eq!(promised.get("Due"), Some("1795424490.500"));
        assert_eq!(
            promised.get("Uniqueid"),
            Some("1795420800.6"),
            "the call's channel"
        );
        assert_eq!(promised.get("Queue"), None, "targets the call");
        assert_eq!(ms[9].get("Reason"), Some("caller"));
        assert_eq!(ms[9].get("TalkTime"), Some("70"));
        let text = encode(&ms[0]);
        assert!(text.starts_with(
            "Event: QueueCallerJoin\r\nPrivilege: agent,all\r\nTimestamp: 1795420800.250000\r\n"
        ));
        assert!(text.ends_with("\r\nCount: 1\r\n\r\n"), "{text}");
    }

    #[test]
    fn an_abandon_a_transfer_and_a_call_ending_on_hold() {
        let stories = [
            Story::Abandoned {
                queue: 0,
                call: 1,
                offered: T,
                ended: T + 4_000,
            },
            Story::Answered {
                queue: 0,
                call: 2,
                offered: T + 1_000,
                answered: T + 2_000,
                holds: vec![(T + 5_000, T + 9_000)],
                ends_on_hold: true,
                ended: T + 9_000,
                transferred: true,
                callback: Some(Callback {
                    promised: T + 8_000,
                    due: T + 100_000,
                    resolution: Resolution::Never,
                }),
            },
        ];
        let ms = render(&model(), &stories);
        let of = |uid_prefix: &str| -> Vec<String> {
            names(
                &ms.iter()
                    .filter(|m| {
                        m.get("Uniqueid").is_some_and(|u| u.ends_with(uid_prefix))
                            || m.get("DestUniqueid")
                                .is_some_and(|u| u.ends_with(uid_prefix))
                    })
                    .cloned()
                    .collect::<Vec<_>>(),
            )
        };
        assert_eq!(
            of(".2"),
            [
                "QueueCallerJoin",
                "MusicOnHoldStart",
                "QueueCallerAbandon",
                "MusicOnHoldStop",
                "QueueCallerLeave",
                "Hangup"
            ]
        );
        let second: Vec<String> = of(".4");
        assert!(!second.contains(&"Unhold".to_string()), "{second:?}");
        let complete = ms
            .iter()
            .find(|m| m.get("Event") == Some("AgentComplete"))
            .unwrap();
        assert_eq!(complete.get("Reason"), Some("transfer"));
        // a promise never kept has no resolution event
        assert_eq!(
            ms.iter()
                .filter(|m| m.get("Event") == Some("UserEvent"))
                .count(),
            1
        );
        // time order overall
        assert!(ms.windows(2).all(|w| w[0].ts <= w[1].ts));
    }

    #[test]
    fn the_dialogue_logs_in_pings_and_lists_no_queue() {
        let mut ami = Ami::new(Some(("rw".into(), "s3cret".into())));
        assert_eq!(ami.greeting(), "Asterisk Call Manager/9.0.0\r\n");
        let a = ami.answer("Action: Ping\nActionID: 1\n", T);
        assert!(a.text.contains("Authentication Required") && !a.close);
        let a = ami.answer(
            "Action: Login\nUsername: rw\nSecret: nope\nActionID: 2\n",
            T,
        );
        assert_eq!(
            a.text,
            "Response: Error\r\nActionID: 2\r\nMessage: Authentication failed\r\n\r\n"
        );
        assert!(a.close && !ami.ready());
        let a = ami.answer(
            "action: login\nusername: rw\nsecret: s3cret\nevents: call,agent\n",
            T,
        );
        assert!(a.text.starts_with("Response: Success\r\nMessage: Authentication accepted\r\n\r\nEvent: FullyBooted\r\n"), "{}", a.text);
        assert!(ami.ready());
        let a = ami.answer("Action: Ping\nActionID: p1\n", T + 5);
        assert_eq!(
            a.text,
            "Response: Success\r\nActionID: p1\r\nPing: Pong\r\nTimestamp: 1795420800.005000\r\n\r\n"
        );
        let a = ami.answer("Action: QueueStatus\nActionID: q\n", T);
        assert!(a.text.contains("EventList: start\r\n"));
        assert!(a.text.ends_with(
            "Event: QueueStatusComplete\r\nActionID: q\r\nEventList: Complete\r\nListItems: 0\r\n\r\n"
        ));
        let a = ami.answer("Action: Originate\n", T);
        assert!(a.text.contains("Invalid/unknown command"));
        let a = ami.answer("Action: Logoff\n", T);
        assert!(a.close && a.text.starts_with("Response: Goodbye"));
        // without configured credentials any login is accepted
        let mut any = Ami::new(None);
        assert!(
            !any.answer("Action: Login\nUsername: x\nSecret: y\n", T)
                .close
        );
        assert!(any.ready());
    }

    #[test]
    fn a_whole_simulation_renders_in_time_order() {
        let model = Model {
            duration: 600_000,
            ..Model::default()
        };
        let stories = model.stories();
        let ms = render(&model, &stories);
        assert!(ms.windows(2).all(|w| w[0].ts <= w[1].ts));
        let joins = ms
            .iter()
            .filter(|m| m.get("Event") == Some("QueueCallerJoin"))
            .count();
        assert_eq!(joins, stories.len());
    }
}
