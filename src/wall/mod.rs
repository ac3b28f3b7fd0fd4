//! The wallboard: `GET /wall` (a page served from the binary, every asset
//! embedded), the same figures as JSON (`GET /api/v1/queues`) and as a
//! stream of one JSON document per second (`GET /api/v1/stream`,
//! Server-Sent Events), and the landing page `GET /`. The figures are read
//! from a pipeline snapshot like a scrape (never journaled); the windows
//! behind "today", "last 15 minutes" and the hourly chart are kept by the
//! metrics store (`metrics::windows`). `docs/wall.md` is the user's side.

pub mod assets;
pub mod feed;
pub mod figures;
pub mod routes;
pub mod session;

pub use routes::{router, WallState};

/// `[wall]`, validated: the time zone "today" is counted in, and whether
/// the session cookie is marked `Secure` (the HTTP listener has TLS).
#[derive(Clone, Debug)]
pub struct WallSettings {
    name: String,
    zone: jiff::tz::TimeZone,
    pub secure_cookie: bool,
}

impl WallSettings {
    pub fn new(name: &str, zone: jiff::tz::TimeZone) -> Self {
        WallSettings {
            name: name.to_string(),
            zone,
            secure_cookie: false,
        }
    }

    /// Mark the session cookie `Secure` (the HTTP listener has TLS).
    pub fn secure(mut self, tls: bool) -> Self {
        self.secure_cookie = tls;
        self
    }

    /// The configured IANA name.
    pub fn timezone(&self) -> &str {
        &self.name
    }

    pub fn zone(&self) -> &jiff::tz::TimeZone {
        &self.zone
    }
}

impl Default for WallSettings {
    fn default() -> Self {
        WallSettings::new("UTC", jiff::tz::TimeZone::UTC)
    }
}
