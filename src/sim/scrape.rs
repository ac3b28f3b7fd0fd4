//! Reading a Prometheus text exposition back: the simulator's `--verify`, the
//! demo's status line and the end-to-end tests all compare figures this way.

use std::collections::BTreeMap;

/// Samples of a Prometheus text exposition, keyed by name and sorted labels.
#[derive(Debug, Default)]
pub struct Samples(pub BTreeMap<String, f64>);

impl Samples {
    /// Parse samples (comments and blank lines skipped); the error names
    /// the first line that is not `selector value`.
    pub fn parse(text: &str) -> Result<Samples, String> {
        let mut map = BTreeMap::new();
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let bad = || format!("not a sample line: {line:?}");
            let (selector, value) = line.rsplit_once(' ').ok_or_else(bad)?;
            let value = match value {
                "NaN" => f64::NAN,
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().map_err(|_| bad())?,
            };
            map.insert(normalize(selector), value);
        }
        Ok(Samples(map))
    }

    pub fn get(&self, selector: &str) -> Option<f64> {
        self.0.get(&normalize(selector)).copied()
    }

    /// The value, or a panic that names the selector.
    pub fn value(&self, selector: &str) -> f64 {
        self.get(selector)
            .unwrap_or_else(|| panic!("no sample {selector}"))
    }
}

/// `name{b="2",a="1"}` -> `name{a="1",b="2"}` (label order does not matter),
/// and `le`/`quantile` values in the float form Prometheus 3 stores
/// (`le="18"` -> `le="18.0"`), so a selector matches whichever form it and
/// the exposition are written in, as it would in Prometheus 3.
pub fn normalize(selector: &str) -> String {
    let Some((name, rest)) = selector.split_once('{') else {
        return selector.trim().to_string();
    };
    let body = rest.trim_end_matches('}');
    let mut labels = Vec::new();
    let mut cur = String::new();
    let mut in_quotes = false;
    let mut escaped = false;
    for ch in body.chars() {
        match ch {
            _ if escaped => {
                cur.push(ch);
                escaped = false;
                continue;
            }
            '\\' => escaped = true,
            '"' => in_quotes = !in_quotes,
            ',' if !in_quotes => {
                labels.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(ch);
    }
    if !cur.is_empty() {
        labels.push(cur);
    }
    let mut labels: Vec<String> = labels.into_iter().map(|l| float_form(l.trim())).collect();
    labels.sort();
    format!("{}{{{}}}", name.trim(), labels.join(","))
}

/// `le="18"` -> `le="18.0"`; any other label as it is.
fn float_form(label: &str) -> String {
    let number = ["le=\"", "quantile=\""].iter().find_map(|k| {
        let v = label.strip_prefix(k)?.strip_suffix('"')?;
        let f = match v {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse::<f64>().ok()?,
        };
        Some((&label[..k.len()], f))
    });
    match number {
        Some((k, f)) => format!(
            "{k}{}\"",
            crate::metrics::openmetrics::label_float_string(f)
        ),
        None => label.to_string(),
    }
}
