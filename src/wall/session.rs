//! Wall screens' session ids: what the cookie holds instead of the token
//! (a browser sends a host's cookies to every port of the host). An id is
//! a random nonce and a MAC of it keyed by the token's digest
//! ([`Source::tag`]): opaque, unguessable, no token in it, and nothing
//! kept server-side, so a session lasts across restarts and ends exactly
//! when its token is revoked or changed (no current token verifies it).

use std::sync::Arc;

use ring::rand::{SecureRandom, SystemRandom};
use subtle::ConstantTimeEq;

use crate::auth::{Source, TokenSet};

const NONCE_BYTES: usize = 16;
const TAG_BYTES: usize = 32;
/// Hex digits of an id.
pub const ID_LEN: usize = 2 * (NONCE_BYTES + TAG_BYTES);
const CONTEXT: &[u8] = b"ringwatch wall session v1";

fn message(nonce: &[u8]) -> Vec<u8> {
    [CONTEXT, nonce].concat()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &[u8]) -> Option<Vec<u8>> {
    let digit = |c: u8| (c as char).to_digit(16);
    text.chunks_exact(2)
        .map(|p| match p {
            [h, l] => Some((digit(*h)? * 16 + digit(*l)?) as u8),
            _ => None,
        })
        .collect()
}

/// A new session id for `source`; `None` if the system's random source
/// fails.
pub fn create(source: &Source) -> Option<String> {
    let mut nonce = [0u8; NONCE_BYTES];
    SystemRandom::new().fill(&mut nonce).ok()?;
    let tag = source.tag(&message(&nonce));
    Some(hex(&[&nonce[..], &tag[..]].concat()))
}

/// The source whose current token made session `id`, if any.
pub fn find(id: &[u8], tokens: &TokenSet) -> Option<Arc<Source>> {
    if id.len() != ID_LEN {
        return None;
    }
    let raw = unhex(id)?;
    let (nonce, tag) = raw.split_at_checked(NONCE_BYTES)?;
    let msg = message(nonce);
    let mut found = None;
    for s in tokens.sources() {
        if bool::from(s.tag(&msg)[..].ct_eq(tag)) {
            found = Some(Arc::clone(s));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn set(text: &str) -> TokenSet {
        TokenSet::parse(text, Path::new("t")).unwrap()
    }

    #[test]
    fn ids_are_opaque_and_hold_while_their_token_does() {
        let tokens = set("lobby token-aaaaaaaaaaaaaaaa\nbar token-cccccccccccccccc\n");
        let lobby = tokens.find(b"token-aaaaaaaaaaaaaaaa").unwrap();
        let id = create(&lobby).unwrap();
        assert_eq!(id.len(), ID_LEN);
        assert!(!id.contains("token") && !id.contains(&hex(b"token-aaaaaaaaaaaaaaaa")));
        assert_eq!(find(id.as_bytes(), &tokens).unwrap().name(), "lobby");
        assert_ne!(id, create(&lobby).unwrap());
        // The same token file read again (a reload) keeps the session.
        let reloaded = set("lobby token-aaaaaaaaaaaaaaaa\n");
        assert_eq!(find(id.as_bytes(), &reloaded).unwrap().name(), "lobby");
        // Revoked, or the token changed under the same name: ended.
        assert!(find(id.as_bytes(), &set("bar token-cccccccccccccccc\n")).is_none());
        assert!(find(id.as_bytes(), &set("lobby token-bbbbbbbbbbbbbbbb\n")).is_none());
        // The raw token, a damaged id, odd input: nothing, no panic.
        assert!(find(b"token-aaaaaaaaaaaaaaaa", &tokens).is_none());
        let mut bad = id.clone().into_bytes();
        bad[ID_LEN - 1] = if bad[ID_LEN - 1] == b'0' { b'1' } else { b'0' };
        assert!(find(&bad, &tokens).is_none());
        assert!(find(&[0xff; ID_LEN], &tokens).is_none());
        assert!(find(b"", &tokens).is_none());
    }
}
