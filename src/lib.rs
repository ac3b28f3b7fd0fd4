//! ringwatch: watches call-center telephony in real time and measures the
//! three service rules (three rings, 17 seconds on hold, callbacks when
//! promised) as Prometheus metrics.
//!
//! Data flows top-down through the modules:
//! [`ingest`] (WebSocket transport, decoding) and [`sources`] (PBX adapters:
//! Asterisk AMI and queue_log, FreeSWITCH ESL) -> [`pipeline`] (the single
//! owner of state; it writes the [`durability`] journal before it applies)
//! -> [`rules`] (pure per-call state machine) -> [`metrics`] (recording,
//! rendering) -> [`http`] (exposure, with the [`wall`] board and its JSON). [`verdict`] is what the pipeline
//! answers a frame, [`clock`] the wall clock every layer reads, [`health`]
//! what `/readyz` says and the fatal failure that stops the daemon (with
//! test-only [`fault`] injection). [`daemon`] wires and supervises them;
//! [`config`], [`logging`] and [`shutdown`] serve the binary; [`auth`], [`tls`]
//! and [`reload`] guard the two listeners. [`config`] depends on the modules
//! it configures (it builds their settings types) and none of them on it.
//! Each subsystem registers its own self-metrics in its `metrics` submodule;
//! [`telemetry`] builds them all on one registry for the daemon.

pub mod alerts;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod durability;
pub mod event;
pub mod fault;
pub mod health;
pub mod http;
pub mod ingest;
pub mod logging;
pub mod metrics;
pub mod pipeline;
pub mod reload;
pub mod rules;
pub mod shutdown;
pub mod sim;
pub mod sources;
pub mod telemetry;
pub mod tls;
pub mod verdict;
pub mod wall;
