//! Test-only fault injection, compiled into debug builds only: the
//! `RINGWATCH_FAULT` environment variable makes chosen points fail so that
//! tests can watch the daemon handle a panic, a full disk or a failed fsync.
//! Release builds ignore the variable and [`hit`] is always false.
//!
//! Syntax: a comma-separated list of `point@from` or `point@from..to`
//! (1-based, inclusive; `from..` for every hit from `from` on), where a point
//! counts each time the code passes it. Example:
//! `RINGWATCH_FAULT=journal_write@3..5,journal_sync@10..`.

/// Where a fault can be injected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Point {
    /// The pipeline panics while handling a frame.
    PipelinePanic,
    /// A journal write fails as on a full disk (ENOSPC).
    JournalWrite,
    /// A journal fsync fails (EIO).
    JournalSync,
    /// The journal's writer thread panics on a write.
    WriterPanic,
    /// Recovery panics replaying a frame (a frame that panics the engine).
    ReplayPanic,
}

impl Point {
    #[cfg(debug_assertions)]
    const ALL: [Point; 5] = [
        Point::PipelinePanic,
        Point::JournalWrite,
        Point::JournalSync,
        Point::WriterPanic,
        Point::ReplayPanic,
    ];

    #[cfg(debug_assertions)]
    fn name(self) -> &'static str {
        match self {
            Point::PipelinePanic => "pipeline_panic",
            Point::JournalWrite => "journal_write",
            Point::JournalSync => "journal_sync",
            Point::WriterPanic => "writer_panic",
            Point::ReplayPanic => "replay_panic",
        }
    }
}

/// Whether the fault at `point` fires this time.
#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn hit(_point: Point) -> bool {
    false
}

#[cfg(debug_assertions)]
pub fn hit(point: Point) -> bool {
    imp::hit(point)
}

#[cfg(debug_assertions)]
mod imp {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;

    use super::Point;

    struct Plan {
        /// Per point: the inclusive hit ranges that fail.
        ranges: Vec<(Point, u64, u64)>,
        counts: [AtomicU64; 5],
    }

    fn plan() -> &'static Plan {
        static PLAN: OnceLock<Plan> = OnceLock::new();
        PLAN.get_or_init(|| {
            let spec = std::env::var("RINGWATCH_FAULT").unwrap_or_default();
            Plan {
                ranges: super::parse(&spec),
                counts: Default::default(),
            }
        })
    }

    pub fn hit(point: Point) -> bool {
        let plan = plan();
        if plan.ranges.is_empty() {
            return false;
        }
        let n = plan.counts[point as usize].fetch_add(1, Ordering::Relaxed) + 1;
        plan.ranges
            .iter()
            .any(|&(p, from, to)| p == point && (from..=to).contains(&n))
    }
}

/// The ranges of a `RINGWATCH_FAULT` value; unknown entries are ignored.
#[cfg(debug_assertions)]
fn parse(spec: &str) -> Vec<(Point, u64, u64)> {
    spec.split(',')
        .filter_map(|entry| {
            let (name, range) = entry.trim().split_once('@')?;
            let point = Point::ALL.into_iter().find(|p| p.name() == name)?;
            let (from, to) = match range.split_once("..") {
                Some((from, "")) => (from.parse().ok()?, u64::MAX),
                Some((from, to)) => (from.parse().ok()?, to.parse().ok()?),
                None => {
                    let at = range.parse().ok()?;
                    (at, at)
                }
            };
            Some((point, from, to))
        })
        .collect()
}

#[cfg(all(test, debug_assertions))]
mod tests {
    use super::*;

    #[test]
    fn parses_points_and_ranges() {
        assert_eq!(
            parse("journal_write@3..5, journal_sync@10..,pipeline_panic@2,bogus@1,journal_sync"),
            vec![
                (Point::JournalWrite, 3, 5),
                (Point::JournalSync, 10, u64::MAX),
                (Point::PipelinePanic, 2, 2),
            ]
        );
        assert!(parse("").is_empty());
    }
}
