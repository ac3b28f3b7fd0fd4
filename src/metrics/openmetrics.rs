//! The two exposition formats of `/metrics` and how a scraper picks one:
//! content negotiation on `Accept` (the Prometheus text format unless
//! OpenMetrics is asked for explicitly), and what OpenMetrics 1.0 names
//! differently (a counter's family name has no `_total`, `# UNIT` comes from
//! the name's unit suffix). Also the float form of `le` and `quantile` label
//! values that both formats share. Pure functions of their input.

use std::fmt::Write;

/// An exposition format `/metrics` speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// Prometheus text format 0.0.4: the default.
    Text,
    /// OpenMetrics 1.0.0 text.
    OpenMetrics,
}

pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

impl Format {
    pub const ALL: [Format; 2] = [Format::Text, Format::OpenMetrics];

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => TEXT_CONTENT_TYPE,
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
        }
    }

    /// The format an `Accept` header asks for (`None`: no header).
    ///
    /// OpenMetrics only when it is named (`application/openmetrics-text`,
    /// version 1.0.0, 0.0.1 or none) with a quality above 0 and at least that
    /// of the text format (`text/plain`, `text/*` or `*/*`): Prometheus 2 asks
    /// `openmetrics-text;version=1.0.0,...,text/plain;version=0.0.4;q=0.5`.
    /// Anything else, even a header naming neither, gets the text format:
    /// refusing with 406 would only break a scraper that would have read it.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Text;
        };
        let (mut om, mut text) = (0.0_f64, 0.0_f64);
        for range in accept.split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let mut q = 1.0;
            let mut version = None;
            let mut malformed = false;
            for param in parts {
                let Some((k, v)) = param.split_once('=') else {
                    continue;
                };
                let v = v.trim().trim_matches('"');
                match k.trim().to_ascii_lowercase().as_str() {
                    "q" => match v.parse::<f64>() {
                        Ok(x) if (0.0..=1.0).contains(&x) => q = x,
                        _ => malformed = true,
                    },
                    "version" => version = Some(v.to_string()),
                    _ => {}
                }
            }
            if malformed {
                continue;
            }
            match media.as_str() {
                "application/openmetrics-text"
                    if matches!(version.as_deref(), None | Some("1.0.0" | "0.0.1")) =>
                {
                    om = om.max(q)
                }
                "text/plain" | "text/*" | "*/*" => text = text.max(q),
                _ => {}
            }
        }
        if om > 0.0 && om >= text {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }
}

/// The name a family goes by in `# HELP`/`# TYPE`/`# UNIT`: OpenMetrics
/// names a counter without the `_total` its samples carry.
pub fn family_name<'a>(format: Format, name: &'a str, kind: &str) -> &'a str {
    match format {
        Format::OpenMetrics if kind == "counter" => name.strip_suffix("_total").unwrap_or(name),
        _ => name,
    }
}

/// The unit of an OpenMetrics family name (already without `_total`): the
/// base units ringwatch and the process collector use, when the name ends
/// with one.
pub fn unit(family: &str) -> Option<&'static str> {
    ["seconds", "bytes"].into_iter().find(|u| {
        family
            .strip_suffix(u)
            .is_some_and(|rest| rest.ends_with('_'))
    })
}

/// An `le` or `quantile` label value in the form Prometheus 3 stores it
/// (and OpenMetrics calls canonical): Go's `strconv.FormatFloat(v, 'g', -1,
/// 64)`, with `.0` appended when that has neither `.` nor `e`. So `18.0`,
/// `0.5`, `17.5`, `1e+06`, `+Inf`. Prometheus 2 keeps the text as exposed, so
/// rules written with this form work on both.
pub fn label_float(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
        return;
    }
    if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
        return;
    }
    if v == 0.0 {
        // Go's case `f == 0` covers -0 too.
        out.push_str("0.0");
        return;
    }
    // Rust's `{:e}` has the shortest digits that read back as `v`, as Go's
    // precision -1 does; only the layout differs.
    let sci = format!("{v:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    // Go's 'g' with the shortest precision: exponent form below 1e-4 and
    // from 1e6 up (the fixed 6 of `strconv`'s shortest case).
    if !(-4..6).contains(&exp) {
        let _ = write!(
            out,
            "{mantissa}e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.unsigned_abs()
        );
        return;
    }
    let start = out.len();
    let _ = write!(out, "{v}");
    if !out[start..].contains('.') {
        out.push_str(".0");
    }
}

/// [`label_float`] as a new string.
pub fn label_float_string(v: f64) -> String {
    let mut s = String::new();
    label_float(&mut s, v);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn label_floats_as_prometheus_3_stores_them() {
        let cases: [(f64, &str); 22] = [
            (18.0, "18.0"),
            (0.5, "0.5"),
            (17.5, "17.5"),
            (1.0, "1.0"),
            (-1.0, "-1.0"),
            (0.0, "0.0"),
            (-0.0, "0.0"),
            (0.005, "0.005"),
            (0.0025, "0.0025"),
            (0.99, "0.99"),
            (3600.0, "3600.0"),
            (123456.0, "123456.0"),
            (999999.5, "999999.5"),
            (1e6, "1e+06"),
            (2.5e6, "2.5e+06"),
            (1234567.0, "1.234567e+06"),
            (1e21, "1e+21"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
        ];
        for (v, want) in cases {
            assert_eq!(label_float_string(v), want, "{v}");
        }
        assert_eq!(label_float_string(f64::NAN), "NaN");
        assert_eq!(label_float_string(1e100), "1e+100");
        assert_eq!(label_float_string(-2.5e-300), "-2.5e-300");
    }

    proptest! {
        /// Reads back as the same number, and never as a bare integer
        /// (which Prometheus 3 would store differently from how it is
        /// exposed).
        #[test]
        fn label_floats_read_back(v in proptest::num::f64::NORMAL | proptest::num::f64::ZERO | proptest::num::f64::SUBNORMAL) {
            let s = label_float_string(v);
            let back: f64 = s.parse().unwrap();
            prop_assert!(back == v, "{v} -> {s}");
            prop_assert!(s.contains('.') || s.contains('e'), "{s}");
        }

        #[test]
        fn negotiation_takes_any_header(accept in ".{0,200}") {
            let _ = Format::negotiate(Some(&accept));
        }
    }

    #[test]
    fn negotiation() {
        let om = Format::OpenMetrics;
        let text = Format::Text;
        let cases: [(Option<&str>, Format); 16] = [
            (None, text),
            (Some(""), text),
            (Some("*/*"), text),
            (Some("text/plain"), text),
            (Some("application/json"), text),
            (Some("application/openmetrics-text"), om),
            (Some("application/openmetrics-text; version=1.0.0"), om),
            (Some("Application/OpenMetrics-Text;Version=\"0.0.1\""), om),
            (Some("application/openmetrics-text; version=2.0.0"), text),
            (Some("application/openmetrics-text;q=0"), text),
            (Some("application/openmetrics-text;q=nope"), text),
            (Some("application/openmetrics-text;q=0.5, text/plain"), text),
            (Some("text/plain;q=0.5, application/openmetrics-text"), om),
            // Prometheus 2.42's own header.
            (Some("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"), om),
            // Prometheus 3's default scrape_protocols.
            (Some("application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1"), om),
            // Prometheus 3 with scrape_protocols: [PrometheusText0.0.4].
            (Some("text/plain;version=0.0.4,*/*;q=0.1"), text),
        ];
        for (accept, want) in cases {
            assert_eq!(Format::negotiate(accept), want, "{accept:?}");
        }
    }

    #[test]
    fn names_and_units() {
        let om = Format::OpenMetrics;
        assert_eq!(family_name(om, "a_total", "counter"), "a");
        assert_eq!(family_name(om, "a_total", "gauge"), "a_total");
        assert_eq!(family_name(Format::Text, "a_total", "counter"), "a_total");
        assert_eq!(unit("process_cpu_seconds"), Some("seconds"));
        assert_eq!(unit("ringwatch_recovery_cut_bytes"), Some("bytes"));
        assert_eq!(unit("ringwatch_dedup_ids"), None);
        assert_eq!(unit("seconds"), None);
        assert_eq!(unit("ringwatch_xseconds"), None);
    }
}
