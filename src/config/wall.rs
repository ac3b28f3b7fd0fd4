//! `[wall]`: the wallboard's time zone (what "today" means on the page and
//! in `/api/v1/queues`).

use serde::Deserialize;

use super::{invalid, ConfigError};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WallConfig {
    pub timezone: String,
}

impl WallConfig {
    pub(super) fn validate(&self) -> Result<crate::wall::WallSettings, ConfigError> {
        let name = self.timezone.trim();
        let zone = jiff::tz::TimeZone::get(name).map_err(|_| {
            invalid(
                "wall.timezone",
                format!(
                    "{:?} is not a time zone name like \"UTC\" or \"Europe/Paris\" (IANA time zone database)",
                    self.timezone
                ),
            )
        })?;
        Ok(crate::wall::WallSettings::new(name, zone))
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{error, validate};

    #[test]
    fn timezone_default_names_and_errors() {
        assert_eq!(validate(&[]).unwrap().wall.timezone(), "UTC");
        let v = validate(&[("RINGWATCH__WALL__TIMEZONE", "Asia/Kathmandu")]).unwrap();
        assert_eq!(v.wall.timezone(), "Asia/Kathmandu");
        let e = error(&[("RINGWATCH__WALL__TIMEZONE", "Mars/Olympus")]);
        assert!(
            e.contains("wall.timezone") && e.contains("Mars/Olympus"),
            "{e}"
        );
    }
}
