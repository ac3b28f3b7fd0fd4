//! The engine's state as a snapshot holds it: calls in flight, pending
//! promises, tombstones, the de-duplication window, the label tables and the
//! clock. Configuration is not part of it: a restored engine takes the
//! settings it is started with (limits, caps, windows).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use serde::{Deserialize, Serialize};

use super::series::{Interner, SeriesTable};
use super::{Call, Engine, ExpiringSet, Observer, Promise, Settings};
use crate::event::{Id, Millis};

/// Borrowed view written to a snapshot (no copy of the state is made).
#[derive(Serialize)]
struct ImageRef<'a> {
    clock: Millis,
    next_sweep: Millis,
    series: &'a SeriesTable,
    calls: &'a HashMap<Id, Call>,
    ended: &'a ExpiringSet,
    promises: &'a HashMap<Id, Promise>,
    resolved: &'a ExpiringSet,
    deadlines: &'a BinaryHeap<Reverse<(Millis, Id)>>,
    dedup: &'a ExpiringSet,
    agents: &'a Interner,
}

/// The engine state read back from a snapshot; [`Engine::restore`] turns it
/// into an engine.
#[derive(Deserialize)]
pub struct EngineImage {
    clock: Millis,
    next_sweep: Millis,
    series: SeriesTable,
    calls: HashMap<Id, Call>,
    ended: ExpiringSet,
    promises: HashMap<Id, Promise>,
    resolved: ExpiringSet,
    deadlines: BinaryHeap<Reverse<(Millis, Id)>>,
    dedup: ExpiringSet,
    agents: Interner,
}

impl Serialize for Engine {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ImageRef {
            clock: self.clock,
            next_sweep: self.next_sweep,
            series: &self.series,
            calls: &self.calls,
            ended: &self.ended,
            promises: &self.promises,
            resolved: &self.resolved,
            deadlines: &self.deadlines,
            dedup: &self.dedup,
            agents: &self.agents,
        }
        .serialize(s)
    }
}

impl Engine {
    /// An engine in the saved state, under `settings`. Series keep their
    /// ids (the metrics store is indexed by them) but take the limits the
    /// settings give their queue; caps and windows are the settings' too.
    pub fn restore(settings: Settings, image: EngineImage) -> Engine {
        let series = image
            .series
            .restored(settings.max_queues, settings.max_sites, |q| {
                settings.limits_for(q)
            });
        Engine {
            clock: image.clock,
            next_sweep: image.next_sweep,
            series,
            calls: image.calls,
            ended: image.ended.restored(settings.call_ttl, settings.max_calls),
            promises: image.promises,
            resolved: image
                .resolved
                .restored(settings.callback_expiry, settings.max_promises),
            deadlines: image.deadlines,
            dedup: image
                .dedup
                .restored(settings.dedup_window, settings.dedup_max_ids),
            agents: image.agents.restored(settings.max_agents),
            settings,
        }
    }
}

impl Engine {
    /// Tell a fresh observer about every series and (in per-agent mode)
    /// every agent this engine knows, in id order.
    pub fn replay_labels(&self, obs: &mut impl Observer) {
        for (id, info) in (0..).zip(self.series.all()) {
            obs.new_series(id, info);
        }
        self.replay_agents_from(0, obs);
    }

    /// Tell the observer about the agents from index `first` on (per-agent
    /// mode only): those a snapshot taken without per-agent mode lacks.
    pub fn replay_agents_from(&self, first: usize, obs: &mut impl Observer) {
        if !self.settings.per_agent {
            return;
        }
        for id in first..self.agents.len() {
            let id = id as u32;
            obs.new_agent(id, self.agents.name(id));
        }
    }
}
