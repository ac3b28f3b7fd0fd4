//! `--verify`: every expected figure against a scrape of `/metrics`, printed
//! as a table per family and queue, with each difference spelled out.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::scrape::Samples;

pub struct Report {
    pub compared: usize,
    pub differences: Vec<String>,
    pub table: String,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.differences.is_empty()
    }
}

pub fn compare(expected: &[(String, f64)], actual: &Samples) -> Report {
    // family -> (compared, different)
    let mut rows: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut differences = Vec::new();
    for (selector, want) in expected {
        let family = selector.split('{').next().unwrap_or(selector).to_string();
        let row = rows.entry(family).or_default();
        row.0 += 1;
        match actual.get(selector) {
            Some(got) if got == *want => {}
            got => {
                row.1 += 1;
                let got = got.map_or("missing".to_string(), |g| g.to_string());
                differences.push(format!("{selector}: expected {want}, got {got}"));
            }
        }
    }
    let mut table = String::new();
    let _ = writeln!(table, "{:<44} {:>8} {:>6}", "family", "samples", "diff");
    for (family, (n, bad)) in &rows {
        let mark = if *bad == 0 { "ok" } else { "DIFF" };
        let _ = writeln!(table, "{family:<44} {n:>8} {bad:>6}  {mark}");
    }
    Report {
        compared: expected.len(),
        differences,
        table,
    }
}
