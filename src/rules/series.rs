//! Series: the bounded set of label values (`queue`, `site`) that events may
//! create, and the service limits that apply to each.
//!
//! Queue and site names come from the wire, so they are interned against a
//! cap: past `max_queues` distinct queues (or `max_sites` sites) an event is
//! folded into the value `other`, and the fold is reported, never silent.

use std::collections::HashMap;

use compact_str::CompactString;

use super::Limits;

/// Index of one (queue, site) pair; dense, starting at 0, never reused.
pub type SeriesId = u32;

/// The label value every folded queue or site is reported under.
pub const OTHER: &str = "other";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FoldedLabel {
    Queue,
    Site,
    Agent,
}

impl FoldedLabel {
    pub const ALL: [FoldedLabel; 3] = [FoldedLabel::Queue, FoldedLabel::Site, FoldedLabel::Agent];
}

impl FoldedLabel {
    pub fn as_str(self) -> &'static str {
        match self {
            FoldedLabel::Queue => "queue",
            FoldedLabel::Site => "site",
            FoldedLabel::Agent => "agent",
        }
    }
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct SeriesInfo {
    pub queue: CompactString,
    /// `None` when the events carry no site: the series has no `site` label.
    pub site: Option<CompactString>,
    pub limits: Limits,
}

/// What looking up a series did, so the caller can tell the metrics layer.
pub struct Lookup {
    pub id: SeriesId,
    pub created: bool,
    /// The labels folded into `other` for this lookup (queue, site or both).
    pub folded: Vec<FoldedLabel>,
}

#[derive(serde::Serialize, serde::Deserialize)]
pub struct SeriesTable {
    queues: Interner,
    sites: Interner,
    by_pair: HashMap<(u32, u32), SeriesId>,
    series: Vec<SeriesInfo>,
}

impl SeriesTable {
    pub fn new(max_queues: usize, max_sites: usize) -> Self {
        SeriesTable {
            queues: Interner::new(max_queues),
            sites: Interner::new(max_sites),
            by_pair: HashMap::new(),
            series: Vec::new(),
        }
    }

    /// After loading from a snapshot: current caps, and each series' limits
    /// as the current configuration gives them.
    pub(crate) fn restored(
        mut self,
        max_queues: usize,
        max_sites: usize,
        limits_for: impl Fn(&str) -> Limits,
    ) -> Self {
        self.queues = self.queues.restored(max_queues);
        self.sites = self.sites.restored(max_sites);
        for s in &mut self.series {
            s.limits = limits_for(&s.queue);
        }
        self
    }

    pub fn get(&self, id: SeriesId) -> &SeriesInfo {
        &self.series[id as usize]
    }

    pub fn all(&self) -> &[SeriesInfo] {
        &self.series
    }

    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// The series for `queue` (and `site`), creating it if new. `limits_for`
    /// resolves the limits of a queue name the first time it is seen.
    pub fn lookup(
        &mut self,
        queue: &str,
        site: Option<&str>,
        limits_for: impl Fn(&str) -> Limits,
    ) -> Lookup {
        let mut folded = Vec::new();
        let q = self.queues.intern(queue);
        if q.folded {
            folded.push(FoldedLabel::Queue);
        }
        let q = q.id;
        // Site index 0 is reserved for "no site".
        let s = match site {
            None => 0,
            Some(site) => {
                let s = self.sites.intern(site);
                if s.folded {
                    folded.push(FoldedLabel::Site);
                }
                s.id + 1
            }
        };
        if let Some(&id) = self.by_pair.get(&(q, s)) {
            return Lookup {
                id,
                created: false,
                folded,
            };
        }
        let id = self.series.len() as SeriesId;
        let queue_name = self.queues.name(q).clone();
        let site_name = (s > 0).then(|| self.sites.name(s - 1).clone());
        let limits = limits_for(&queue_name);
        self.series.push(SeriesInfo {
            queue: queue_name,
            site: site_name,
            limits,
        });
        self.by_pair.insert((q, s), id);
        Lookup {
            id,
            created: true,
            folded,
        }
    }
}

/// What interning a name did.
pub(crate) struct Interned {
    pub id: u32,
    pub created: bool,
    pub folded: bool,
}

/// Names to dense indexes, with `other` once the cap is reached.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct Interner {
    /// Rebuilt from `names` when a snapshot is loaded.
    #[serde(skip)]
    ids: HashMap<CompactString, u32>,
    names: Vec<CompactString>,
    /// Distinct values other than `other` itself; at most `max`.
    real: usize,
    max: usize,
}

impl Interner {
    pub(crate) fn new(max: usize) -> Self {
        Interner {
            ids: HashMap::new(),
            names: Vec::new(),
            real: 0,
            max,
        }
    }

    /// After loading from a snapshot: rebuild the index and take the cap
    /// of the current configuration (names already known stay known).
    pub(crate) fn restored(mut self, max: usize) -> Self {
        self.ids = (0..)
            .zip(&self.names)
            .map(|(i, n)| (n.clone(), i))
            .collect();
        self.max = max;
        self
    }

    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }

    pub(crate) fn name(&self, i: u32) -> &CompactString {
        &self.names[i as usize]
    }

    /// The index of `name`, or of `other` once `max` names are known.
    pub(crate) fn intern(&mut self, name: &str) -> Interned {
        let new = |id, folded| Interned {
            id,
            created: true,
            folded,
        };
        if let Some(&id) = self.ids.get(name) {
            return Interned {
                id,
                created: false,
                folded: false,
            };
        }
        if name == OTHER {
            return new(self.insert(name), false);
        }
        if self.real < self.max {
            self.real += 1;
            return new(self.insert(name), false);
        }
        match self.ids.get(OTHER) {
            Some(&id) => Interned {
                id,
                created: false,
                folded: true,
            },
            None => new(self.insert(OTHER), true),
        }
    }

    fn insert(&mut self, name: &str) -> u32 {
        let i = self.names.len() as u32;
        self.names.push(name.into());
        self.ids.insert(name.into(), i);
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(_: &str) -> Limits {
        Limits::default()
    }

    #[test]
    fn folds_past_the_cap_and_says_so() {
        let mut t = SeriesTable::new(2, 1);
        assert!(t.lookup("a", None, limits).created);
        assert!(!t.lookup("a", None, limits).created);
        let b = t.lookup("b", None, limits);
        assert!(b.folded.is_empty());
        let c = t.lookup("c", None, limits);
        assert_eq!(c.folded, vec![FoldedLabel::Queue]);
        assert_eq!(t.get(c.id).queue, OTHER);
        let d = t.lookup("d", None, limits);
        assert_eq!(d.id, c.id);
        assert_eq!(d.folded, vec![FoldedLabel::Queue]);
        // known queues still resolve to themselves
        assert!(t.lookup("a", None, limits).folded.is_empty());
    }

    #[test]
    fn sites_make_distinct_series_and_fold_too() {
        let mut t = SeriesTable::new(10, 1);
        let a = t.lookup("q", None, limits).id;
        let b = t.lookup("q", Some("east"), limits).id;
        assert_ne!(a, b);
        assert_eq!(t.get(b).site.as_deref(), Some("east"));
        let c = t.lookup("q", Some("west"), limits);
        assert_eq!(c.folded, vec![FoldedLabel::Site]);
        assert_eq!(t.get(c.id).site.as_deref(), Some(OTHER));
    }
}
