//! The simulated call center: Poisson arrivals per queue, a finite agent pool
//! serving callers in order (so waits come from queueing, Erlang-C style),
//! caller patience (abandons, short ones included), hold segments of
//! lognormal length (some over 17 s), and callback promises that are mostly
//! kept, some late, some missed, some cancelled. Fully determined by the seed.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp, LogNormal};

use crate::event::Millis;

#[derive(Clone, Debug)]
pub struct QueueSpec {
    pub name: String,
    pub calls_per_hour: f64,
    pub agents: usize,
}

#[derive(Clone, Debug)]
pub struct Model {
    pub seed: u64,
    pub queues: Vec<QueueSpec>,
    /// `ts` of the first moment of the simulation.
    pub start: Millis,
    /// Calls arrive during this many milliseconds.
    pub duration: Millis,
    pub mean_talk_secs: f64,
    pub mean_patience_secs: f64,
    pub hold_probability: f64,
    pub hold_median_secs: f64,
    pub callback_probability: f64,
}

impl Default for Model {
    fn default() -> Self {
        Model {
            seed: 1,
            queues: ["billing", "sales", "support"]
                .iter()
                .map(|q| QueueSpec {
                    name: q.to_string(),
                    calls_per_hour: 120.0,
                    agents: 4,
                })
                .collect(),
            start: 1_795_420_800_000, // 2026-11-23T08:00:00Z
            duration: 3_600_000,
            mean_talk_secs: 90.0,
            mean_patience_secs: 60.0,
            hold_probability: 0.35,
            hold_median_secs: 11.0,
            callback_probability: 0.15,
        }
    }
}

/// What happens to one call (or promise): the raw material of both the events
/// and the ground truth.
#[derive(Clone, Debug, PartialEq)]
pub enum Story {
    Answered {
        queue: usize,
        call: u64,
        offered: Millis,
        answered: Millis,
        /// (start, end) of each hold segment.
        holds: Vec<(Millis, Millis)>,
        /// The call ends while the caller is on the last hold: its segment is
        /// closed by call.ended, not hold_ended.
        ends_on_hold: bool,
        ended: Millis,
        transferred: bool,
        callback: Option<Callback>,
    },
    Abandoned {
        queue: usize,
        call: u64,
        offered: Millis,
        ended: Millis,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Callback {
    pub promised: Millis,
    pub due: Millis,
    pub resolution: Resolution,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Resolution {
    Completed(Millis),
    Cancelled(Millis),
    /// Never completed: the monitor decides "missed" when due + expiry passes.
    Never,
}

impl Model {
    /// Every call of the simulation, queue by queue, in arrival order.
    pub fn stories(&self) -> Vec<Story> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let patience = Exp::new(1.0 / self.mean_patience_secs).expect("patience > 0");
        let talk = Exp::new(1.0 / self.mean_talk_secs).expect("talk > 0");
        let hold_len =
            LogNormal::new(self.hold_median_secs.ln(), 0.6).expect("valid hold distribution");
        let secs = |s: f64| (s * 1000.0).round() as Millis;
        let mut stories = Vec::new();
        let mut call = 0u64;
        for (qi, q) in self.queues.iter().enumerate() {
            let arrivals = Exp::new(q.calls_per_hour / 3_600.0).expect("rate > 0");
            // When each agent is next free; callers are served in arrival order.
            let mut free: BinaryHeap<Reverse<Millis>> =
                (0..q.agents.max(1)).map(|_| Reverse(self.start)).collect();
            let mut t = self.start;
            loop {
                t += secs(arrivals.sample(&mut rng)).max(1);
                if t >= self.start + self.duration {
                    break;
                }
                call += 1;
                let Reverse(agent_free) = *free.peek().expect("at least one agent");
                // The agent takes 1-8 s to pick up once free.
                let answer_at = t.max(agent_free) + secs(rng.random_range(1.0..8.0));
                let gives_up = t + secs(patience.sample(&mut rng)).max(1);
                if gives_up < answer_at {
                    stories.push(Story::Abandoned {
                        queue: qi,
                        call,
                        offered: t,
                        ended: gives_up,
                    });
                    continue;
                }
                free.pop();
                let mut now = answer_at + secs(talk.sample(&mut rng)).max(1_000);
                let mut holds = Vec::new();
                if rng.random_bool(self.hold_probability) {
                    let segments = rng.random_range(1..=2);
                    let mut at = answer_at + secs(rng.random_range(5.0..30.0));
                    for _ in 0..segments {
                        let len = secs(hold_len.sample(&mut rng)).max(500);
                        holds.push((at, at + len));
                        at += len + secs(rng.random_range(5.0..40.0));
                    }
                    now = now.max(at);
                }
                // One call in ten with a hold ends while the caller is still on it.
                let ends_on_hold = !holds.is_empty() && rng.random_bool(0.1);
                let ended = match holds.last() {
                    Some(&(_, end)) if ends_on_hold => end,
                    _ => now,
                };
                let transferred = rng.random_bool(0.03);
                let callback = rng.random_bool(self.callback_probability).then(|| {
                    let promised = ended - secs(rng.random_range(0.0..1.0)).min(ended - answer_at);
                    let due = promised + secs(rng.random_range(600.0..7_200.0));
                    let roll: f64 = rng.random();
                    let resolution = if roll < 0.75 {
                        Resolution::Completed(
                            promised + (due - promised) * rng.random_range(10..100) / 100,
                        )
                    } else if roll < 0.87 {
                        Resolution::Completed(due + secs(rng.random_range(1.0..14_400.0)))
                    } else if roll < 0.94 {
                        Resolution::Cancelled(promised + secs(rng.random_range(60.0..3_600.0)))
                    } else {
                        Resolution::Never
                    };
                    Callback {
                        promised,
                        due,
                        resolution,
                    }
                });
                free.push(Reverse(ended + secs(10.0))); // wrap-up
                stories.push(Story::Answered {
                    queue: qi,
                    call,
                    offered: t,
                    answered: answer_at,
                    holds,
                    ends_on_hold,
                    ended,
                    transferred,
                    callback,
                });
            }
        }
        stories
    }
}
