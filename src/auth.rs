//! Bearer-token authentication of the ingest and `/metrics` listeners: named
//! tokens, one per source, read from a file (never from the configuration
//! itself), kept only as SHA-256 digests, compared in constant time, and
//! swapped in whole on reload so one leaked token is revoked without a restart.
//!
//! A token never leaves this module: not in errors, not in `Debug`, not in
//! logs. Only the source's name does.

pub mod metrics;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::http::header::AUTHORIZATION;
use axum::http::HeaderMap;
use ring::digest::{digest, SHA256};
use subtle::ConstantTimeEq;
use tokio::sync::watch;

/// Most sources one token file may name: the source name is a metric label,
/// and label values must stay bounded.
pub const MAX_SOURCES: usize = 1000;
/// Shortest accepted token. Tokens are meant to be random (`openssl rand
/// -hex 32`); anything shorter than this is a password, not a token.
pub const TOKEN_MIN: usize = 16;
pub const TOKEN_MAX: usize = 4096;
pub const NAME_MAX: usize = 64;

/// Which listener a token file guards (the `listener` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    Ingest,
    Http,
}

impl Listener {
    pub const ALL: [Listener; 2] = [Listener::Ingest, Listener::Http];

    pub fn as_str(self) -> &'static str {
        match self {
            Listener::Ingest => "ingest",
            Listener::Http => "http",
        }
    }
}

/// Why a request was refused (the `reason` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// No `Authorization` header.
    Missing,
    /// An `Authorization` header that is not one `Bearer <token>`.
    Malformed,
    /// A bearer token that no source has (wrong, or revoked).
    Invalid,
}

impl Failure {
    pub const ALL: [Failure; 3] = [Failure::Missing, Failure::Malformed, Failure::Invalid];

    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Missing => "missing",
            Failure::Malformed => "malformed",
            Failure::Invalid => "invalid",
        }
    }

    /// The `WWW-Authenticate` challenge (RFC 6750 section 3).
    pub fn challenge(self) -> &'static str {
        match self {
            Failure::Missing => r#"Bearer realm="ringwatch""#,
            Failure::Malformed => r#"Bearer realm="ringwatch", error="invalid_request""#,
            Failure::Invalid => r#"Bearer realm="ringwatch", error="invalid_token""#,
        }
    }

    /// The body of the 401 response.
    pub fn message(self) -> &'static str {
        match self {
            Failure::Missing => {
                "a bearer token is required: send `Authorization: Bearer <token>`\n"
            }
            Failure::Malformed => "the Authorization header must be exactly one `Bearer <token>`\n",
            Failure::Invalid => "the bearer token is not valid (wrong or revoked)\n",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("cannot read token file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    // The message quotes nothing from the file, not even a name: a line
    // with its fields swapped has the token where the name should be.
    #[error("token file {} line {line}: {message}", path.display())]
    Line {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("token file {} names more than {MAX_SOURCES} sources", path.display())]
    TooMany { path: PathBuf },
}

/// One source: its name and the digest of its token.
pub struct Source {
    name: Arc<str>,
    digest: [u8; 32],
}

impl Source {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A MAC of `message` keyed by this source's token digest (the wall's
    /// session ids): only someone who knows the token can make one, and
    /// none verifies once the token is revoked or changed.
    pub fn tag(&self, message: &[u8]) -> [u8; 32] {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.digest);
        let mut ctx = ring::hmac::Context::with_key(&key);
        ctx.update(self.name.as_bytes());
        ctx.update(&[0]);
        ctx.update(message);
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Source").field("name", &self.name).finish()
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, bytes).as_ref());
    out
}

/// Every source of one token file.
#[derive(Clone, Debug, Default)]
pub struct TokenSet {
    sources: Vec<Arc<Source>>,
}

impl TokenSet {
    /// Parse a token file: one source per line, `NAME TOKEN` separated by
    /// spaces or tabs; blank lines and lines starting with `#` are skipped.
    /// Names are 1 to 64 of `A-Z a-z 0-9 _ . -`; tokens are 16 to 4096
    /// characters of RFC 6750's token alphabet (`A-Z a-z 0-9 - . _ ~ + /`,
    /// then optional `=` padding).
    pub fn parse(text: &str, path: &Path) -> Result<TokenSet, TokenFileError> {
        let mut sources: Vec<(usize, Arc<Source>)> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line_no = n + 1;
            let err = |message: String| TokenFileError::Line {
                path: path.to_path_buf(),
                line: line_no,
                message,
            };
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split_ascii_whitespace().collect();
            let [name, token] = fields[..] else {
                return Err(err(format!(
                    "expected `NAME TOKEN` (two fields), found {} field(s)",
                    fields.len()
                )));
            };
            if !valid_name(name) {
                return Err(err(format!(
                    "the source name must be 1 to {NAME_MAX} of A-Z a-z 0-9 _ . -"
                )));
            }
            let len = token.chars().count();
            if !(TOKEN_MIN..=TOKEN_MAX).contains(&len) {
                return Err(err(format!(
                    "the token must be {TOKEN_MIN} to {TOKEN_MAX} characters, got {len}"
                )));
            }
            if !valid_token(token) {
                return Err(err(
                    "the token has a character outside A-Z a-z 0-9 - . _ ~ + / (and trailing =)"
                        .to_string(),
                ));
            }
            let source = Arc::new(Source {
                name: Arc::from(name),
                digest: sha256(token.as_bytes()),
            });
            for (other_line, other) in &sources {
                if other.name == source.name {
                    return Err(err(format!(
                        "the source name is already used on line {other_line}"
                    )));
                }
                if other.digest == source.digest {
                    return Err(err(format!(
                        "the token is already used on line {other_line}: give every source its own"
                    )));
                }
            }
            sources.push((line_no, source));
            if sources.len() > MAX_SOURCES {
                return Err(TokenFileError::TooMany {
                    path: path.to_path_buf(),
                });
            }
        }
        Ok(TokenSet {
            sources: sources.into_iter().map(|(_, s)| s).collect(),
        })
    }

    pub fn load(path: &Path) -> Result<TokenSet, TokenFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokenFileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        TokenSet::parse(&text, path)
    }

    pub fn len(&self) -> usize {
        self.sources.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    pub fn sources(&self) -> impl Iterator<Item = &Arc<Source>> {
        self.sources.iter()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.sources.iter().map(|s| s.name())
    }

    /// The source whose token this is. The presented token is hashed first,
    /// so every comparison is between two 32-byte digests: constant time,
    /// and independent of the token's length or of where it differs.
    pub fn find(&self, token: &[u8]) -> Option<Arc<Source>> {
        let presented = sha256(token);
        let mut found = None;
        for s in &self.sources {
            if bool::from(s.digest[..].ct_eq(&presented[..])) {
                found = Some(Arc::clone(s));
            }
        }
        found
    }

    /// Whether `source` (admitted under an earlier set) still holds: same
    /// name, same token.
    pub fn admits(&self, source: &Source) -> bool {
        self.sources
            .iter()
            .any(|s| s.name == source.name && bool::from(s.digest[..].ct_eq(&source.digest[..])))
    }
}

fn valid_name(name: &str) -> bool {
    (1..=NAME_MAX).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn valid_token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
}

/// A token file named by the configuration, with what it held when the
/// configuration was validated.
#[derive(Clone, Debug)]
pub struct TokenFile {
    pub path: PathBuf,
    pub tokens: TokenSet,
}

impl TokenFile {
    pub fn load(path: &Path) -> Result<TokenFile, TokenFileError> {
        Ok(TokenFile {
            path: path.to_path_buf(),
            tokens: TokenSet::load(path)?,
        })
    }
}

/// What a reload changed, by source name.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reloaded {
    pub sources: usize,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Kept their name but got a new token.
    pub changed: Vec<String>,
}

struct Guarded {
    listener: Listener,
    path: PathBuf,
    current: watch::Sender<Arc<TokenSet>>,
}

/// The authentication of one listener: open (no token file configured), or
/// the current token set of its file. Cheap to clone; clones share reloads.
#[derive(Clone)]
pub struct Auth {
    guarded: Option<Arc<Guarded>>,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.guarded {
            None => f.write_str("Auth(open)"),
            Some(g) => write!(
                f,
                "Auth({}: {} sources from {})",
                g.listener.as_str(),
                g.current.borrow().len(),
                g.path.display()
            ),
        }
    }
}

impl Auth {
    /// Anyone may connect.
    pub fn open() -> Auth {
        Auth { guarded: None }
    }

    /// `None` is open; a token file guards the listener, even when it names
    /// no source (then nobody gets in: revoking every token must not open
    /// the door).
    pub fn new(listener: Listener, file: Option<&TokenFile>) -> Auth {
        Auth {
            guarded: file.map(|f| {
                Arc::new(Guarded {
                    listener,
                    path: f.path.clone(),
                    current: watch::Sender::new(Arc::new(f.tokens.clone())),
                })
            }),
        }
    }

    pub fn is_open(&self) -> bool {
        self.guarded.is_none()
    }

    /// `Ok(None)` when open, `Ok(Some(source))` for a valid token.
    pub fn check(&self, headers: &HeaderMap) -> Result<Option<Arc<Source>>, Failure> {
        let Some(g) = &self.guarded else {
            return Ok(None);
        };
        let token = bearer(headers)?;
        let tokens = g.current.borrow();
        tokens.find(token).map(Some).ok_or(Failure::Invalid)
    }

    /// The current token set, and a way to hear of the next one (for
    /// connections that must end when their token is revoked).
    pub fn subscribe(&self) -> Option<watch::Receiver<Arc<TokenSet>>> {
        self.guarded.as_ref().map(|g| g.current.subscribe())
    }

    /// Source names of the current set (empty when open).
    pub fn source_names(&self) -> Vec<String> {
        match &self.guarded {
            None => Vec::new(),
            Some(g) => g.current.borrow().names().map(str::to_string).collect(),
        }
    }

    pub fn path(&self) -> Option<&Path> {
        self.guarded.as_ref().map(|g| g.path.as_path())
    }

    /// Read the file again and switch to it, or keep the current set when
    /// the file is bad. `None` when open (nothing to reload).
    pub fn reload(&self) -> Option<Result<Reloaded, TokenFileError>> {
        let g = self.guarded.as_ref()?;
        Some(TokenSet::load(&g.path).map(|new| {
            let old = g.current.borrow().clone();
            let had = |name: &str| old.sources.iter().find(|s| &*s.name == name);
            let mut r = Reloaded {
                sources: new.len(),
                ..Reloaded::default()
            };
            for s in &new.sources {
                match had(&s.name) {
                    None => r.added.push(s.name.to_string()),
                    Some(o) if o.digest != s.digest => r.changed.push(s.name.to_string()),
                    Some(_) => {}
                }
            }
            r.removed = old
                .names()
                .filter(|n| !new.sources.iter().any(|s| &*s.name == *n))
                .map(str::to_string)
                .collect();
            g.current.send_replace(Arc::new(new));
            r
        }))
    }
}

/// The token of the request's single `Authorization: Bearer <token>` header.
/// The scheme is case-insensitive (RFC 7235); the token is taken as is.
fn bearer(headers: &HeaderMap) -> Result<&[u8], Failure> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let value = values.next().ok_or(Failure::Missing)?;
    if values.next().is_some() {
        return Err(Failure::Malformed);
    }
    let v = value.as_bytes();
    let (scheme, rest) = v.split_at(
        v.iter()
            .position(|&b| b == b' ')
            .ok_or(Failure::Malformed)?,
    );
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Err(Failure::Malformed);
    }
    let token = rest.trim_ascii();
    if token.is_empty() || token.iter().any(|b| b.is_ascii_whitespace()) {
        return Err(Failure::Malformed);
    }
    Ok(token)
}

/// Startup warnings about a listener reachable from other hosts without
/// tokens, or whose tokens would cross the network in clear text.
pub fn warn_if_exposed(listener: Listener, addr: std::net::SocketAddr, auth: &Auth, tls: bool) {
    if addr.ip().is_loopback() {
        return;
    }
    if auth.is_open() {
        if listener == Listener::Ingest {
            tracing::warn!(
                %addr,
                "ingest listens beyond loopback without tokens: anyone who reaches it can send events (set ingest.tokens_file)"
            );
        }
    } else if !tls {
        tracing::warn!(
            listener = listener.as_str(),
            %addr,
            "bearer tokens are required but TLS is off: tokens cross the network in clear text (set tls_cert_file and tls_key_file)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn parse(text: &str) -> Result<TokenSet, String> {
        TokenSet::parse(text, Path::new("tokens")).map_err(|e| e.to_string())
    }

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn parses_names_tokens_comments_and_blank_lines() {
        let set = parse(&format!("# sources\n\npbx-eu {A}\n  acd_us.2\t{B}==  \n")).unwrap();
        assert_eq!(set.names().collect::<Vec<_>>(), ["pbx-eu", "acd_us.2"]);
        assert_eq!(set.find(A.as_bytes()).unwrap().name(), "pbx-eu");
        assert_eq!(
            set.find(format!("{B}==").as_bytes()).unwrap().name(),
            "acd_us.2"
        );
        assert!(set.find(B.as_bytes()).is_none());
        assert!(set.find(b"").is_none());
    }

    #[test]
    fn errors_name_the_line_and_never_quote_a_token() {
        let secret = "s3cr3t-s3cr3t-s3cr3t-s3cr3t";
        for (text, want) in [
            (format!("{secret}\n"), "line 1: expected `NAME TOKEN`"),
            (format!("a b {secret}\n"), "line 1: expected `NAME TOKEN`"),
            (format!("# x\nn@me {secret}\n"), "line 2: the source name"),
            (
                "pbx short\n".to_string(),
                "must be 16 to 4096 characters, got 5",
            ),
            (
                format!("# x\n{secret} short\n"),
                "line 2: the token must be 16",
            ),
            (format!("pbx {secret}\"\n"), "has a character outside"),
            (
                format!("pbx {secret}\npbx {A}\n"),
                "line 2: the source name is already used on line 1",
            ),
            (
                format!("pbx {secret}\nacd {secret}\n"),
                "line 2: the token is already used on line 1",
            ),
        ] {
            let e = parse(&text).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
            assert!(!e.contains("s3cr3t"), "{e}");
        }
        let many: String = (0..=MAX_SOURCES)
            .map(|i| format!("s{i} {A}{i:05}\n"))
            .collect();
        assert!(parse(&many).unwrap_err().contains("more than 1000"));
    }

    #[test]
    fn bearer_header_forms() {
        let file = TokenFile {
            path: "t".into(),
            tokens: parse(&format!("pbx {A}\n")).unwrap(),
        };
        let auth = Auth::new(Listener::Ingest, Some(&file));
        let ok = |h: &[&str]| {
            auth.check(&headers(h))
                .map(|s| s.unwrap().name().to_string())
        };
        assert_eq!(ok(&[&format!("Bearer {A}")]), Ok("pbx".into()));
        assert_eq!(ok(&[&format!("bearer   {A} ")]), Ok("pbx".into()));
        assert_eq!(ok(&[]), Err(Failure::Missing));
        assert_eq!(ok(&[&format!("Basic {A}")]), Err(Failure::Malformed));
        assert_eq!(ok(&["Bearer"]), Err(Failure::Malformed));
        assert_eq!(ok(&["Bearer "]), Err(Failure::Malformed));
        assert_eq!(ok(&[&format!("Bearer {A} {A}")]), Err(Failure::Malformed));
        assert_eq!(
            ok(&[&format!("Bearer {A}"), &format!("Bearer {A}")]),
            Err(Failure::Malformed)
        );
        assert_eq!(ok(&[&format!("Bearer {B}")]), Err(Failure::Invalid));
        assert!(Auth::open().check(&headers(&[])).unwrap().is_none());
    }

    #[test]
    fn an_empty_file_lets_nobody_in() {
        let file = TokenFile {
            path: "t".into(),
            tokens: parse("# everyone revoked\n").unwrap(),
        };
        let auth = Auth::new(Listener::Http, Some(&file));
        assert!(!auth.is_open());
        assert_eq!(
            auth.check(&headers(&[&format!("Bearer {A}")])).unwrap_err(),
            Failure::Invalid
        );
    }

    #[test]
    fn reload_swaps_the_set_and_reports_changes() {
        let dir = std::env::temp_dir().join(format!("ringwatch-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tokens");
        std::fs::write(&path, format!("pbx {A}\nacd {B}\n")).unwrap();
        let auth = Auth::new(Listener::Ingest, Some(&TokenFile::load(&path).unwrap()));
        let mut rx = auth.subscribe().unwrap();
        let acd = auth
            .check(&headers(&[&format!("Bearer {B}")]))
            .unwrap()
            .unwrap();
        let pbx = auth
            .check(&headers(&[&format!("Bearer {A}")]))
            .unwrap()
            .unwrap();

        std::fs::write(&path, format!("pbx {B}x\nnew {A}x\n")).unwrap();
        let r = auth.reload().unwrap().unwrap();
        assert_eq!(
            r,
            Reloaded {
                sources: 2,
                added: vec!["new".into()],
                removed: vec!["acd".into()],
                changed: vec!["pbx".into()],
            }
        );
        assert!(rx.has_changed().unwrap());
        let now = rx.borrow_and_update().clone();
        assert!(!now.admits(&acd), "revoked");
        assert!(!now.admits(&pbx), "new token for the same name");
        assert_eq!(
            auth.check(&headers(&[&format!("Bearer {B}")])).unwrap_err(),
            Failure::Invalid
        );

        // A bad file keeps the current set.
        std::fs::write(&path, "pbx short\n").unwrap();
        assert!(auth.reload().unwrap().is_err());
        assert_eq!(auth.source_names(), ["pbx", "new"]);
        assert!(!rx.has_changed().unwrap());
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn debug_output_shows_names_only() {
        let set = parse(&format!("pbx {A}\n")).unwrap();
        let file = TokenFile {
            path: "t".into(),
            tokens: set,
        };
        let shown = format!("{file:?} {:?}", Auth::new(Listener::Ingest, Some(&file)));
        assert!(shown.contains("pbx"), "{shown}");
        assert!(!shown.contains(A), "{shown}");
    }
}
