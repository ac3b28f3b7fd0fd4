//! The pure translator: one ESL event ([`Headers`]) in, ringwatch events
//! out, with the per-call state mod_callcenter's events need to be tied
//! together (the member's queue visit, its caller and agent legs for hold
//! events, its holds). No I/O and no clock: time is the event's own
//! `Event-Date-Timestamp`. The state serializes (`serde`) so a restart
//! keeps correlating, and it is bounded.
//!
//! The same event read twice gives the same ringwatch event (same
//! deterministic `event_id`), so the pipeline counts it as a duplicate; a
//! translator state is never advanced by a repeat.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use serde::{Deserialize, Serialize};

use super::frame::Headers;
use crate::event::{Body, EndReason, Event, Id, Label, Millis};
use crate::sources::ids::{self, Family, Step};
use crate::sources::metrics::Skip;
use crate::sources::Translate;

/// Calls followed at once; past it the oldest is let go (its later events
/// are `unknown_call`, the engine evicts it after `call_ttl`).
pub const MAX_IN_FLIGHT: usize = 10_000;
/// Ended members remembered (for `member-queue-resume` and for repeats).
pub const MAX_ENDED: usize = 10_000;

/// 9999-12-31T23:59:59.999Z, the contract's last instant.
const TS_MAX: Millis = 253_402_300_799_999;

/// Why an ESL event made no ringwatch event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    pub reason: Skip,
    pub detail: String,
}

fn skip(reason: Skip, detail: impl Into<String>) -> Skipped {
    Skipped {
        reason,
        detail: detail.into(),
    }
}

/// One queue member (a `CC-Member-UUID`) as far as ringwatch knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Member {
    /// The queue visit this member is in (1, then +1 per resume).
    visit: u32,
    call: Id,
    queue: Label,
    /// `CC-Member-Session-UUID`: the caller's channel.
    session: Option<String>,
    /// `CC-Agent-UUID` of `bridge-agent-start`: the agent's channel.
    agent_leg: Option<String>,
    answered: bool,
    /// Holds started so far (the n of `HoldStarted(n)`).
    holds: u32,
    on_hold: bool,
    ended: bool,
    /// Order of arrival, for letting the oldest go past the bound.
    seq: u64,
}

/// The translator and its state.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Translator {
    members: HashMap<String, Member>,
    /// Member uuids (and the visit) in the order they ended.
    ended: VecDeque<(String, u32)>,
    seq: u64,
    /// Leg (channel) uuid -> member uuid; rebuilt from `members`.
    #[serde(skip)]
    legs: HashMap<String, String>,
    #[serde(skip)]
    dirty: bool,
    /// Calls ringwatch should forget without an outcome, taken by the
    /// session after it delivered the events before them.
    #[serde(skip)]
    forget: Vec<Id>,
}

/// What reconciliation decided for one queue's calls.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reconciliation {
    pub kept: u64,
    /// Calls to forget: no longer listed, or answered while ringwatch was
    /// away (an answer it cannot time).
    pub dropped: Vec<Id>,
}

impl Translator {
    pub fn new() -> Self {
        Translator::default()
    }

    /// A state read back from disk, its leg index rebuilt and its bounds
    /// enforced.
    pub fn restored(mut self) -> Self {
        self.legs.clear();
        let pairs: Vec<(String, String)> = self
            .members
            .iter()
            .filter(|(_, m)| !m.ended)
            .flat_map(|(uuid, m)| {
                [m.session.clone(), m.agent_leg.clone()]
                    .into_iter()
                    .flatten()
                    .map(move |leg| (leg, uuid.clone()))
            })
            .collect();
        self.legs.extend(pairs);
        self.ended.retain(|(u, v)| {
            self.members
                .get(u)
                .is_some_and(|m| m.ended && m.visit == *v)
        });
        let ended_known: HashSet<&String> = self.ended.iter().map(|(u, _)| u).collect();
        let orphans: Vec<String> = self
            .members
            .iter()
            .filter(|(u, m)| m.ended && !ended_known.contains(u))
            .map(|(u, _)| u.clone())
            .collect();
        for u in orphans {
            self.members.remove(&u);
        }
        self.bound();
        self.dirty = false;
        self
    }

    /// The calls to forget since the last call, in order.
    pub fn take_forget(&mut self) -> Vec<Id> {
        std::mem::take(&mut self.forget)
    }

    /// Whether the state changed since the last [`Translator::saved`].
    pub fn dirty(&self) -> bool {
        self.dirty
    }

    pub fn saved(&mut self) {
        self.dirty = false;
    }

    /// Calls followed now (offered, not ended).
    pub fn in_flight(&self) -> usize {
        self.members.values().filter(|m| !m.ended).count()
    }

    /// The queues with calls in flight.
    pub fn queues_in_flight(&self) -> BTreeSet<String> {
        self.members
            .values()
            .filter(|m| !m.ended)
            .map(|m| m.queue.to_string())
            .collect()
    }

    /// Member uuids in flight on `queue` now: what a reconnect checks.
    pub fn members_in_flight(&self, queue: &str) -> Vec<String> {
        self.members
            .iter()
            .filter(|(_, m)| !m.ended && m.queue == queue)
            .map(|(u, _)| u.clone())
            .collect()
    }

    /// Reconcile `checked` (members of one queue in flight at the
    /// reconnect) against the queue's member list: `listed` maps a member
    /// uuid to its `state` column. A member still in flight here that is
    /// not listed, is listed `Abandoned`, or is listed `Answered` while
    /// ringwatch never saw the answer, is dropped from the state and
    /// returned for the pipeline to forget.
    pub fn reconcile(
        &mut self,
        checked: &[String],
        listed: &HashMap<String, String>,
    ) -> Reconciliation {
        let mut out = Reconciliation::default();
        for uuid in checked {
            let Some(m) = self.members.get(uuid) else {
                continue;
            };
            if m.ended {
                continue;
            }
            let keep = match listed.get(uuid).map(String::as_str) {
                None | Some("Abandoned") => false,
                Some("Answered") => m.answered,
                Some(_) => true,
            };
            if keep {
                out.kept += 1;
            } else if let Some(m) = self.remove(uuid) {
                out.dropped.push(m.call);
            }
        }
        out
    }

    fn remove(&mut self, uuid: &str) -> Option<Member> {
        let m = self.members.remove(uuid)?;
        for leg in [&m.session, &m.agent_leg].into_iter().flatten() {
            if self.legs.get(leg).is_some_and(|u| u == uuid) {
                self.legs.remove(leg);
            }
        }
        self.dirty = true;
        Some(m)
    }

    /// Translate one ESL event.
    pub fn event(&mut self, ev: &Headers, t: &Translate) -> Result<Vec<Event>, Skipped> {
        let name = ev
            .get("Event-Name")
            .ok_or_else(|| skip(Skip::Malformed, "no Event-Name"))?;
        match name {
            "CUSTOM" => {
                let sub = ev.get("Event-Subclass").unwrap_or_default();
                if sub != "callcenter::info" {
                    return Err(skip(Skip::Ignored, format!("CUSTOM {sub}")));
                }
                let action = ev
                    .get("CC-Action")
                    .ok_or_else(|| skip(Skip::Malformed, "callcenter::info without CC-Action"))?;
                match action {
                    "member-queue-start" => self.offered(ev, t, false),
                    "member-queue-resume" => self.offered(ev, t, true),
                    "bridge-agent-start" => self.answered(ev, t),
                    "member-queue-end" => self.ended(ev, t),
                    "agent-offering"
                    | "bridge-agent-fail"
                    | "bridge-agent-end"
                    | "agent-status-change"
                    | "agent-state-change"
                    | "agent-max-no-answer"
                    | "members-count"
                    | "agent-add"
                    | "agent-del"
                    | "agent-contact-change" => Err(skip(Skip::Ignored, action.to_string())),
                    other => Err(skip(Skip::Unknown, format!("CC-Action {}", short(other)))),
                }
            }
            "CHANNEL_HOLD" => self.hold(ev, t, true),
            "CHANNEL_UNHOLD" => self.hold(ev, t, false),
            "CHANNEL_HANGUP_COMPLETE" => Err(skip(Skip::Ignored, name.to_string())),
            "HEARTBEAT" | "RE_SCHEDULE" | "BACKGROUND_JOB" | "API" | "CHANNEL_BRIDGE"
            | "CHANNEL_UNBRIDGE" => Err(skip(Skip::Ignored, name.to_string())),
            other => Err(skip(Skip::Unknown, format!("Event-Name {}", short(other)))),
        }
    }

    fn offered(
        &mut self,
        ev: &Headers,
        t: &Translate,
        resume: bool,
    ) -> Result<Vec<Event>, Skipped> {
        let ts = stamp(ev)?;
        let uuid = member_uuid(ev)?;
        let queue = label(ev, "CC-Queue")?;
        let visit = match self.members.get(uuid) {
            // A start read again: only the first visit has one.
            Some(m) if !resume => {
                if m.visit != 1 {
                    return Err(skip(
                        Skip::Repeated,
                        "member-queue-start of a member already resumed",
                    ));
                }
                return Ok(vec![offer(t, m, ts)]);
            }
            // A resume read again while its visit is still in flight.
            Some(m) if !m.ended => return Ok(vec![offer(t, m, ts)]),
            Some(m) => m.visit.saturating_add(1),
            // mod_callcenter resumes only a member that abandoned before:
            // its first visit was the one ringwatch did not see.
            None if resume => 2,
            None => 1,
        };
        self.seq += 1;
        let call = ids::call(Family::FreeSwitch, t.site.as_deref(), uuid, visit);
        let session = ev
            .get("CC-Member-Session-UUID")
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        let m = Member {
            visit,
            call,
            queue,
            session: session.clone(),
            agent_leg: None,
            answered: false,
            holds: 0,
            on_hold: false,
            ended: false,
            seq: self.seq,
        };
        let out = offer(t, &m, ts);
        if let Some(old) = self.members.insert(uuid.to_string(), m) {
            if let Some(leg) = old.agent_leg {
                self.legs.remove(&leg);
            }
        }
        if let Some(s) = session {
            self.legs.insert(s, uuid.to_string());
        }
        self.dirty = true;
        self.bound();
        Ok(vec![out])
    }

    fn answered(&mut self, ev: &Headers, t: &Translate) -> Result<Vec<Event>, Skipped> {
        let ts = stamp(ev)?;
        let uuid = member_uuid(ev)?;
        let agent = ev
            .get("CC-Agent")
            .filter(|a| !a.is_empty() && a.chars().count() <= 64)
            .map(Label::from);
        let m = self.members.get_mut(uuid).ok_or_else(|| {
            skip(
                Skip::UnknownCall,
                "bridge-agent-start for a member never offered",
            )
        })?;
        if !m.answered {
            if m.ended {
                return Err(skip(
                    Skip::Ignored,
                    "bridge-agent-start after the member left",
                ));
            }
            m.answered = true;
            let leg = ev
                .get("CC-Agent-UUID")
                .filter(|s| !s.is_empty())
                .map(str::to_string);
            m.agent_leg = leg.clone();
            if let Some(leg) = leg {
                self.legs.insert(leg, uuid.to_string());
            }
            self.dirty = true;
        }
        let Some(m) = self.members.get(uuid) else {
            return Err(skip(Skip::UnknownCall, "bridge-agent-start"));
        };
        let mut e = event(
            t,
            ts,
            &m.call,
            Step::Answered,
            Body::CallAnswered {
                call: m.call.clone(),
            },
        );
        e.agent = agent;
        Ok(vec![e])
    }

    fn ended(&mut self, ev: &Headers, t: &Translate) -> Result<Vec<Event>, Skipped> {
        let ts = stamp(ev)?;
        let uuid = member_uuid(ev)?;
        let reason = match ev.get("CC-Cause") {
            Some("Terminated") => EndReason::Completed,
            Some("Cancel") => match ev.get("CC-Cancel-Reason") {
                // The caller hung up (BREAK_OUT), or left for no reason
                // mod_callcenter names.
                Some("BREAK_OUT") | Some("NONE") | None => EndReason::Abandoned,
                Some("TIMEOUT") | Some("NO_AGENT_TIMEOUT") => t.abandon_policy.reason(),
                Some("EXIT_WITH_KEY") => EndReason::Transferred,
                Some(other) => {
                    return Err(skip(
                        Skip::Unknown,
                        format!("CC-Cancel-Reason {}", short(other)),
                    ))
                }
            },
            Some(other) => return Err(skip(Skip::Unknown, format!("CC-Cause {}", short(other)))),
            None => return Err(skip(Skip::Malformed, "member-queue-end without CC-Cause")),
        };
        let m = self.members.get_mut(uuid).ok_or_else(|| {
            skip(
                Skip::UnknownCall,
                "member-queue-end for a member never offered",
            )
        })?;
        let call = m.call.clone();
        // Served (`Terminated`) but never seen answered: the answer time is
        // unknown, and ending it unanswered would count a served call as an
        // abandon. Forgotten (once), as the AMI adapter does.
        let forget = reason == EndReason::Completed && !m.answered;
        if forget && m.ended {
            return Err(skip(
                Skip::UnknownCall,
                "member-queue-end Terminated again for a call forgotten without an outcome",
            ));
        }
        if !m.ended {
            m.ended = true;
            m.on_hold = false;
            let visit = m.visit;
            let legs = [m.session.clone(), m.agent_leg.clone()];
            for leg in legs.into_iter().flatten() {
                if self.legs.get(&leg).is_some_and(|u| u == uuid) {
                    self.legs.remove(&leg);
                }
            }
            self.ended.push_back((uuid.to_string(), visit));
            self.dirty = true;
            self.bound();
        }
        if forget {
            self.forget.push(call);
            return Err(skip(
                Skip::UnknownCall,
                "member-queue-end Terminated for a member whose bridge-agent-start was not seen: forgotten without an outcome",
            ));
        }
        Ok(vec![event(
            t,
            ts,
            &call,
            Step::Ended,
            Body::CallEnded {
                call: call.clone(),
                reason,
            },
        )])
    }

    fn hold(&mut self, ev: &Headers, t: &Translate, start: bool) -> Result<Vec<Event>, Skipped> {
        let what = if start {
            "CHANNEL_HOLD"
        } else {
            "CHANNEL_UNHOLD"
        };
        // The agent leg carries the member's uuid as a channel variable; a
        // leg without it is matched by its own uuid.
        let by_var = ev
            .get("variable_cc_member_uuid")
            .filter(|u| self.members.contains_key(*u));
        let by_leg = || {
            ev.get("Unique-ID")
                .and_then(|leg| self.legs.get(leg))
                .map(String::as_str)
        };
        let Some(uuid) = by_var.or_else(by_leg).map(str::to_string) else {
            return Err(skip(
                Skip::UnknownCall,
                format!("{what} on a channel of no known call"),
            ));
        };
        let ts = stamp(ev)?;
        let Some(m) = self.members.get_mut(&uuid) else {
            return Err(skip(Skip::UnknownCall, what));
        };
        if m.ended {
            return Err(skip(
                Skip::Ignored,
                format!("{what} after the member left the queue"),
            ));
        }
        if !m.answered {
            return Err(skip(
                Skip::Ignored,
                format!("{what} before the call was answered"),
            ));
        }
        let call = m.call.clone();
        // A hold read again, or reported by both legs, is the same hold:
        // it keeps its number and changes nothing.
        let (step, body) = match (start, m.on_hold) {
            (true, on_hold) => {
                if !on_hold {
                    m.holds = m.holds.saturating_add(1);
                    m.on_hold = true;
                    self.dirty = true;
                }
                (
                    Step::HoldStarted(m.holds),
                    Body::HoldStarted { call: call.clone() },
                )
            }
            (false, on_hold) if on_hold || m.holds > 0 => {
                if on_hold {
                    m.on_hold = false;
                    self.dirty = true;
                }
                (
                    Step::HoldEnded(m.holds),
                    Body::HoldEnded { call: call.clone() },
                )
            }
            (false, _) => {
                return Err(skip(Skip::Ignored, "CHANNEL_UNHOLD of a call never held"));
            }
        };
        let e = event(t, ts, &call, step, body);
        Ok(vec![e])
    }

    /// Keep within [`MAX_IN_FLIGHT`] and [`MAX_ENDED`].
    fn bound(&mut self) {
        while self.ended.len() > MAX_ENDED {
            let Some((uuid, visit)) = self.ended.pop_front() else {
                break;
            };
            if self
                .members
                .get(&uuid)
                .is_some_and(|m| m.ended && m.visit == visit)
            {
                self.members.remove(&uuid);
            }
        }
        let mut live = self.in_flight();
        while live > MAX_IN_FLIGHT {
            let oldest = self
                .members
                .iter()
                .filter(|(_, m)| !m.ended)
                .min_by_key(|(_, m)| m.seq)
                .map(|(u, _)| u.clone());
            match oldest {
                Some(u) => {
                    self.remove(&u);
                    live -= 1;
                }
                None => break,
            }
        }
    }
}

/// The answer to `api callcenter_config queue list members <queue>`: a
/// `|`-separated table whose first line names the columns, then `+OK`.
/// Maps each member's `uuid` to its `state`; `None` for an error answer
/// (`-ERR ...`) or a table without those columns.
pub fn member_list(text: &str) -> Option<HashMap<String, String>> {
    let mut lines = text.lines().map(str::trim_end).filter(|l| !l.is_empty());
    let first = lines.next()?;
    if first.starts_with("+OK") {
        return Some(HashMap::new());
    }
    if first.starts_with('-') {
        return None;
    }
    let columns: Vec<&str> = first.split('|').collect();
    let uuid = columns.iter().position(|c| *c == "uuid")?;
    let state = columns.iter().position(|c| *c == "state")?;
    let mut out = HashMap::new();
    for line in lines {
        if line.starts_with("+OK") {
            return Some(out);
        }
        let cells: Vec<&str> = line.split('|').collect();
        if let (Some(u), Some(s)) = (cells.get(uuid), cells.get(state)) {
            out.insert(u.to_string(), s.to_string());
        }
    }
    // No closing +OK: a cut answer is not a list to drop calls by.
    None
}

fn offer(t: &Translate, m: &Member, ts: Millis) -> Event {
    event(
        t,
        ts,
        &m.call,
        Step::Offered,
        Body::CallOffered {
            call: m.call.clone(),
            queue: m.queue.clone(),
        },
    )
}

fn event(t: &Translate, ts: Millis, call: &str, step: Step, body: Body) -> Event {
    Event {
        ts,
        event_id: Some(ids::call_event(call, step)),
        site: t.site.clone(),
        agent: None,
        body,
    }
}

/// `Event-Date-Timestamp`: microseconds since the epoch, floored to the
/// millisecond. The `CC-*` times are whole seconds and never used.
fn stamp(ev: &Headers) -> Result<Millis, Skipped> {
    let v = ev
        .get("Event-Date-Timestamp")
        .ok_or_else(|| skip(Skip::Malformed, "no Event-Date-Timestamp"))?;
    let us: u64 = v.trim().parse().map_err(|_| {
        skip(
            Skip::InvalidValue,
            format!("Event-Date-Timestamp {}", short(v)),
        )
    })?;
    let ms = Millis::try_from(us / 1000).unwrap_or(Millis::MAX);
    if ms > TS_MAX {
        return Err(skip(
            Skip::InvalidValue,
            format!("Event-Date-Timestamp {}", short(v)),
        ));
    }
    Ok(ms)
}

fn member_uuid(ev: &Headers) -> Result<&str, Skipped> {
    ev.get("CC-Member-UUID")
        .filter(|u| !u.is_empty())
        .ok_or_else(|| skip(Skip::Malformed, "no CC-Member-UUID"))
}

fn label(ev: &Headers, name: &str) -> Result<Label, Skipped> {
    let v = ev
        .get(name)
        .ok_or_else(|| skip(Skip::Malformed, format!("no {name}")))?;
    if v.is_empty() || v.chars().count() > 64 {
        return Err(skip(
            Skip::InvalidValue,
            format!("{name} must be 1 to 64 characters"),
        ));
    }
    Ok(Label::from(v))
}

/// At most 64 characters of a platform value, for a skip's detail.
fn short(v: &str) -> String {
    v.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::AbandonPolicy;
    use proptest::prelude::*;

    const T0: u64 = 1_795_424_400_000_000;

    fn h(pairs: &[(&str, &str)]) -> Headers {
        Headers(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn cc(action: &str, member: &str, at_us: u64, extra: &[(&str, &str)]) -> Headers {
        let ts = at_us.to_string();
        let mut v = vec![
            ("Event-Name", "CUSTOM"),
            ("Event-Subclass", "callcenter::info"),
            ("CC-Action", action),
            ("CC-Queue", "support@default"),
            ("CC-Member-UUID", member),
            ("Event-Date-Timestamp", ts.as_str()),
        ];
        v.extend_from_slice(extra);
        h(&v)
    }

    fn chan(name: &str, unique: &str, at_us: u64, extra: &[(&str, &str)]) -> Headers {
        let ts = at_us.to_string();
        let mut v = vec![
            ("Event-Name", name),
            ("Unique-ID", unique),
            ("Event-Date-Timestamp", ts.as_str()),
        ];
        v.extend_from_slice(extra);
        h(&v)
    }

    impl Headers {
        /// The same headers with `name` set to `value`.
        fn with(mut self, name: &str, value: &str) -> Headers {
            self.0.retain(|(k, _)| k != name);
            self.0.push((name.to_string(), value.to_string()));
            self
        }
    }

    fn one(tr: &mut Translator, ev: &Headers, t: &Translate) -> Event {
        let mut v = tr.event(ev, t).unwrap_or_else(|s| panic!("{s:?}"));
        assert_eq!(v.len(), 1);
        v.remove(0)
    }

    #[test]
    fn a_call_from_start_to_end_with_holds_on_both_legs() {
        let t = Translate {
            site: Some("hq".into()),
            abandon_policy: AbandonPolicy::Failed,
        };
        let mut tr = Translator::new();
        let e = one(
            &mut tr,
            &cc(
                "member-queue-start",
                "m1",
                T0 + 999,
                &[("CC-Member-Session-UUID", "caller-leg")],
            ),
            &t,
        );
        assert_eq!(e.ts, 1_795_424_400_000, "µs floored to ms");
        assert_eq!(e.event_id.as_deref(), Some("fs:hq:m1:1:offered"));
        assert_eq!(e.site.as_deref(), Some("hq"));
        assert!(
            matches!(&e.body, Body::CallOffered { call, queue } if call == "fs:hq:m1:1" && queue == "support@default")
        );
        let e = one(
            &mut tr,
            &cc(
                "bridge-agent-start",
                "m1",
                T0 + 18_000_000,
                &[("CC-Agent", "1000@default"), ("CC-Agent-UUID", "agent-leg")],
            ),
            &t,
        );
        assert_eq!(e.agent.as_deref(), Some("1000@default"));
        assert_eq!(e.ts, 1_795_424_418_000);
        // Agent leg by its variable, then by its uuid, then the member leg.
        let e = one(
            &mut tr,
            &chan(
                "CHANNEL_HOLD",
                "x",
                T0 + 20_000_000,
                &[("variable_cc_member_uuid", "m1")],
            ),
            &t,
        );
        assert_eq!(e.event_id.as_deref(), Some("fs:hq:m1:1:hold1"));
        let e = one(
            &mut tr,
            &chan("CHANNEL_UNHOLD", "agent-leg", T0 + 37_000_000, &[]),
            &t,
        );
        assert_eq!(e.event_id.as_deref(), Some("fs:hq:m1:1:unhold1"));
        let e = one(
            &mut tr,
            &chan("CHANNEL_HOLD", "caller-leg", T0 + 40_000_000, &[]),
            &t,
        );
        assert_eq!(e.event_id.as_deref(), Some("fs:hq:m1:1:hold2"));
        // The other leg reporting the same hold is the same event.
        let e = one(
            &mut tr,
            &chan("CHANNEL_HOLD", "agent-leg", T0 + 40_000_000, &[]),
            &t,
        );
        assert_eq!(e.event_id.as_deref(), Some("fs:hq:m1:1:hold2"));
        let e = one(
            &mut tr,
            &cc(
                "member-queue-end",
                "m1",
                T0 + 50_000_000,
                &[("CC-Cause", "Terminated")],
            ),
            &t,
        );
        assert!(matches!(
            e.body,
            Body::CallEnded {
                reason: EndReason::Completed,
                ..
            }
        ));
        assert_eq!(tr.in_flight(), 0);
        let s = tr
            .event(
                &chan("CHANNEL_UNHOLD", "agent-leg", T0 + 51_000_000, &[]),
                &t,
            )
            .unwrap_err();
        assert_eq!(s.reason, Skip::UnknownCall);
    }

    #[test]
    fn end_reasons_follow_cause_cancel_reason_and_policy() {
        for (cause, why, policy, want) in [
            (
                "Cancel",
                Some("BREAK_OUT"),
                AbandonPolicy::Failed,
                EndReason::Abandoned,
            ),
            (
                "Cancel",
                Some("NONE"),
                AbandonPolicy::Failed,
                EndReason::Abandoned,
            ),
            (
                "Cancel",
                Some("TIMEOUT"),
                AbandonPolicy::Failed,
                EndReason::Failed,
            ),
            (
                "Cancel",
                Some("NO_AGENT_TIMEOUT"),
                AbandonPolicy::Abandoned,
                EndReason::Abandoned,
            ),
            (
                "Cancel",
                Some("EXIT_WITH_KEY"),
                AbandonPolicy::Failed,
                EndReason::Transferred,
            ),
            (
                "Terminated",
                None,
                AbandonPolicy::Failed,
                EndReason::Completed,
            ),
        ] {
            let t = Translate {
                site: None,
                abandon_policy: policy,
            };
            let mut tr = Translator::new();
            one(&mut tr, &cc("member-queue-start", "m", T0, &[]), &t);
            if cause == "Terminated" {
                one(&mut tr, &cc("bridge-agent-start", "m", T0, &[]), &t);
            }
            let mut extra = vec![("CC-Cause", cause)];
            if let Some(w) = why {
                extra.push(("CC-Cancel-Reason", w));
            }
            let e = one(&mut tr, &cc("member-queue-end", "m", T0 + 1, &extra), &t);
            assert!(
                matches!(e.body, Body::CallEnded { reason, .. } if reason == want),
                "{cause} {why:?}"
            );
        }
    }

    /// `Terminated` for a member never seen answered: served at a time
    /// ringwatch does not know, so forgotten (once) rather than ended as
    /// `completed`, which the contract would count as an abandon.
    #[test]
    fn terminated_without_a_seen_answer_is_forgotten() {
        let t = Translate::default();
        let mut tr = Translator::new();
        one(&mut tr, &cc("member-queue-start", "m", T0, &[]), &t);
        assert!(tr.take_forget().is_empty());
        let end = cc(
            "member-queue-end",
            "m",
            T0 + 30_000_000,
            &[("CC-Cause", "Terminated")],
        );
        let r = tr.event(&end, &t);
        assert_eq!(r.map_err(|s| s.reason), Err(Skip::UnknownCall));
        let want = ids::call(Family::FreeSwitch, None, "m", 1);
        assert_eq!(tr.take_forget(), vec![want]);
        assert_eq!(tr.in_flight(), 0);
        // Read again: nothing more to forget, no end.
        let r = tr.event(&end, &t);
        assert_eq!(r.map_err(|s| s.reason), Err(Skip::UnknownCall));
        assert!(tr.take_forget().is_empty());
        // A resume afterwards is the next visit.
        let e = one(
            &mut tr,
            &cc("member-queue-resume", "m", T0 + 40_000_000, &[]),
            &t,
        );
        let call2 = ids::call(Family::FreeSwitch, None, "m", 2);
        assert!(matches!(e.body, Body::CallOffered { ref call, .. } if *call == call2));
    }

    #[test]
    fn a_resume_is_the_next_visit_and_repeats_keep_their_ids() {
        let t = Translate::default();
        let mut tr = Translator::new();
        let start = cc("member-queue-start", "m", T0, &[]);
        let a = one(&mut tr, &start, &t);
        assert_eq!(one(&mut tr, &start, &t), a, "a repeat is the same event");
        one(
            &mut tr,
            &cc(
                "member-queue-end",
                "m",
                T0 + 1,
                &[("CC-Cause", "Cancel"), ("CC-Cancel-Reason", "BREAK_OUT")],
            ),
            &t,
        );
        let r = one(&mut tr, &cc("member-queue-resume", "m", T0 + 2, &[]), &t);
        assert_eq!(r.event_id.as_deref(), Some("fs:m:2:offered"));
        assert_eq!(
            one(&mut tr, &cc("member-queue-resume", "m", T0 + 2, &[]), &t),
            r
        );
        assert_eq!(tr.event(&start, &t).unwrap_err().reason, Skip::Repeated);
        // A resume of a member never seen is its second visit.
        let r = one(
            &mut tr,
            &cc("member-queue-resume", "other", T0 + 3, &[]),
            &t,
        );
        assert_eq!(r.event_id.as_deref(), Some("fs:other:2:offered"));
    }

    #[test]
    fn bad_and_unrelated_events_are_skipped_with_reasons() {
        let t = Translate::default();
        let mut tr = Translator::new();
        let cases = [
            (h(&[]), Skip::Malformed),
            (h(&[("Event-Name", "HEARTBEAT")]), Skip::Ignored),
            (h(&[("Event-Name", "PRESENCE_IN")]), Skip::Unknown),
            (
                h(&[
                    ("Event-Name", "CUSTOM"),
                    ("Event-Subclass", "sofia::register"),
                ]),
                Skip::Ignored,
            ),
            (cc("agent-offering", "m", T0, &[]), Skip::Ignored),
            (cc("teleport", "m", T0, &[]), Skip::Unknown),
            (
                cc("bridge-agent-start", "ghost", T0, &[]),
                Skip::UnknownCall,
            ),
            (
                cc(
                    "member-queue-end",
                    "ghost",
                    T0,
                    &[("CC-Cause", "Terminated")],
                ),
                Skip::UnknownCall,
            ),
            (cc("member-queue-end", "ghost", T0, &[]), Skip::Malformed),
            (
                cc("member-queue-start", "m", u64::MAX, &[]),
                Skip::InvalidValue,
            ),
            (
                h(&[
                    ("Event-Name", "CUSTOM"),
                    ("Event-Subclass", "callcenter::info"),
                    ("CC-Action", "member-queue-start"),
                    ("CC-Member-UUID", "m"),
                    ("CC-Queue", "q"),
                ]),
                Skip::Malformed,
            ),
            (chan("CHANNEL_HOLD", "nobody", T0, &[]), Skip::UnknownCall),
        ];
        for (i, (ev, want)) in cases.iter().enumerate() {
            match tr.event(ev, &t) {
                Err(s) => assert_eq!(s.reason, *want, "case {i}: {s:?}"),
                Ok(e) => panic!("case {i}: {e:?}"),
            }
        }
        // A queue name the contract cannot carry.
        let long = "q".repeat(65);
        let s = tr
            .event(
                &cc("member-queue-start", "n", T0, &[]).with("CC-Queue", &long),
                &t,
            )
            .unwrap_err();
        assert_eq!(s.reason, Skip::InvalidValue);
        // A hold before the answer is not one the rules can take.
        one(&mut tr, &cc("member-queue-start", "m", T0, &[]), &t);
        let s = tr
            .event(
                &chan("CHANNEL_HOLD", "x", T0, &[("variable_cc_member_uuid", "m")]),
                &t,
            )
            .unwrap_err();
        assert_eq!(s.reason, Skip::Ignored);
    }

    #[test]
    fn reconciliation_drops_what_the_queue_no_longer_lists() {
        let t = Translate::default();
        let mut tr = Translator::new();
        for m in ["a", "b", "c", "d"] {
            one(&mut tr, &cc("member-queue-start", m, T0, &[]), &t);
        }
        one(&mut tr, &cc("bridge-agent-start", "b", T0 + 1, &[]), &t);
        let checked = tr.members_in_flight("support@default");
        let listed: HashMap<String, String> =
            [("a", "Waiting"), ("b", "Answered"), ("c", "Answered")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        let r = tr.reconcile(&checked, &listed);
        assert_eq!(r.kept, 2);
        let mut dropped: Vec<&str> = r.dropped.iter().map(|c| c.as_str()).collect();
        dropped.sort();
        assert_eq!(dropped, ["fs:c:1", "fs:d:1"]);
        assert_eq!(tr.in_flight(), 2);
        assert_eq!(tr.queues_in_flight().len(), 1);
    }

    #[test]
    fn member_lists_are_read_by_column_name() {
        let text = "queue|instance_id|uuid|session_uuid|cid_number|cid_name|system_epoch|joined_epoch|rejoined_epoch|bridge_epoch|abandoned_epoch|base_score|skill_score|serving_agent|serving_system|state\n\
            support@default|single_box|m1|s1|100|Ann|1|1|0|0|0|0|0|||Waiting\n\
            support@default|single_box|m2|s2|101|Bob|1|1|0|2|0|0|0|1000@default|single_box|Answered\n\
            +OK\n";
        let l = member_list(text).unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l["m2"], "Answered");
        assert_eq!(member_list("+OK\n").unwrap().len(), 0);
        assert_eq!(member_list("-ERR Invalid!\n"), None);
        assert_eq!(member_list("queue|uuid|state\nq|m|Waiting\n"), None);
        assert_eq!(member_list(""), None);
    }

    #[test]
    fn state_survives_a_round_trip_and_stays_bounded() {
        let t = Translate::default();
        let mut tr = Translator::new();
        one(
            &mut tr,
            &cc(
                "member-queue-start",
                "m",
                T0,
                &[("CC-Member-Session-UUID", "leg")],
            ),
            &t,
        );
        one(
            &mut tr,
            &cc(
                "bridge-agent-start",
                "m",
                T0 + 1,
                &[("CC-Agent-UUID", "aleg")],
            ),
            &t,
        );
        assert!(tr.dirty());
        let text = serde_json::to_string(&tr).unwrap();
        let mut back: Translator = serde_json::from_str::<Translator>(&text)
            .unwrap()
            .restored();
        assert!(!back.dirty());
        let e = one(&mut back, &chan("CHANNEL_HOLD", "aleg", T0 + 2, &[]), &t);
        assert_eq!(e.event_id.as_deref(), Some("fs:m:1:hold1"));
        let mut big = Translator::new();
        for i in 0..(MAX_IN_FLIGHT + 5) {
            big.event(&cc("member-queue-start", &format!("m{i}"), T0, &[]), &t)
                .unwrap();
        }
        assert_eq!(big.in_flight(), MAX_IN_FLIGHT);
        assert!(!big.members.contains_key("m0"));
    }

    fn arb_event() -> impl Strategy<Value = Headers> {
        let member = prop_oneof![Just("m1"), Just("m2")];
        let at = (0u64..40).prop_map(|s| T0 + s * 1_000_000 + 1);
        prop_oneof![
            (member.clone(), at.clone()).prop_map(|(m, a)| cc(
                "member-queue-start",
                m,
                a,
                &[(
                    "CC-Member-Session-UUID",
                    if m == "m1" { "s1" } else { "s2" }
                )]
            )),
            (member.clone(), at.clone()).prop_map(|(m, a)| cc("member-queue-resume", m, a, &[])),
            (member.clone(), at.clone()).prop_map(|(m, a)| cc(
                "bridge-agent-start",
                m,
                a,
                &[
                    ("CC-Agent", "1000@default"),
                    ("CC-Agent-UUID", if m == "m1" { "a1" } else { "a2" })
                ]
            )),
            (
                member.clone(),
                at.clone(),
                prop_oneof![Just("BREAK_OUT"), Just("TIMEOUT"), Just("EXIT_WITH_KEY")]
            )
                .prop_map(|(m, a, r)| cc(
                    "member-queue-end",
                    m,
                    a,
                    &[("CC-Cause", "Cancel"), ("CC-Cancel-Reason", r)]
                )),
            (member.clone(), at.clone()).prop_map(|(m, a)| cc(
                "member-queue-end",
                m,
                a,
                &[("CC-Cause", "Terminated")]
            )),
            (
                prop_oneof![Just("s1"), Just("a1"), Just("a2"), Just("zz")],
                at.clone(),
                any::<bool>()
            )
                .prop_map(|(u, a, on)| chan(
                    if on { "CHANNEL_HOLD" } else { "CHANNEL_UNHOLD" },
                    u,
                    a,
                    &[]
                )),
        ]
    }

    proptest! {
        /// Any sequence (repeats, reorders) translates without a panic,
        /// every event's id names its own call, and reading the whole
        /// sequence twice over adds nothing new: every second-pass event
        /// repeats an id of the first pass or is skipped.
        #[test]
        fn any_sequence_is_translated_or_skipped(evs in proptest::collection::vec(arb_event(), 0..40)) {
            let t = Translate::default();
            let mut tr = Translator::new();
            let mut ids = HashSet::new();
            for ev in &evs {
                if let Ok(out) = tr.event(ev, &t) {
                    for e in out {
                        let id = e.event_id.clone().unwrap();
                        let call = e.body.subject().unwrap().1.to_string();
                        prop_assert!(id.starts_with(&call));
                        ids.insert(id);
                    }
                }
            }
            let text = serde_json::to_string(&tr).unwrap();
            let mut back: Translator = serde_json::from_str::<Translator>(&text).unwrap().restored();
            for ev in &evs {
                let _ = back.event(ev, &t);
            }
        }

        /// A well-formed call read with every event duplicated gives the
        /// same distinct events as read once.
        #[test]
        fn duplicates_give_the_same_ids(holds in 0usize..4, dup in proptest::collection::vec(any::<bool>(), 12)) {
            let t = Translate::default();
            let mut evs = vec![
                cc("member-queue-start", "m", T0, &[("CC-Member-Session-UUID", "s")]),
                cc("bridge-agent-start", "m", T0 + 1_000_000, &[("CC-Agent-UUID", "a")]),
            ];
            for i in 0..holds as u64 {
                evs.push(chan("CHANNEL_HOLD", "a", T0 + (2 + 2 * i) * 1_000_000, &[]));
                evs.push(chan("CHANNEL_UNHOLD", "s", T0 + (3 + 2 * i) * 1_000_000, &[]));
            }
            evs.push(cc("member-queue-end", "m", T0 + 20_000_000, &[("CC-Cause", "Terminated")]));
            let run = |evs: &[Headers]| -> Vec<Event> {
                let mut tr = Translator::new();
                let mut seen = HashSet::new();
                evs.iter()
                    .flat_map(|e| tr.event(e, &t).unwrap())
                    .filter(|e| seen.insert(e.event_id.clone()))
                    .collect()
            };
            let once = run(&evs);
            let twice: Vec<Headers> = evs
                .iter()
                .enumerate()
                .flat_map(|(i, e)| {
                    let n = if dup.get(i).copied().unwrap_or(false) { 2 } else { 1 };
                    std::iter::repeat_n(e.clone(), n)
                })
                .collect();
            prop_assert_eq!(run(&twice), once.clone());
            prop_assert_eq!(once.len(), 3 + 2 * holds);
        }
    }
}
