//! The validated call event: the one type that flows from `ingest` into `rules`.
//!
//! Everything here has already passed the wire contract (types, lengths,
//! required fields per type), so the rules engine never re-checks the shape of
//! an event, only whether it makes sense for the call or promise it names.

use compact_str::CompactString;

/// Milliseconds since the Unix epoch. All durations are computed from these
/// (never from arrival time); sub-millisecond precision on the wire is floored.
pub type Millis = i64;

/// A call, promise or event identifier (1-128 characters). Ids up to 24 bytes
/// are stored inline, so the common case allocates nothing.
pub type Id = CompactString;

/// A label value from the wire (queue, site, agent: 1-64 characters).
pub type Label = CompactString;

/// One accepted-shape event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub ts: Millis,
    pub event_id: Option<Id>,
    pub site: Option<Label>,
    /// The agent who answered, held, promised or called back.
    pub agent: Option<Label>,
    pub body: Body,
}

/// What happened, with exactly the fields each type requires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    CallOffered {
        call: Id,
        queue: Label,
    },
    CallAnswered {
        call: Id,
    },
    HoldStarted {
        call: Id,
    },
    HoldEnded {
        call: Id,
    },
    CallEnded {
        call: Id,
        reason: EndReason,
    },
    CallbackPromised {
        promise: Id,
        due: Millis,
        target: PromiseTarget,
    },
    CallbackCompleted {
        promise: Id,
    },
    CallbackCancelled {
        promise: Id,
    },
    Clock,
}

impl Body {
    pub fn kind(&self) -> EventKind {
        match self {
            Body::CallOffered { .. } => EventKind::CallOffered,
            Body::CallAnswered { .. } => EventKind::CallAnswered,
            Body::HoldStarted { .. } => EventKind::HoldStarted,
            Body::HoldEnded { .. } => EventKind::HoldEnded,
            Body::CallEnded { .. } => EventKind::CallEnded,
            Body::CallbackPromised { .. } => EventKind::CallbackPromised,
            Body::CallbackCompleted { .. } => EventKind::CallbackCompleted,
            Body::CallbackCancelled { .. } => EventKind::CallbackCancelled,
            Body::Clock => EventKind::Clock,
        }
    }

    /// The call or promise the event is about, for error details.
    pub fn subject(&self) -> Option<(&'static str, &str)> {
        match self {
            Body::CallOffered { call, .. }
            | Body::CallAnswered { call }
            | Body::HoldStarted { call }
            | Body::HoldEnded { call }
            | Body::CallEnded { call, .. } => Some(("call", call)),
            Body::CallbackPromised { promise, .. }
            | Body::CallbackCompleted { promise }
            | Body::CallbackCancelled { promise } => Some(("promise", promise)),
            Body::Clock => None,
        }
    }
}

/// Whose promise a `callback.promised` is: the wire allows `queue`,
/// `call_id` or both, never neither, and the type says so, so the engine has
/// no case to refuse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PromiseTarget {
    /// The named queue's; `call` is the call it was made on, if given.
    Queue { queue: Label, call: Option<Id> },
    /// The queue of the call in progress named by `call_id`.
    Call { call: Id },
}

impl PromiseTarget {
    pub fn queue(&self) -> Option<&Label> {
        match self {
            PromiseTarget::Queue { queue, .. } => Some(queue),
            PromiseTarget::Call { .. } => None,
        }
    }

    pub fn call(&self) -> Option<&Id> {
        match self {
            PromiseTarget::Queue { call, .. } => call.as_ref(),
            PromiseTarget::Call { call } => Some(call),
        }
    }
}

/// The `type` of an event; also the `type` label of `ringwatch_events_received_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    CallOffered,
    CallAnswered,
    HoldStarted,
    HoldEnded,
    CallEnded,
    CallbackPromised,
    CallbackCompleted,
    CallbackCancelled,
    Clock,
}

impl EventKind {
    pub const ALL: [EventKind; 9] = [
        EventKind::CallOffered,
        EventKind::CallAnswered,
        EventKind::HoldStarted,
        EventKind::HoldEnded,
        EventKind::CallEnded,
        EventKind::CallbackPromised,
        EventKind::CallbackCompleted,
        EventKind::CallbackCancelled,
        EventKind::Clock,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::CallOffered => "call.offered",
            EventKind::CallAnswered => "call.answered",
            EventKind::HoldStarted => "call.hold_started",
            EventKind::HoldEnded => "call.hold_ended",
            EventKind::CallEnded => "call.ended",
            EventKind::CallbackPromised => "callback.promised",
            EventKind::CallbackCompleted => "callback.completed",
            EventKind::CallbackCancelled => "callback.cancelled",
            EventKind::Clock => "clock",
        }
    }

    pub fn parse(s: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// `call.ended` `reason`; absent means `completed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    Completed,
    Abandoned,
    Transferred,
    Failed,
}

impl EndReason {
    pub fn parse(s: &str) -> Option<EndReason> {
        match s {
            "completed" => Some(EndReason::Completed),
            "abandoned" => Some(EndReason::Abandoned),
            "transferred" => Some(EndReason::Transferred),
            "failed" => Some(EndReason::Failed),
            _ => None,
        }
    }
}

/// Why an event was not applied: the stable `reason` of the acknowledgement
/// and the `reason` label of `ringwatch_events_rejected_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    MalformedJson,
    NotAnObject,
    UnknownType,
    MissingField,
    InvalidField,
    UnknownCall,
    DuplicateCall,
    InvalidTransition,
    TimeGoesBackwards,
    UnknownPromise,
    DuplicatePromise,
    AlreadyResolved,
    Capacity,
}

impl Reason {
    pub const ALL: [Reason; 13] = [
        Reason::MalformedJson,
        Reason::NotAnObject,
        Reason::UnknownType,
        Reason::MissingField,
        Reason::InvalidField,
        Reason::UnknownCall,
        Reason::DuplicateCall,
        Reason::InvalidTransition,
        Reason::TimeGoesBackwards,
        Reason::UnknownPromise,
        Reason::DuplicatePromise,
        Reason::AlreadyResolved,
        Reason::Capacity,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::MalformedJson => "malformed_json",
            Reason::NotAnObject => "not_an_object",
            Reason::UnknownType => "unknown_type",
            Reason::MissingField => "missing_field",
            Reason::InvalidField => "invalid_field",
            Reason::UnknownCall => "unknown_call",
            Reason::DuplicateCall => "duplicate_call",
            Reason::InvalidTransition => "invalid_transition",
            Reason::TimeGoesBackwards => "time_goes_backwards",
            Reason::UnknownPromise => "unknown_promise",
            Reason::DuplicatePromise => "duplicate_promise",
            Reason::AlreadyResolved => "already_resolved",
            Reason::Capacity => "capacity",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
