//! The AMI translator: parsed manager messages in, ringwatch events out,
//! owning the per-call correlation (caller Uniqueid -> queue visit, the
//! agent's channel and Linkedid, the hold count) and the reconciliation
//! after a (re)connect. Pure: time comes from each message's `Timestamp:`
//! or the receipt time the caller passes in; the state is plain data the
//! transport persists between runs.
//!
//! Asterisk 12+ names (`QueueCallerJoin`, `Hold`/`Unhold`,
//! `BlindTransfer`...) and Asterisk 11 names (`Join`/`Leave`, chan_sip
//! `Hold` with `Status:`, `MusicOnHold` with `State:`) are both understood;
//! the fields they differ in are told apart by name, so one translator
//! serves both.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::hash::Hasher;

use serde::{Deserialize, Serialize};
use siphasher::sip::SipHasher13;

use super::frame::{Kind, Message};
use crate::event::{Body, EndReason, Event, Id, Label, Millis, PromiseTarget};
use crate::sources::ids::{self, Family, PromiseStep, Step};
use crate::sources::metrics::{Reconciled, Skip};
use crate::sources::{Skipped, Translate};

/// A `QueueCallerAbandon` is the caller hanging up when the caller's
/// `Hangup` follows within this; later (or never) it was the queue giving
/// up (timeout, empty queue) and `abandon_policy` decides.
pub const HANGUP_GRACE_MS: Millis = 1_000;
/// A `QueueCallerLeave` without an answer or abandon this long ago (by
/// the PBX's clock) was the caller leaving to another destination.
pub const LEAVE_GRACE_MS: Millis = 10_000;
/// Uniqueids remembered for visit counting: until the channel hangs up,
/// and at most this many (the oldest without a call in progress are
/// forgotten first) for this long after their last event (a missed hang-up).
pub const MAX_VISITS: usize = 50_000;
pub const VISIT_HORIZON_MS: Millis = 24 * 3_600_000;
pub const GONE_HORIZON_MS: Millis = 10 * 60_000;
/// Calls in progress kept; one without an event this long is dropped from
/// the translator (ringwatch's own `call_ttl` has evicted it long before).
pub const MAX_CALLS: usize = 100_000;
pub const CALL_HORIZON_MS: Millis = 12 * 3_600_000;
/// The events that move a caller (by its `Uniqueid`) through the queue.
const QUEUE_EVENTS: [&str; 8] = [
    "QueueCallerJoin",
    "Join",
    "QueueCallerLeave",
    "Leave",
    "QueueCallerAbandon",
    "AgentConnect",
    "AgentComplete",
    "Hangup",
];
/// Timestamped messages remembered to recognise one delivered twice.
const RECENT: usize = 512;
/// The contract's last instant (9999-12-31T23:59:59.999Z).
const TS_MAX: Millis = 253_402_300_799_999;

/// The translator's memory, persisted as JSON between runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Caller Uniqueid -> its queue visits so far.
    #[serde(default)]
    pub visits: BTreeMap<String, Visit>,
    /// Caller Uniqueid -> the call of its current visit, until it ends.
    #[serde(default)]
    pub calls: BTreeMap<String, Call>,
    /// The PBX's last `Timestamp:` and the wall time it was received at:
    /// "now" on the PBX's clock for reconciliation and timers.
    #[serde(default)]
    pub clock: Option<(Millis, Millis)>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Visit {
    pub n: u32,
    /// Time of the last event of the Uniqueid (for forgetting it).
    pub seen: Millis,
    /// The channel hung up: forgotten after [`GONE_HORIZON_MS`].
    #[serde(default)]
    pub gone: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    pub id: String,
    pub queue: String,
    pub offered: Millis,
    pub last: Millis,
    pub linkedid: Option<String>,
    pub phase: Phase,
    pub agent: Option<String>,
    /// The member channel from `AgentConnect` (`DestUniqueid`, or
    /// `BridgedChannel` on Asterisk 11) and its `DestLinkedid`.
    pub agent_uniqueid: Option<String>,
    pub agent_linkedid: Option<String>,
    /// Hold segments started so far (the n of `HoldStarted(n)`).
    pub holds: u32,
    pub hold: Option<HoldBy>,
    /// A `Hold` event was seen for this call: music on hold is then not
    /// taken as a hold (it is the consequence of one).
    pub saw_hold: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    Waiting,
    /// `QueueCallerLeave` without an answer yet: an answer may still
    /// follow (Asterisk sends the leave first); else the caller went on.
    Left {
        ts: Millis,
    },
    /// `QueueCallerAbandon`: a hang-up or the queue giving up, decided by
    /// what follows; `left` once the `QueueCallerLeave` came too.
    Abandoned {
        ts: Millis,
        left: bool,
    },
    Answered,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HoldBy {
    /// `Hold` / `Unhold` (or chan_sip's `Hold` with `Status:`).
    Hold,
    /// The fallback: music on hold on the caller after the answer.
    Moh,
}

/// What one step of translation produced.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Output {
    pub events: Vec<Event>,
    /// Calls ringwatch should forget without an outcome.
    pub forget: Vec<Id>,
    pub skipped: Vec<Skipped>,
    /// Kept, offered, dropped: counts of a finished reconciliation.
    pub reconciled: Vec<(Reconciled, u64)>,
    /// Reconciliation could not look (an action refused): said for a log.
    pub notes: Vec<String>,
}

impl Output {
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
            && self.forget.is_empty()
            && self.skipped.is_empty()
            && self.reconciled.is_empty()
            && self.notes.is_empty()
    }
}

/// A reconciliation in progress: the actions' answers being collected.
#[derive(Debug)]
struct Reconcile {
    queue_action: String,
    channels_action: String,
    /// Calls open when it began: only these can be dropped (a call offered
    /// since is known from its own events).
    candidates: BTreeSet<String>,
    entries: Vec<Entry>,
    channels: BTreeSet<String>,
    /// Uniqueids with an event since it began: what their events say is
    /// newer than the answers' snapshot, so reconciliation leaves them be
    /// (a listed waiting caller answered meanwhile is not dropped and
    /// offered again, one that abandoned meanwhile is not offered again).
    touched: BTreeSet<String>,
    queues: Option<bool>,
    chans: Option<bool>,
    /// The PBX's "now" for `Wait`.
    now: Millis,
}

#[derive(Debug)]
struct Entry {
    uniqueid: String,
    queue: String,
    wait_s: i64,
}

pub struct Translator {
    t: Translate,
    state: State,
    recent: VecDeque<u64>,
    reconcile: Option<Reconcile>,
    dirty: bool,
    /// The latest event time seen (a capture's "now").
    latest: Millis,
    /// Callers whose exit waits for evidence (left or abandoned): the only
    /// calls a timer has to look at.
    pending: BTreeSet<String>,
}

/// Why a message made no event: the counted reason and a detail for logs.
type Why = (Skip, String);

fn skip(reason: Skip, detail: impl Into<String>) -> Why {
    (reason, detail.into())
}

impl Translator {
    pub fn new(t: Translate, state: State) -> Self {
        let latest = state.clock.map_or(0, |(p, _)| p);
        let pending = state
            .calls
            .iter()
            .filter(|(_, c)| matches!(c.phase, Phase::Left { .. } | Phase::Abandoned { .. }))
            .map(|(k, _)| k.clone())
            .collect();
        Translator {
            t,
            state,
            recent: VecDeque::with_capacity(RECENT),
            reconcile: None,
            dirty: false,
            latest,
            pending,
        }
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// True once since the state last changed (it is then due to be saved).
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    /// The state is due to be saved again (the last save failed).
    pub fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    /// "Now" on the PBX's clock: its last timestamp plus the wall time
    /// since, or the wall time when it never sent one.
    pub fn pbx_now(&self, wall: Millis) -> Millis {
        match self.state.clock {
            Some((pbx, at)) => pbx.saturating_add(wall.saturating_sub(at).max(0)),
            None => wall,
        }
    }

    /// Translate one message. `received` is the wall time it arrived
    /// (live); `None` in a capture, where an event without `Timestamp:` is
    /// skipped.
    pub fn message(&mut self, m: &Message, received: Option<Millis>, out: &mut Output) {
        if let Err((reason, detail)) = self.dispatch(m, received, out) {
            out.skipped.push(Skipped {
                line: m.line,
                reason,
                detail,
            });
        }
    }

    /// Decide what waited for evidence that has not come by `now` (the
    /// PBX's clock): a leave without an answer, an abandon without the
    /// caller's hang-up. Also forgets what is past its horizon.
    pub fn tick(&mut self, now: Millis, out: &mut Output) {
        self.expire(now, out);
        self.prune(now);
    }

    /// The end of a capture: decide everything still waiting for evidence.
    pub fn finish(&mut self, out: &mut Output) {
        self.expire(Millis::MAX, out);
    }

    /// Start reconciling after a (re)connect: the transport has sent
    /// `QueueStatus` and `CoreShowChannels` with these ActionIDs.
    pub fn begin_reconcile(&mut self, queue_action: &str, channels_action: &str, now: Millis) {
        self.reconcile = Some(Reconcile {
            queue_action: queue_action.to_string(),
            channels_action: channels_action.to_string(),
            candidates: self.state.calls.keys().cloned().collect(),
            entries: Vec::new(),
            channels: BTreeSet::new(),
            touched: BTreeSet::new(),
            queues: None,
            chans: None,
            now,
        });
    }

    pub fn reconciling(&self) -> bool {
        self.reconcile.is_some()
    }

    fn dispatch(
        &mut self,
        m: &Message,
        received: Option<Millis>,
        out: &mut Output,
    ) -> Result<(), Why> {
        if let Some(id) = m.get("ActionID") {
            if self.answers_reconcile(id, m, out) {
                return Ok(());
            }
        }
        let name = match m.kind() {
            Kind::Event(name) => name,
            Kind::Response(_) => return Err(skip(Skip::Ignored, "a response to an action")),
            Kind::Other => {
                return Err(skip(
                    Skip::Unknown,
                    "a message with neither Event: nor Response:",
                ))
            }
        };
        if let (Some(r), Some(u)) = (self.reconcile.as_mut(), m.get("Uniqueid")) {
            // Only what moves a caller through the queue: other events of
            // its channel (music, DTMF) say nothing the snapshot does not.
            if QUEUE_EVENTS.iter().any(|q| name.eq_ignore_ascii_case(q)) {
                r.touched.insert(u.to_string());
            }
        }
        let ts = self.time(m, received)?;
        if let (Some(wall), Some(_)) = (received, m.get("Timestamp")) {
            self.state.clock = Some((ts, wall));
        }
        if m.get("Timestamp").is_some() && self.repeated(m) {
            return Err(skip(Skip::Repeated, format!("{name} delivered twice")));
        }
        self.latest = self.latest.max(ts);
        self.expire(ts, out);
        self.queuestatus_evidence(m, ts, out);
        let lower = name.to_ascii_lowercase();
        match lower.as_str() {
            "queuecallerjoin" | "join" => self.join(m, ts, out),
            "queuecallerleave" | "leave" => self.leave(m, ts),
            "queuecallerabandon" => self.abandon(m, ts),
            "agentconnect" => self.connect(m, ts, out),
            "agentcomplete" => self.complete(m, ts, out),
            "hold" => match m.get("Status") {
                Some(s) if s.eq_ignore_ascii_case("off") => self.unhold(m, ts, out),
                _ => self.hold(m, ts, out),
            },
            "unhold" => self.unhold(m, ts, out),
            "musiconholdstart" => self.moh(m, ts, true, out),
            "musiconholdstop" => self.moh(m, ts, false, out),
            "musiconhold" => match m.get("State") {
                Some(s) if s.eq_ignore_ascii_case("start") => self.moh(m, ts, true, out),
                Some(s) if s.eq_ignore_ascii_case("stop") => self.moh(m, ts, false, out),
                _ => Err(skip(
                    Skip::Malformed,
                    "MusicOnHold without State: Start|Stop",
                )),
            },
            "blindtransfer" | "attendedtransfer" | "transfer" => self.transfer(m, ts, out),
            "hangup" => self.hangup(m, ts, out),
            "userevent" => self.user_event(m, ts, out),
            "varset" => Err(skip(Skip::Ignored, "VarSet")),
            _ => Err(skip(Skip::Ignored, format!("{name} is not needed"))),
        }
    }

    /// The message's time: `Timestamp:` (seconds.microseconds, floored to
    /// the millisecond), else the receipt time.
    fn time(&self, m: &Message, received: Option<Millis>) -> Result<Millis, Why> {
        match m.get("Timestamp") {
            Some(t) => parse_seconds(t).ok_or_else(|| {
                skip(
                    Skip::InvalidValue,
                    format!("Timestamp {:?} is not seconds.microseconds", clip(t)),
                )
            }),
            None => received.ok_or_else(|| {
                skip(
                    Skip::NoTimestamp,
                    "event without Timestamp: (enable timestampevents = yes in manager.conf)",
                )
            }),
        }
    }

    fn repeated(&mut self, m: &Message) -> bool {
        let mut h = SipHasher13::new_with_keys(1, 2);
        for (k, v) in &m.fields {
            h.write(k.to_ascii_lowercase().as_bytes());
            h.write_u8(0);
            h.write(v.as_bytes());
            h.write_u8(1);
        }
        let h = h.finish();
        if self.recent.contains(&h) {
            return true;
        }
        if self.recent.len() >= RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(h);
        false
    }

    fn ev(&self, ts: Millis, id: Id, agent: Option<&str>, body: Body) -> Event {
        Event {
            ts,
            event_id: Some(id),
            site: self.t.site.clone(),
            agent: agent.and_then(label),
            body,
        }
    }

    fn call_ev(&self, c: &Call, ts: Millis, step: Step, body: Body) -> Event {
        let id = ids::call_event(&c.id, step);
        let agent = match step {
            Step::Answered | Step::HoldStarted(_) | Step::HoldEnded(_) => c.agent.as_deref(),
            _ => None,
        };
        self.ev(ts, id, agent, body)
    }

    fn end(&mut self, uniqueid: &str, ts: Millis, reason: EndReason, out: &mut Output) {
        let Some(c) = self.state.calls.remove(uniqueid) else {
            return;
        };
        let body = Body::CallEnded {
            call: Id::from(c.id.as_str()),
            reason,
        };
        out.events.push(self.call_ev(&c, ts, Step::Ended, body));
        self.touch(uniqueid, ts);
    }

    fn touch(&mut self, uniqueid: &str, ts: Millis) {
        if let Some(v) = self.state.visits.get_mut(uniqueid) {
            v.seen = v.seen.max(ts);
        }
        self.dirty = true;
    }

    /// A new visit of `uniqueid` offered at `ts`.
    fn offer(
        &mut self,
        uniqueid: &str,
        queue: &str,
        linkedid: Option<&str>,
        ts: Millis,
        out: &mut Output,
    ) {
        let v = self.state.visits.entry(uniqueid.to_string()).or_default();
        v.n = v.n.saturating_add(1);
        v.seen = v.seen.max(ts);
        let n = v.n;
        let id = ids::call(Family::Asterisk, self.t.site.as_deref(), uniqueid, n);
        let c = Call {
            id: id.to_string(),
            queue: queue.to_string(),
            offered: ts,
            last: ts,
            linkedid: linkedid.map(str::to_string),
            phase: Phase::Waiting,
            agent: None,
            agent_uniqueid: None,
            agent_linkedid: None,
            holds: 0,
            hold: None,
            saw_hold: false,
        };
        let body = Body::CallOffered {
            call: id,
            queue: Label::from(queue),
        };
        out.events.push(self.call_ev(&c, ts, Step::Offered, body));
        self.state.calls.insert(uniqueid.to_string(), c);
        self.dirty = true;
        if self.state.visits.len() > MAX_VISITS {
            self.shrink_visits();
        }
        if self.state.calls.len() > MAX_CALLS {
            // The oldest call in progress goes; ringwatch evicts it too.
            let oldest = self
                .state
                .calls
                .iter()
                .min_by_key(|(_, c)| c.last)
                .map(|(k, c)| (k.clone(), c.id.clone()));
            if let Some((k, id)) = oldest {
                self.state.calls.remove(&k);
                out.forget.push(Id::from(id));
            }
        }
    }

    fn shrink_visits(&mut self) {
        let target = MAX_VISITS * 9 / 10;
        let mut idle: Vec<(Millis, String)> = self
            .state
            .visits
            .iter()
            .filter(|(k, _)| !self.state.calls.contains_key(*k))
            .map(|(k, v)| (v.seen, k.clone()))
            .collect();
        idle.sort();
        let excess = self.state.visits.len().saturating_sub(target);
        for (_, k) in idle.into_iter().take(excess) {
            self.state.visits.remove(&k);
        }
    }

    fn prune(&mut self, now: Millis) {
        let before = (self.state.calls.len(), self.state.visits.len());
        let call_floor = now.saturating_sub(CALL_HORIZON_MS);
        self.state.calls.retain(|_, c| c.last >= call_floor);
        let floor = now.saturating_sub(VISIT_HORIZON_MS);
        let gone_floor = now.saturating_sub(GONE_HORIZON_MS);
        let calls = &self.state.calls;
        self.state.visits.retain(|k, v| {
            calls.contains_key(k) || v.seen >= if v.gone { gone_floor } else { floor }
        });
        if before != (self.state.calls.len(), self.state.visits.len()) {
            self.dirty = true;
        }
    }

    /// Decide pending exits whose evidence did not come by `now`.
    fn expire(&mut self, now: Millis, out: &mut Output) {
        if self.pending.is_empty() {
            return;
        }
        let calls = &self.state.calls;
        self.pending.retain(|k| {
            calls
                .get(k)
                .is_some_and(|c| matches!(c.phase, Phase::Left { .. } | Phase::Abandoned { .. }))
        });
        let due: Vec<(String, Millis, EndReason)> = self
            .pending
            .iter()
            .filter_map(|k| self.state.calls.get(k).map(|c| (k, c)))
            .filter_map(|(k, c)| match c.phase {
                Phase::Left { ts } if now.saturating_sub(ts) > LEAVE_GRACE_MS => {
                    Some((k.clone(), ts, EndReason::Transferred))
                }
                Phase::Abandoned { ts, .. } if now.saturating_sub(ts) > HANGUP_GRACE_MS => {
                    Some((k.clone(), ts, self.t.abandon_policy.reason()))
                }
                _ => None,
            })
            .collect();
        for (k, ts, reason) in due {
            self.end(&k, ts, reason, out);
        }
    }

    /// `QUEUESTATUS` set after an abandon (a `VarSet`, or a `ChanVariable`
    /// from `channelvars=QUEUESTATUS` on an event after the leave: on the
    /// abandon itself it still holds an earlier visit's value).
    fn queuestatus_evidence(&mut self, m: &Message, _ts: Millis, out: &mut Output) {
        let Some(u) = m.get("Uniqueid") else { return };
        let Some(c) = self.state.calls.get(u) else {
            return;
        };
        let Phase::Abandoned { ts: at, left } = c.phase else {
            return;
        };
        let mut value = None;
        if m.is_event("VarSet") {
            if m.get("Variable")
                .is_some_and(|v| v.eq_ignore_ascii_case("QUEUESTATUS"))
            {
                value = m.get("Value").map(str::to_string);
            }
        } else if left {
            for (k, v) in &m.fields {
                let lk = k.to_ascii_lowercase();
                if lk.starts_with("chanvariable") {
                    if let Some((name, val)) = v.split_once('=') {
                        if name.trim().eq_ignore_ascii_case("QUEUESTATUS") {
                            value = Some(val.trim().to_string());
                        }
                    }
                }
            }
        }
        let Some(value) = value else { return };
        let policy = matches!(
            value.to_ascii_uppercase().as_str(),
            "TIMEOUT"
                | "LEAVEEMPTY"
                | "LEAVEUNAVAIL"
                | "JOINEMPTY"
                | "JOINUNAVAIL"
                | "FULL"
                | "WITHDRAW"
        );
        let reason = if policy {
            self.t.abandon_policy.reason()
        } else {
            EndReason::Abandoned
        };
        let u = u.to_string();
        self.end(&u, at, reason, out);
    }

    fn join(&mut self, m: &Message, ts: Millis, out: &mut Output) -> Result<(), Why> {
        let u = need(m, "Uniqueid")?;
        let queue = need(m, "Queue")?;
        if label(queue).is_none() {
            return Err(skip(
                Skip::InvalidValue,
                format!("queue name {:?} is not 1-64 characters", clip(queue)),
            ));
        }
        if let Some(c) = self.state.calls.get(u) {
            match c.phase {
                Phase::Waiting if c.queue == queue => {
                    return Err(skip(
                        Skip::Repeated,
                        "QueueCallerJoin of a caller already waiting in that queue",
                    ));
                }
                Phase::Left { ts: at } => self.end(u, at, EndReason::Transferred, out),
                Phase::Abandoned { ts: at, .. } => {
                    // Still in the dialplan, in a queue again: not a hang-up.
                    let reason = self.t.abandon_policy.reason();
                    self.end(u, at, reason, out)
                }
                Phase::Waiting | Phase::Answered => self.end(u, ts, EndReason::Transferred, out),
            }
        }
        self.offer(u, queue, m.get("Linkedid"), ts, out);
        Ok(())
    }

    fn leave(&mut self, m: &Message, ts: Millis) -> Result<(), Why> {
        let u = need(m, "Uniqueid")?;
        let c = self.open(u)?;
        c.last = c.last.max(ts);
        match c.phase {
            Phase::Waiting => c.phase = Phase::Left { ts },
            Phase::Abandoned {
                ts: at,
                left: false,
            } => c.phase = Phase::Abandoned { ts: at, left: true },
            Phase::Left { .. } | Phase::Abandoned { .. } => {
                return Err(skip(Skip::Repeated, "QueueCallerLeave seen already"))
            }
            Phase::Answered => {
                return Err(skip(Skip::Ignored, "QueueCallerLeave after the answer"))
            }
        }
        self.pending.insert(u.to_string());
        self.dirty = true;
        Ok(())
    }

    fn abandon(&mut self, m: &Message, ts: Millis) -> Result<(), Why> {
        let u = need(m, "Uniqueid")?;
        let c = self.open(u)?;
        c.last = c.last.max(ts);
        match c.phase {
            Phase::Waiting => c.phase = Phase::Abandoned { ts, left: false },
            Phase::Left { .. } => c.phase = Phase::Abandoned { ts, left: true },
            Phase::Abandoned { .. } => {
                return Err(skip(Skip::Repeated, "QueueCallerAbandon seen already"))
            }
            Phase::Answered => {
                return Err(skip(Skip::Ignored, "QueueCallerAbandon after the answer"))
            }
        }
        self.pending.insert(u.to_string());
        self.dirty = true;
        Ok(())
    }

    fn connect(&mut self, m: &Message, ts: Millis, out: &mut Output) -> Result<(), Why> {
        let u = need(m, "Uniqueid")?;
        let c = self.open(u)?;
        match c.phase {
            Phase::Waiting | Phase::Left { .. } => {}
            Phase::Answered => return Err(skip(Skip::Repeated, "AgentConnect seen already")),
            Phase::Abandoned { .. } => {
                return Err(skip(Skip::Ignored, "AgentConnect after QueueCallerAbandon"))
            }
        }
        c.phase = Phase::Answered;
        c.last = c.last.max(ts);
        c.agent = ["MemberName", "Member", "Interface"]
            .iter()
            .filter_map(|k| m.get(k))
            .find(|v| label(v).is_some())
            .map(str::to_string);
        c.agent_uniqueid = m
            .get("DestUniqueid")
            .or_else(|| m.get("BridgedChannel"))
            .map(str::to_string);
        c.agent_linkedid = m.get("DestLinkedid").map(str::to_string);
        if c.linkedid.is_none() {
            c.linkedid = m.get("Linkedid").map(str::to_string);
        }
        let c = c.clone();
        let body = Body::CallAnswered {
            call: Id::from(c.id.as_str()),
        };
        out.events.push(self.call_ev(&c, ts, Step::Answered, body));
        self.touch(u, ts);
        Ok(())
    }

    fn complete(&mut self, m: &Message, ts: Millis, out: &mut Output) -> Result<(), Why> {
        let u = need(m, "Uniqueid")?;
        let (phase, id) = {
            let c = self.open(u)?;
            (c.phase, Id::from(c.id.as_str()))
        };
        if phase != Phase::Answered {
            // Ended by an agent without a connect we saw: its answer time
            // is unknown, and guessing it would be worse than nothing.
            self.state.calls.remove(u);
            self.dirty = true;
            out.forget.push(id);
            return Err(skip(
                Skip::UnknownCall,
                "AgentComplete for a call whose AgentConnect was not seen: forgotten without an outcome",
            ));
        }
        let reason = match m.get("Reason") {
            Some(r) if r.eq_ignore_ascii_case("transfer") => EndReason::Transferred,
            _ => EndReason::Completed,
        };
        self.end(u, ts, reason, out);
        Ok(())
    }

    /// The answered call a channel event belongs to: the caller's
    /// Uniqueid, the agent's remembered Uniqueid, or a shared Linkedid.
    fn channel_call(&self, m: &Message) -> Option<String> {
        let u = m.get("Uniqueid");
        let l = m.get("Linkedid");
        if let Some(u) = u {
            if self.state.calls.contains_key(u) {
                return Some(u.to_string());
            }
        }
        let by_agent = self
            .state
            .calls
            .iter()
            .find(|(_, c)| u.is_some() && c.agent_uniqueid.as_deref() == u);
        if let Some((k, _)) = by_agent {
            return Some(k.clone());
        }
        let l = l?;
        self.state
            .calls
            .iter()
            .filter(|(_, c)| {
                c.linkedid.as_deref() == Some(l) || c.agent_linkedid.as_deref() == Some(l)
            })
            // A chain may hold a waiting call and an answered one.
            .max_by_key(|(_, c)| c.phase == Phase::Answered)
            .map(|(k, _)| k.clone())
    }

    fn answered_for_channel(&self, m: &Message, what: &str) -> Result<String, Why> {
        match self.channel_call(m) {
            Some(k)
                if self
                    .state
                    .calls
                    .get(&k)
                    .is_some_and(|c| c.phase == Phase::Answered) =>
            {
                Ok(k)
            }
            Some(_) => Err(skip(
                Skip::Ignored,
                format!("{what} on a call not answered yet (queue wait is not a hold)"),
            )),
            None => Err(skip(
                Skip::UnknownCall,
                format!("{what} on a channel of no call in progress"),
            )),
        }
    }

    fn hold(&mut self, m: &Message, ts: Millis, out: &mut Output) -> Result<(), Why> {
        let k = self.answered_for_channel(m, "Hold")?;
        let Some(c) = self.state.calls.get_mut(&k) else {
            return Err(skip(Skip::UnknownCall, "Hold"));
        };
        c.saw_hold = true;
        c.last = c.last.max(ts);
        self.dirty = true;
        match c.hold {
            Some(HoldBy::Hold) => return Err(skip(Skip::Repeated, "Hold while on hold")),
            Some(HoldBy::Moh) => {
                // The music came first; the segment it opened is this hold.
                c.hold = Some(HoldBy::Hold);
                return Err(skip(
                    Skip::Ignored,
                    "Hold after the music on hold it caused",
                ));
            }
            None => {}
        }
        c.holds = c.holds.saturating_add(1);
        c.hold = Some(HoldBy::Hold);
        let c = c.clone();
        let body = Body::HoldStarted {
            call: Id::from(c.id.as_str()),
        };
        out.events
            .push(self.call_ev(&c, ts, Step::HoldStarted(c.holds), body));
        Ok(())
    }

    fn unhold(&mut self, m: &Message, ts: Millis, out: &mut Output) -> Result<(), Why> {
        let k = self.answered_for_channel(m, "Unhold")?;
        let Some(c) = self.state.calls.get_mut(&k) else {
            return Err(skip(Skip::UnknownCall, "Unhold"));
        };
        c.saw_hold = true;
        if c.hold.is_none() {
            return Err(skip(Skip::Repeated, "Unhold while not on hold"));
        }
        c.hold = None;
        c.last = c.last.max(ts);
        self.dirty = true;
        let c = c.clone();
        let body = Body::HoldEnded {
            call: Id::from(c.id.as_str()),
        };
        out.events
            .push(self.call_ev(&c, ts, Step::HoldEnded(c.holds), body));
        Ok(())
    }

    /// Music on hold on the caller after the answer: a hold, when the
    /// stream carries no `Hold` events for the call (Asterisk 11 without
    /// `callevents`, endpoints that send none).
    fn moh(&mut self, m: &Message, ts: Millis, start: bool, out: &mut Output) -> Result<(), Why> {
        let u = need(m, "Uniqueid")?;
        let Some(c) = self.state.calls.get_mut(u) else {
            return Err(skip(
                Skip::Ignored,
                "music on hold on a channel that is no caller's",
            ));
        };
        if c.phase != Phase::Answered {
            return Err(skip(
                Skip::Ignored,
                "music while waiting in the queue is not a hold",
            ));
        }
        if c.saw_hold {
            return Err(skip(
                Skip::Ignored,
                "music on hold of a call with Hold events",
            ));
        }
        c.last = c.last.max(ts);
        let (step, body) = if start {
            if c.hold.is_some() {
                return Err(skip(Skip::Repeated, "music on hold started twice"));
            }
            c.holds = c.holds.saturating_add(1);
            c.hold = Some(HoldBy::Moh);
            let call = Id::from(c.id.as_str());
            (Step::HoldStarted(c.holds), Body::HoldStarted { call })
        } else {
            if c.hold != Some(HoldBy::Moh) {
                return Err(skip(Skip::Ignored, "music on hold stopped without a hold"));
            }
            c.hold = None;
            let call = Id::from(c.id.as_str());
            (Step::HoldEnded(c.holds), Body::HoldEnded { call })
        };
        self.dirty = true;
        let c = c.clone();
        out.events.push(self.call_ev(&c, ts, step, body));
        Ok(())
    }

    fn transfer(&mut self, m: &Message, ts: Millis, out: &mut Output) -> Result<(), Why> {
        if let Some(r) = m.get("Result") {
            if !r.eq_ignore_ascii_case("success") {
                return Err(skip(
                    Skip::Ignored,
                    format!("transfer result {:?}", clip(r)),
                ));
            }
        }
        let mut uniqueids = Vec::new();
        let mut linkedids = Vec::new();
        for (k, v) in &m.fields {
            let k = k.to_ascii_lowercase();
            if k.ends_with("uniqueid") && !k.contains("bridge") {
                uniqueids.push(v.as_str());
            } else if k.ends_with("linkedid") {
                linkedids.push(v.as_str());
            }
        }
        let found = self
            .state
            .calls
            .iter()
            .filter(|(_, c)| c.phase == Phase::Answered)
            .find(|(k, c)| {
                uniqueids.contains(&k.as_str())
                    || c.agent_uniqueid
                        .as_deref()
                        .is_some_and(|a| uniqueids.contains(&a))
                    || c.linkedid
                        .as_deref()
                        .is_some_and(|l| linkedids.contains(&l))
                    || c.agent_linkedid
                        .as_deref()
                        .is_some_and(|l| linkedids.contains(&l))
            })
            .map(|(k, _)| k.clone());
        match found {
            Some(k) => {
                self.end(&k, ts, EndReason::Transferred, out);
                Ok(())
            }
            None => Err(skip(
                Skip::Ignored,
                "transfer of no answered call in progress",
            )),
        }
    }

    fn hangup(&mut self, m: &Message, ts: Millis, out: &mut Output) -> Result<(), Why> {
        let u = need(m, "Uniqueid")?.to_string();
        let result = match self.state.calls.get(&u) {
            None => Err(skip(Skip::Ignored, "Hangup of no caller in a queue")),
            Some(c) => {
                let (at, reason) = match c.phase {
                    // No QueueCallerAbandon came; the hang-up says it all.
                    Phase::Waiting => (ts, EndReason::Abandoned),
                    Phase::Left { ts: at } => (at, EndReason::Transferred),
                    Phase::Abandoned { ts: at, .. } if ts.saturating_sub(at) <= HANGUP_GRACE_MS => {
                        (at, EndReason::Abandoned)
                    }
                    Phase::Abandoned { ts: at, .. } => (at, self.t.abandon_policy.reason()),
                    // Some versions skip AgentComplete.
                    Phase::Answered => (ts, EndReason::Completed),
                };
                self.end(&u, at, reason, out);
                Ok(())
            }
        };
        // A channel that hung up never joins a queue again: its visit
        // count is kept only briefly, which keeps the state to the callers
        // still up (and a stream that rejoins it anyway still gets new ids).
        if let Some(v) = self.state.visits.get_mut(&u) {
            v.gone = true;
            v.seen = v.seen.max(ts);
            self.dirty = true;
        }
        result
    }

    fn user_event(&mut self, m: &Message, ts: Millis, out: &mut Output) -> Result<(), Why> {
        if !m
            .get("UserEvent")
            .is_some_and(|u| u.eq_ignore_ascii_case("RingwatchCallback"))
        {
            return Err(skip(
                Skip::Ignored,
                "a UserEvent that is not RingwatchCallback",
            ));
        }
        let action = need(m, "Action")?.to_ascii_lowercase();
        let promise = need(m, "Promise")?;
        if promise.is_empty() {
            return Err(skip(
                Skip::Malformed,
                "RingwatchCallback with an empty Promise",
            ));
        }
        let pid = ids::promise(Family::Asterisk, self.t.site.as_deref(), promise);
        let agent = m.get("Agent");
        let (step, body) = match action.as_str() {
            "promised" => {
                let due = need(m, "Due")?;
                let due = parse_due(due).ok_or_else(|| {
                    skip(
                        Skip::InvalidValue,
                        format!(
                            "Due {:?} is not Unix seconds or RFC 3339 with an offset",
                            clip(due)
                        ),
                    )
                })?;
                let call = self.call_of_channel(m);
                let target = match m.get("Queue").filter(|q| !q.is_empty()) {
                    Some(q) => {
                        let queue = label(q).ok_or_else(|| {
                            skip(
                                Skip::InvalidValue,
                                format!("queue name {:?} is not 1-64 characters", clip(q)),
                            )
                        })?;
                        PromiseTarget::Queue { queue, call }
                    }
                    None => PromiseTarget::Call {
                        call: call.ok_or_else(|| {
                            skip(
                                Skip::UnknownCall,
                                "RingwatchCallback without Queue: on a channel of no known call",
                            )
                        })?,
                    },
                };
                (
                    PromiseStep::Promised,
                    Body::CallbackPromised {
                        promise: pid.clone(),
                        due,
                        target,
                    },
                )
            }
            "completed" => (
                PromiseStep::Completed,
                Body::CallbackCompleted {
                    promise: pid.clone(),
                },
            ),
            "cancelled" | "canceled" => (
                PromiseStep::Cancelled,
                Body::CallbackCancelled {
                    promise: pid.clone(),
                },
            ),
            _ => {
                return Err(skip(
                    Skip::InvalidValue,
                    format!(
                        "Action {:?} is not promised, completed or cancelled",
                        clip(&action)
                    ),
                ))
            }
        };
        let id = ids::promise_event(&pid, step);
        out.events.push(self.ev(ts, id, agent, body));
        Ok(())
    }

    /// The call of the channel an event came from: in progress, or the
    /// Uniqueid's latest visit.
    fn call_of_channel(&self, m: &Message) -> Option<Id> {
        if let Some(k) = self.channel_call(m) {
            return self.state.calls.get(&k).map(|c| Id::from(c.id.as_str()));
        }
        let u = m.get("Uniqueid")?;
        let v = self.state.visits.get(u)?;
        Some(ids::call(Family::Asterisk, self.t.site.as_deref(), u, v.n))
    }

    /// The call in progress of a caller Uniqueid.
    fn open(&mut self, u: &str) -> Result<&mut Call, Why> {
        let known = self.state.visits.contains_key(u);
        self.state.calls.get_mut(u).ok_or_else(|| {
            if known {
                skip(Skip::Ignored, "an event of a call that has ended")
            } else {
                skip(
                    Skip::UnknownCall,
                    "a queue event of a caller never seen joining",
                )
            }
        })
    }

    /// Answers to the reconciliation's actions; true when `m` was one.
    fn answers_reconcile(&mut self, id: &str, m: &Message, out: &mut Output) -> bool {
        let Some(r) = self.reconcile.as_mut() else {
            return false;
        };
        let queues = id == r.queue_action;
        let chans = id == r.channels_action;
        if !queues && !chans {
            return false;
        }
        match m.kind() {
            Kind::Response(status) => {
                if status.eq_ignore_ascii_case("error") {
                    let why = m.get("Message").unwrap_or("refused");
                    if queues {
                        r.queues = Some(false);
                        out.notes
                            .push(format!("QueueStatus refused: {}", clip(why)));
                    } else {
                        r.chans = Some(false);
                        out.notes.push(format!(
                            "CoreShowChannels refused ({}): answered calls are kept as they are",
                            clip(why)
                        ));
                    }
                }
            }
            Kind::Event(e) => {
                let e = e.to_ascii_lowercase();
                match e.as_str() {
                    "queueentry" => {
                        if let (Some(u), Some(q)) = (m.get("Uniqueid"), m.get("Queue")) {
                            let wait_s = m
                                .get("Wait")
                                .and_then(|w| w.trim().parse::<i64>().ok())
                                .unwrap_or(0)
                                .clamp(0, 7 * 86_400);
                            r.entries.push(Entry {
                                uniqueid: u.to_string(),
                                queue: q.to_string(),
                                wait_s,
                            });
                        }
                    }
                    "queuestatuscomplete" => r.queues = Some(r.queues.unwrap_or(true)),
                    "coreshowchannel" => {
                        if let Some(u) = m.get("Uniqueid") {
                            r.channels.insert(u.to_string());
                        }
                    }
                    "coreshowchannelscomplete" => r.chans = Some(r.chans.unwrap_or(true)),
                    _ => {}
                }
            }
            Kind::Other => {}
        }
        if r.queues.is_some() && r.chans.is_some() {
            if let Some(r) = self.reconcile.take() {
                self.finish_reconcile(r, out);
            }
        }
        true
    }

    fn finish_reconcile(&mut self, r: Reconcile, out: &mut Output) {
        let mut kept = 0u64;
        let mut dropped = 0u64;
        let mut offered = 0u64;
        let queues_ok = r.queues == Some(true);
        let chans_ok = r.chans == Some(true);
        let waiting: BTreeMap<&str, &Entry> =
            r.entries.iter().map(|e| (e.uniqueid.as_str(), e)).collect();
        for u in &r.candidates {
            let Some(c) = self.state.calls.get(u) else {
                continue;
            };
            if r.touched.contains(u) {
                kept += 1;
                continue;
            }
            let entry = waiting.get(u.as_str());
            let keep = match (c.phase, entry) {
                (Phase::Answered, Some(_)) if queues_ok => false,
                (Phase::Answered, _) => !chans_ok || r.channels.contains(u),
                (_, Some(e)) => e.queue == c.queue,
                (_, None) => !queues_ok,
            };
            if keep {
                kept += 1;
            } else {
                dropped += 1;
                out.forget.push(Id::from(c.id.as_str()));
                self.state.calls.remove(u);
                self.dirty = true;
            }
        }
        if queues_ok {
            for e in &r.entries {
                if self.state.calls.contains_key(&e.uniqueid)
                    || r.touched.contains(&e.uniqueid)
                    || label(&e.queue).is_none()
                {
                    continue;
                }
                let ts = r.now.saturating_sub(e.wait_s.saturating_mul(1000)).max(0);
                self.offer(&e.uniqueid, &e.queue, None, ts, out);
                offered += 1;
            }
        }
        out.reconciled.push((Reconciled::Kept, kept));
        out.reconciled.push((Reconciled::Offered, offered));
        out.reconciled.push((Reconciled::Dropped, dropped));
    }
}

fn need<'a>(m: &'a Message, key: &str) -> Result<&'a str, Why> {
    m.get(key)
        .ok_or_else(|| skip(Skip::Malformed, format!("no {key}: field")))
}

/// A label of the contract (1-64 characters), or none.
fn label(s: &str) -> Option<Label> {
    let n = s.chars().count();
    (1..=64).contains(&n).then(|| Label::from(s))
}

fn clip(s: &str) -> &str {
    match s.char_indices().nth(40) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// `1514295827.372123` (seconds, optional fraction) into milliseconds,
/// floored; in 1970..9999.
pub fn parse_seconds(s: &str) -> Option<Millis> {
    let s = s.trim();
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) || int.len() > 12 {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: Millis = int.parse().ok()?;
    let mut ms: Millis = 0;
    for (i, b) in frac.bytes().take(3).enumerate() {
        ms += Millis::from(b - b'0') * [100, 10, 1].get(i).copied().unwrap_or(0);
    }
    let total = secs.checked_mul(1000)?.checked_add(ms)?;
    (0..=TS_MAX).contains(&total).then_some(total)
}

/// A callback's `Due`: Unix seconds (fraction allowed) or RFC 3339 with an
/// offset.
pub fn parse_due(s: &str) -> Option<Millis> {
    if let Some(ms) = parse_seconds(s) {
        return Some(ms);
    }
    let t = time::OffsetDateTime::parse(s.trim(), &time::format_description::well_known::Rfc3339)
        .ok()?;
    let ms = Millis::try_from(t.unix_timestamp_nanos().div_euclid(1_000_000)).ok()?;
    (0..=TS_MAX).contains(&ms).then_some(ms)
}

#[cfg(test)]
#[path = "translate_tests.rs"]
mod tests;
