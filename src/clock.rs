//! The wall clock, in the event contract's unit (milliseconds since the Unix
//! epoch). Its own module because every layer reads it (pipeline, alerts,
//! ingest, durability) and none of them should import another for it.

use crate::event::Millis;

/// Wall-clock milliseconds since the Unix epoch (0 if the clock is before it).
pub fn wall_now() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}
