//! Ingest: getting events in. Transport (the WebSocket server) and decoding
//! (frame to validated events) live here; what the events mean does not.
//! Each source has its own module: [`server`] (senders connect to us) and
//! [`client`] (we connect out to platforms); both go through [`frame`], and
//! keep their frames in flight in a [`window`].

pub mod ack;
pub mod client;
pub mod decode;
pub mod ending;
pub mod frame;
pub mod metrics;
pub mod server;
pub mod throttle;
pub mod window;
