//! Logs via tracing-subscriber: human or JSON lines on stderr; the level comes
//! from `RUST_LOG` when set, else from `log.level`. Nothing at info level
//! carries caller or customer data (the decoder drops those fields). Owns the
//! log settings ([`LogSettings`]) that `[log]` is validated into.

use std::io::IsTerminal;

use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

/// `[log]`, validated.
#[derive(Clone, Debug)]
pub struct LogSettings {
    /// A tracing filter (`info`, `info,ringwatch=debug`), known to parse.
    pub level: String,
    pub format: LogFormat,
}

pub fn init(cfg: &LogSettings) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cfg.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match cfg.format {
        LogFormat::Human => builder.finish().with(no_payloads()).init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .finish()
            .with(no_payloads())
            .init(),
    }
}

/// The WebSocket library logs whole frames at trace level, and frames carry
/// caller and customer data: its trace lines are dropped whatever the filter
/// says, so no level ever logs personal data. Its debug lines stay.
fn no_payloads<S: tracing::Subscriber>() -> impl tracing_subscriber::Layer<S> {
    filter_fn(|m| {
        *m.level() != tracing::Level::TRACE
            || !["tungstenite", "tokio_tungstenite"]
                .iter()
                .any(|t| m.target().starts_with(t))
    })
}

/// Lets a log line through at most once per interval, and says how many
/// were held back in between: for warnings a peer can provoke at will
/// (connection floods, throttled senders), so the log stays readable and
/// cheap whatever the peer does. Shared by reference between tasks.
///
/// ```
/// # use std::time::Duration;
/// # use ringwatch::logging::RateLimited;
/// let over_cap = RateLimited::new(Duration::from_secs(10));
/// if let Some(suppressed) = over_cap.check() {
///     tracing::warn!(suppressed, "connection refused: over the limit");
/// }
/// ```
#[derive(Debug)]
pub struct RateLimited {
    interval: std::time::Duration,
    state: std::sync::Mutex<RateState>,
}

#[derive(Debug)]
struct RateState {
    next: Option<std::time::Instant>,
    suppressed: u64,
}

impl RateLimited {
    pub fn new(interval: std::time::Duration) -> Self {
        RateLimited {
            interval,
            state: std::sync::Mutex::new(RateState {
                next: None,
                suppressed: 0,
            }),
        }
    }

    /// `Some(n)` when a line may be logged now (`n` lines were held back
    /// since the last one); `None` to stay quiet.
    pub fn check(&self) -> Option<u64> {
        self.check_at(std::time::Instant::now())
    }

    fn check_at(&self, now: std::time::Instant) -> Option<u64> {
        // A poisoned lock only means another thread panicked mid-update of
        // two integers: the state is still usable.
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match s.next {
            Some(next) if now < next => {
                s.suppressed += 1;
                None
            }
            _ => {
                s.next = Some(now + self.interval);
                Some(std::mem::take(&mut s.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn once_per_interval_with_the_count_held_back() {
        let r = RateLimited::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(r.check_at(t0), Some(0));
        for s in 1..=5 {
            assert_eq!(r.check_at(t0 + Duration::from_secs(s)), None);
        }
        assert_eq!(r.check_at(t0 + Duration::from_millis(9_999)), None);
        assert_eq!(r.check_at(t0 + Duration::from_secs(10)), Some(6));
        assert_eq!(r.check_at(t0 + Duration::from_secs(11)), None);
        assert_eq!(r.check_at(t0 + Duration::from_secs(30)), Some(1));
    }
}
