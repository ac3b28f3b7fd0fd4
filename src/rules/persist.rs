//! The engine's state as a snapshot holds it: calls in flight, pending
//! promises, tombstones, the de-duplication window, the label tables and the
//! clock (`Engine` itself is serialized, settings left out). Configuration is
//! not part of it: a restored engine takes the settings it is started with
//! (limits, caps, windows).

use serde::Deserialize;

use super::{Engine, Observer, Settings};

/// The engine state read back from a snapshot; only [`Engine::restore`]
/// turns it into an engine, so none runs without its settings.
#[derive(Deserialize)]
#[serde(transparent)]
pub struct EngineImage(Engine);

impl Engine {
    /// An engine in the saved state, under `settings`. Series keep their
    /// ids (the metrics store is indexed by them) but take the limits the
    /// settings give their queue; caps and windows are the settings' too.
    pub fn restore(settings: Settings, image: EngineImage) -> Engine {
        let e = image.0;
        Engine {
            series: e
                .series
                .restored(settings.max_queues, settings.max_sites, |q| {
                    settings.limits_for(q)
                }),
            ended: e.ended.restored(settings.call_ttl, settings.max_calls),
            resolved: e
                .resolved
                .restored(settings.callback_expiry, settings.max_promises),
            dedup: e
                .dedup
                .restored(settings.dedup_window, settings.dedup_max_ids),
            agents: e.agents.restored(settings.max_agents),
            settings,
            ..e
        }
    }

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
