//! The wall's files, embedded in the binary at build time: plain HTML, CSS
//! and JavaScript under `src/wall/`, no build step and no URL elsewhere (a
//! wall screen may have no internet).

pub const WALL_HTML: &str = include_str!("wall.html");
pub const WALL_CSS: &str = include_str!("wall.css");
pub const WALL_JS: &str = include_str!("wall.js");
pub const SIGNIN_HTML: &str = include_str!("signin.html");
pub const SIGNIN_JS: &str = include_str!("signin.js");

#[cfg(test)]
mod tests {
    use super::*;

    /// Nothing is loaded from another host: every `src`/`href` is a path
    /// of the daemon's own, and no `url(` or `@import` in the styles.
    #[test]
    fn assets_load_nothing_from_elsewhere() {
        for (name, text) in [
            ("wall.html", WALL_HTML),
            ("signin.html", SIGNIN_HTML),
            ("wall.css", WALL_CSS),
            ("wall.js", WALL_JS),
            ("signin.js", SIGNIN_JS),
        ] {
            for needle in ["src=\"", "href=\""] {
                for part in text.split(needle).skip(1) {
                    assert!(
                        part.starts_with('/'),
                        "{name}: {needle}{}",
                        &part[..20.min(part.len())]
                    );
                }
            }
            assert!(!text.contains("url("), "{name}");
            assert!(!text.contains("@import"), "{name}");
            assert!(
                !text.contains("//cdn") && !text.contains("https://"),
                "{name}"
            );
        }
    }
}
