//! Secret links: a token that proves its holder got it from MyEvents for one thing (today, the
//! management of one guest booking), without anything stored. The token is an HMAC-SHA-256 of
//! the thing's id under the services' shared token secret, so every service and replica that
//! has the secret can check it, and a booking rebuilt from the bus history (`myevents replay`)
//! keeps its token. Tokens of the previous secret stay valid after a rotation, as JWTs do; a
//! token outlives at most one rotation.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Truncated to 128 bits: as hard to guess as a random UUID twice over, and short enough for a
/// link.
const TOKEN_BYTES: usize = 16;

/// The purpose of a guest booking's management token.
pub const GUEST_BOOKING: &str = "booking";

/// The web UI's page of a guest booking, opened by its token: in the booking's answer and in
/// its confirmation mail. The token goes after the `#`, so that it never reaches a server log.
pub fn guest_booking_link(public_url: &str, booking_id: &str, token: &str) -> String {
    format!(
        "{}/#/bookings/{booking_id}?token={token}",
        public_url.trim_end_matches('/')
    )
}

#[derive(Clone)]
pub struct LinkSigner {
    /// The first signs; each one verifies. Shared: every message a consumer applies carries a
    /// copy.
    keys: std::sync::Arc<[Vec<u8>]>,
}

impl LinkSigner {
    pub fn new(current: &[u8], previous: Option<&[u8]>) -> Self {
        let mut keys = vec![current.to_vec()];
        keys.extend(previous.map(<[u8]>::to_vec));
        Self { keys: keys.into() }
    }

    /// The token for `id` used for `purpose` (a constant naming what the link opens, so that a
    /// token for one kind of thing never opens another).
    pub fn sign(&self, purpose: &str, id: &str) -> String {
        hex(&self.mac(&self.keys[0], purpose, id).finalize().into_bytes()[..TOKEN_BYTES])
    }

    /// Whether `token` is the token for `id` and `purpose` under any key, compared in constant
    /// time.
    pub fn verify(&self, purpose: &str, id: &str, token: &str) -> bool {
        let Some(given) = unhex(token.trim()) else {
            return false;
        };
        given.len() == TOKEN_BYTES
            && self.keys.iter().any(|key| {
                self.mac(key, purpose, id)
                    .verify_truncated_left(&given)
                    .is_ok()
            })
    }

    fn mac(&self, key: &[u8], purpose: &str, id: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
        // A NUL never occurs in a JWT's signed text (base64url), so no JWT signature is ever a
        // link token or the other way round, though both use the same secret.
        mac.update(b"myevents-link\0");
        mac.update(purpose.as_bytes());
        mac.update(b"\0");
        mac.update(id.as_bytes());
        mac
    }
}

impl std::fmt::Debug for LinkSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkSigner(..)")
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_opens_its_own_id_and_purpose_only() {
        let signer = LinkSigner::new(b"0123456789abcdef", None);
        let token = signer.sign("booking", "b1");
        assert_eq!(token.len(), 32);
        assert!(signer.verify("booking", "b1", &token));
        assert!(signer.verify("booking", "b1", &token.to_uppercase()));
        assert!(!signer.verify("booking", "b2", &token));
        assert!(!signer.verify("other", "b1", &token));
        assert!(!signer.verify("booking", "b1", &token[..30]));
        assert!(!signer.verify("booking", "b1", ""));
        assert!(!signer.verify("booking", "b1", "zz"));
        assert!(!signer.verify("booking", "b1", "é"));
        let stranger = LinkSigner::new(b"another secret!!", None);
        assert!(!stranger.verify("booking", "b1", &token));
    }

    #[test]
    fn tokens_of_the_previous_secret_still_open_after_a_rotation() {
        let old = LinkSigner::new(b"the old secret 16", None);
        let token = old.sign("booking", "b1");
        let rotated = LinkSigner::new(b"the new secret 16", Some(b"the old secret 16"));
        assert!(rotated.verify("booking", "b1", &token));
        assert_ne!(rotated.sign("booking", "b1"), token);
        let twice = LinkSigner::new(b"a third secret 16", Some(b"the new secret 16"));
        assert!(!twice.verify("booking", "b1", &token));
    }
}
