//! queue_log lines into ringwatch events: the verb mapping, the per-callid
//! visit counter (a re-entry into a queue is a new call, numbered as the AMI
//! adapter numbers `QueueCallerJoin`s, so both build the same ids), and
//! the state of each call in flight. Pure: the [`State`] is plain data,
//! saved with the read position so a restart continues exactly where the
//! saved position is, and bounded ([`MAX_CALLS`], retention in log time).

use std::collections::BTreeMap;

use std::hash::Hasher;

use serde::{Deserialize, Serialize};
use siphasher::sip::SipHasher13;

use super::line::{Line, MAX_EPOCH};
use crate::event::{Body, EndReason, Event, Id, Label, Millis, PromiseTarget};
use crate::sources::ids::{self, Family, PromiseStep, Step};
use crate::sources::metrics::Skip;
use crate::sources::Translate;

/// The callids remembered at most (a busy center has a few thousand within
/// the retention below; the state is saved after every batch, so it stays
/// small).
pub const MAX_CALLS: usize = 50_000;
/// An ended visit is remembered this long (log time) after its last line,
/// to number a re-entry of the same callid; re-entries come within minutes.
pub const ENDED_RETENTION: Millis = 4 * 3_600_000;
/// A visit with no end line is forgotten after this long without a line:
/// some Asterisk versions write an `ENTERQUEUE` and no exit at all, and
/// ringwatch's own `call_ttl` has evicted such a call long before.
pub const OPEN_RETENTION: Millis = 24 * 3_600_000;
/// How often (log time) the retention is applied.
const PRUNE_EVERY: Millis = 600_000;

/// Why a line made no event: the `reason` counted, and what to log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    pub reason: Skip,
    pub detail: String,
}

fn skip(reason: Skip, detail: impl Into<String>) -> Rejected {
    Rejected {
        reason,
        detail: detail.into(),
    }
}

/// Where a queue visit stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    Waiting,
    Answered,
    OnHold,
    Ended,
}

/// The newest queue visit of one callid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Visit {
    /// Which visit (1 for the first `ENTERQUEUE` of the callid).
    pub n: u32,
    pub queue: String,
    /// When it was offered (to tell a repeated `ENTERQUEUE` line).
    pub offered: Millis,
    pub phase: Phase,
    /// Holds started so far (the n of the hold event ids).
    pub holds: u32,
    /// Time of its last line, for retention.
    pub last: Millis,
    /// Hashes of the callid's last [`SEEN`] lines (of this visit and the
    /// ones before): a line seen again, anywhere later in the log, is a
    /// repeat, never a second hold or a second visit.
    pub seen: Vec<u64>,
}

/// Lines of one callid remembered to tell repeats.
pub const SEEN: usize = 32;

/// A line's identity (all its fields), stable across restarts.
fn line_hash(l: &Line<'_>) -> u64 {
    let mut h = SipHasher13::new_with_keys(0x7177_6c69_6e65_0001, 0x7177_6c69_6e65_0002);
    h.write_i64(l.ts);
    for f in [l.callid, l.queue, l.agent, l.verb, l.data] {
        h.write(f.as_bytes());
        h.write_u8(0xff);
    }
    h.finish()
}

/// Everything the translator remembers between lines.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub calls: BTreeMap<String, Visit>,
    /// A `CALLERONHOLD` / `CALLEROFFHOLD` was seen: this log carries holds.
    pub reports_holds: bool,
    /// The newest line time seen.
    pub newest: Millis,
    next_prune: Millis,
}

/// How a verb is handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verb {
    Call(CallVerb),
    Callback,
    Member,
    Ignored,
    Unknown,
}

/// A verb about one call's queue visit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CallVerb {
    Enter,
    Connect,
    End(End),
    OnHold,
    OffHold,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    Completed,
    Transferred,
    Abandoned,
    /// A timeout, an empty queue, a withdraw: by `abandon_policy`.
    NotCaller,
}

fn classify(verb: &str) -> Verb {
    let v = verb.to_ascii_uppercase();
    match v.as_str() {
        "ENTERQUEUE" => Verb::Call(CallVerb::Enter),
        "CONNECT" => Verb::Call(CallVerb::Connect),
        "COMPLETECALLER" | "COMPLETEAGENT" => Verb::Call(CallVerb::End(End::Completed)),
        "BLINDTRANSFER" | "ATTENDEDTRANSFER" | "TRANSFER" | "EXITWITHKEY" => {
            Verb::Call(CallVerb::End(End::Transferred))
        }
        "ABANDON" => Verb::Call(CallVerb::End(End::Abandoned)),
        "EXITWITHTIMEOUT" | "EXITEMPTY" | "WITHDRAW" => Verb::Call(CallVerb::End(End::NotCaller)),
        "CALLERONHOLD" => Verb::Call(CallVerb::OnHold),
        "CALLEROFFHOLD" => Verb::Call(CallVerb::OffHold),
        "RINGWATCHCALLBACK" => Verb::Callback,
        "ADDMEMBER"
        | "REMOVEMEMBER"
        | "PAUSE"
        | "UNPAUSE"
        | "PAUSEALL"
        | "UNPAUSEALL"
        | "PAUSEREASON"
        | "PENALTY"
        | "RINGINUSE"
        | "AGENTLOGIN"
        | "AGENTLOGOFF"
        | "AGENTCALLBACKLOGIN"
        | "AGENTCALLBACKLOGOFF" => Verb::Member,
        "QUEUESTART" | "CONFIGRELOAD" | "RINGNOANSWER" | "RINGCANCELED" | "AGENTDUMP"
        | "SYSCOMPAT" | "OUTCALL" | "DID" | "INFO" | "CALLSTATUS" => Verb::Ignored,
        _ => Verb::Unknown,
    }
}

/// The translator of one source: its configuration and its [`State`].
#[derive(Clone, Debug)]
pub struct Translator {
    t: Translate,
    state: State,
    /// Calls ringwatch should forget without an outcome, taken by the
    /// follower after it delivered the events before them.
    forget: Vec<Id>,
}

impl Translator {
    pub fn new(t: Translate, state: State) -> Self {
        Translator {
            t,
            state,
            forget: Vec::new(),
        }
    }

    /// The calls to forget since the last call, in order.
    pub fn take_forget(&mut self) -> Vec<Id> {
        std::mem::take(&mut self.forget)
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn reports_holds(&self) -> bool {
        self.state.reports_holds
    }

    /// One parsed line into at most one event.
    pub fn line(&mut self, l: &Line<'_>) -> Result<Event, Rejected> {
        if l.ts > self.state.newest {
            self.state.newest = l.ts;
        }
        if self.state.newest >= self.state.next_prune {
            self.prune();
            self.state.next_prune = self.state.newest.saturating_add(PRUNE_EVERY);
        }
        match classify(l.verb) {
            Verb::Call(verb) => self.call_line(l, verb),
            Verb::Callback => self.callback(l),
            Verb::Member => Err(skip(Skip::MemberEvent, l.verb)),
            Verb::Ignored => Err(skip(Skip::Ignored, l.verb)),
            Verb::Unknown => Err(skip(Skip::Unknown, format!("unknown verb {}", l.verb))),
        }
    }

    /// A line about a call: refused when the callid had this very line
    /// already; remembered once applied (a line refused now is refused
    /// again later, not taken as a repeat).
    fn call_line(&mut self, l: &Line<'_>, verb: CallVerb) -> Result<Event, Rejected> {
        if matches!(verb, CallVerb::OnHold | CallVerb::OffHold) {
            self.state.reports_holds = true;
        }
        let h = line_hash(l);
        if let Some(v) = self.state.calls.get(l.callid) {
            if v.seen.contains(&h) {
                return Err(skip(
                    Skip::Repeated,
                    format!("{} of {}: the same line again", l.verb, l.callid),
                ));
            }
        }
        let out = match verb {
            CallVerb::Enter => self.enter(l),
            CallVerb::Connect => self.connect(l),
            CallVerb::End(end) => self.end(l, end),
            CallVerb::OnHold => self.hold(l, true),
            CallVerb::OffHold => self.hold(l, false),
        };
        if out.is_ok() {
            if let Some(v) = self.state.calls.get_mut(l.callid) {
                if v.seen.len() >= SEEN {
                    v.seen.remove(0);
                }
                v.seen.push(h);
            }
        }
        out
    }

    fn event(&self, l: &Line<'_>, event_id: Id, body: Body) -> Event {
        Event {
            ts: l.ts,
            event_id: Some(event_id),
            site: self.t.site.clone(),
            agent: agent(l.agent),
            body,
        }
    }

    fn call_id(&self, callid: &str, n: u32) -> Id {
        ids::call(Family::Asterisk, self.t.site.as_deref(), callid, n)
    }

    fn enter(&mut self, l: &Line<'_>) -> Result<Event, Rejected> {
        let queue = queue(l.queue)?;
        let (n, seen) = match self.state.calls.get_mut(l.callid) {
            // The same line twice (a copied log, a cleanup script's
            // duplicate): a caller cannot join the queue it is waiting in.
            Some(v) if v.phase == Phase::Waiting && v.queue == l.queue && v.offered == l.ts => {
                return Err(skip(
                    Skip::Repeated,
                    format!("ENTERQUEUE of {} repeated", l.callid),
                ))
            }
            Some(v) => (v.n.saturating_add(1), std::mem::take(&mut v.seen)),
            None => (1, Vec::new()),
        };
        if !self.state.calls.contains_key(l.callid) && self.state.calls.len() >= MAX_CALLS {
            self.shed();
        }
        // A visit with no end line is replaced, not ended: ringwatch's
        // call_ttl evicts it, as it would a call whose exit was never logged.
        self.state.calls.insert(
            l.callid.to_string(),
            Visit {
                n,
                queue: l.queue.to_string(),
                offered: l.ts,
                phase: Phase::Waiting,
                holds: 0,
                last: l.ts,
                seen,
            },
        );
        let call = self.call_id(l.callid, n);
        let id = ids::call_event(&call, Step::Offered);
        let mut ev = self.event(l, id, Body::CallOffered { call, queue });
        // The agent of an ENTERQUEUE line is NONE; nobody answered yet.
        ev.agent = None;
        Ok(ev)
    }

    /// The callid's newest visit, or why the line is about no known call.
    fn visit(&mut self, l: &Line<'_>) -> Result<&mut Visit, Rejected> {
        match self.state.calls.get_mut(l.callid) {
            Some(v) => {
                v.last = v.last.max(l.ts);
                Ok(v)
            }
            None => Err(skip(
                Skip::UnknownCall,
                format!("{} for callid {} with no ENTERQUEUE", l.verb, l.callid),
            )),
        }
    }

    fn connect(&mut self, l: &Line<'_>) -> Result<Event, Rejected> {
        let v = self.visit(l)?;
        match v.phase {
            Phase::Waiting => v.phase = Phase::Answered,
            Phase::Answered | Phase::OnHold => {
                return Err(skip(
                    Skip::Repeated,
                    format!("CONNECT of {}: already answered", l.callid),
                ))
            }
            Phase::Ended => return Err(ended(l)),
        }
        let n = v.n;
        let call = self.call_id(l.callid, n);
        let id = ids::call_event(&call, Step::Answered);
        Ok(self.event(l, id, Body::CallAnswered { call }))
    }

    fn end(&mut self, l: &Line<'_>, end: End) -> Result<Event, Rejected> {
        let v = self.visit(l)?;
        if v.phase == Phase::Ended {
            return Err(skip(
                Skip::Repeated,
                format!("{} of {}: the call already ended", l.verb, l.callid),
            ));
        }
        let waiting = v.phase == Phase::Waiting;
        v.phase = Phase::Ended;
        let n = v.n;
        if waiting && end == End::Completed {
            // Completed without a CONNECT line: it was answered at a time
            // the log does not give, and ending it unanswered would count
            // a served call as an abandon. Forgotten, as the AMI adapter
            // forgets an AgentComplete without its AgentConnect.
            let call = self.call_id(l.callid, n);
            self.forget.push(call);
            return Err(skip(
                Skip::UnknownCall,
                format!(
                    "{} of {} whose CONNECT line is missing: forgotten without an outcome",
                    l.verb, l.callid
                ),
            ));
        }
        let reason = match end {
            End::Completed => EndReason::Completed,
            End::Transferred => EndReason::Transferred,
            End::Abandoned => EndReason::Abandoned,
            End::NotCaller => self.t.abandon_policy.reason(),
        };
        let call = self.call_id(l.callid, n);
        let id = ids::call_event(&call, Step::Ended);
        Ok(self.event(l, id, Body::CallEnded { call, reason }))
    }

    fn hold(&mut self, l: &Line<'_>, start: bool) -> Result<Event, Rejected> {
        let v = self.visit(l)?;
        let step = match (v.phase, start) {
            (Phase::Answered, true) => {
                v.phase = Phase::OnHold;
                v.holds = v.holds.saturating_add(1);
                Step::HoldStarted(v.holds)
            }
            (Phase::OnHold, false) => {
                v.phase = Phase::Answered;
                Step::HoldEnded(v.holds)
            }
            (Phase::OnHold, true) => {
                return Err(skip(
                    Skip::Repeated,
                    format!("{} of {}: already on hold", l.verb, l.callid),
                ))
            }
            (Phase::Answered, false) => {
                return Err(skip(
                    Skip::Repeated,
                    format!("{} of {}: not on hold", l.verb, l.callid),
                ))
            }
            (Phase::Waiting, _) => {
                return Err(skip(
                    Skip::Ignored,
                    format!("{} of {}: not answered yet", l.verb, l.callid),
                ))
            }
            (Phase::Ended, _) => return Err(ended(l)),
        };
        let n = v.n;
        let call = self.call_id(l.callid, n);
        let id = ids::call_event(&call, step);
        let body = if start {
            Body::HoldStarted { call }
        } else {
            Body::HoldEnded { call }
        };
        Ok(self.event(l, id, body))
    }

    /// `RINGWATCHCALLBACK|promised|<id>|<due>`, `completed|<id>`,
    /// `cancelled|<id>`; queue `NONE` promises on the callid's call.
    fn callback(&mut self, l: &Line<'_>) -> Result<Event, Rejected> {
        let action = l.field(0).unwrap_or("").trim();
        let id = l.field(1).unwrap_or("").trim();
        if id.is_empty() {
            return Err(skip(
                Skip::Malformed,
                "RINGWATCHCALLBACK needs action|promise id[|due]",
            ));
        }
        let promise = ids::promise(Family::Asterisk, self.t.site.as_deref(), id);
        let (step, body) = match action.to_ascii_lowercase().as_str() {
            "promised" => {
                let due = due_ms(l.field(2).unwrap_or(""))?;
                let open = self
                    .state
                    .calls
                    .get(l.callid)
                    .filter(|v| v.phase != Phase::Ended)
                    .map(|v| self.call_id(l.callid, v.n));
                let target = if l.queue.is_empty() || l.queue.eq_ignore_ascii_case("NONE") {
                    match open {
                        Some(call) => PromiseTarget::Call { call },
                        None => {
                            return Err(skip(
                                Skip::UnknownCall,
                                format!(
                                    "callback promise {id} on queue NONE: callid {} has no call in progress",
                                    l.callid
                                ),
                            ))
                        }
                    }
                } else {
                    PromiseTarget::Queue {
                        queue: queue(l.queue)?,
                        call: open,
                    }
                };
                (
                    PromiseStep::Promised,
                    Body::CallbackPromised {
                        promise: promise.clone(),
                        due,
                        target,
                    },
                )
            }
            "completed" => (
                PromiseStep::Completed,
                Body::CallbackCompleted {
                    promise: promise.clone(),
                },
            ),
            "cancelled" | "canceled" => (
                PromiseStep::Cancelled,
                Body::CallbackCancelled {
                    promise: promise.clone(),
                },
            ),
            other => {
                return Err(skip(
                    Skip::Malformed,
                    format!(
                        "RINGWATCHCALLBACK action {other:?} is not promised, completed or cancelled"
                    ),
                ))
            }
        };
        let event_id = ids::promise_event(&promise, step);
        Ok(self.event(l, event_id, body))
    }

    /// Forget what the retention allows.
    fn prune(&mut self) {
        let newest = self.state.newest;
        self.state.calls.retain(|_, v| {
            let keep = if v.phase == Phase::Ended {
                ENDED_RETENTION
            } else {
                OPEN_RETENTION
            };
            v.last >= newest.saturating_sub(keep)
        });
    }

    /// Full: apply the retention, then forget the least recently seen
    /// quarter (ended visits first), so this is rare.
    fn shed(&mut self) {
        self.prune();
        if self.state.calls.len() < MAX_CALLS {
            return;
        }
        let mut by_age: Vec<(bool, Millis, String)> = self
            .state
            .calls
            .iter()
            .map(|(k, v)| (v.phase != Phase::Ended, v.last, k.clone()))
            .collect();
        by_age.sort_unstable();
        for (_, _, k) in by_age.into_iter().take(MAX_CALLS / 4) {
            self.state.calls.remove(&k);
        }
    }
}

fn ended(l: &Line<'_>) -> Rejected {
    skip(
        Skip::UnknownCall,
        format!(
            "{} of {}: its queue visit already ended (no new ENTERQUEUE)",
            l.verb, l.callid
        ),
    )
}

/// `NONE` (or nothing) is no agent; a name over the contract's 64
/// characters is dropped rather than cost the event (agents are not used
/// by the rules).
fn agent(s: &str) -> Option<Label> {
    let n = s.chars().count();
    if s.eq_ignore_ascii_case("NONE") || n == 0 || n > 64 {
        None
    } else {
        Some(Label::from(s))
    }
}

fn queue(s: &str) -> Result<Label, Rejected> {
    let n = s.chars().count();
    if n == 0 {
        return Err(skip(Skip::Malformed, "the queue field is empty"));
    }
    if n > 64 {
        return Err(skip(
            Skip::InvalidValue,
            format!("queue name of {n} characters (at most 64)"),
        ));
    }
    Ok(Label::from(s))
}

/// A callback's due time: Unix seconds (a fraction allowed) or RFC 3339
/// with an offset.
fn due_ms(s: &str) -> Result<Millis, Rejected> {
    let s = s.trim();
    if s.is_empty() {
        return Err(skip(
            Skip::Malformed,
            "RINGWATCHCALLBACK promised needs a due time",
        ));
    }
    if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return super::line::epoch_ms(s)
            .map_err(|e| skip(Skip::InvalidValue, format!("due {s:?}: {}", e.as_str())));
    }
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|_| {
            skip(
                Skip::InvalidValue,
                format!("due {s:?} is neither Unix seconds nor RFC 3339 with an offset"),
            )
        })?;
    let ms = t.unix_timestamp_nanos().div_euclid(1_000_000);
    if !(0..=i128::from(MAX_EPOCH) * 1000 + 999).contains(&ms) {
        return Err(skip(
            Skip::InvalidValue,
            format!("due {s:?} is outside 1970..9999"),
        ));
    }
    Ok(ms as Millis)
}

#[cfg(test)]
mod tests;
