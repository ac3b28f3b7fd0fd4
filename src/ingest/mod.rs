//! Ingest: getting events in. Transport (the WebSocket server) and decoding
//! (frame to validated events) live here; what the events mean does not.

pub mod ack;
pub mod decode;
pub mod frame;
pub mod server;
pub mod throttle;
