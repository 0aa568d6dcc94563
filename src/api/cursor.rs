//! Listing cursors: opaque to clients, signed so a tampered one is refused (400) rather than
//! read. A cursor is `base64url(task id) "." base64url(HMAC-SHA256(cursor key, task id))`;
//! the cursor key is derived from the data directory's signing key, never the key itself.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const HMAC_KEYS: &str = "HMAC takes keys of any length";

#[derive(Clone)]
pub struct Cursors {
    key: [u8; 32],
}

impl Cursors {
    /// Derives the cursor key from the token signing key (a separate key per purpose).
    pub fn new(signing_key: &[u8]) -> Self {
        Cursors {
            key: crate::auth::token::derive(signing_key, "listing cursor"),
        }
    }

    fn mac(&self, id: &str) -> HmacSha256 {
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.key).expect(HMAC_KEYS);
        mac.update(id.as_bytes());
        mac
    }

    pub fn encode(&self, id: &str) -> String {
        let tag = self.mac(id).finalize().into_bytes();
        format!("{}.{}", B64.encode(id), B64.encode(tag))
    }

    /// The task id a cursor names, or `None` when it is not one this server issued.
    pub fn decode(&self, cursor: &str) -> Option<String> {
        let (id, tag) = cursor.split_once('.')?;
        let id = String::from_utf8(B64.decode(id).ok()?).ok()?;
        let tag = B64.decode(tag).ok()?;
        self.mac(&id).verify_slice(&tag).ok()?;
        Some(id)
    }
}

#[cfg(test)]
mod tests {
    use super::Cursors;

    #[test]
    fn a_cursor_round_trips_and_any_change_is_refused() {
        let cursors = Cursors::new(&[7u8; 32]);
        let c = cursors.encode("0193-abc");
        assert_eq!(cursors.decode(&c).as_deref(), Some("0193-abc"));
        let mut bytes = c.clone().into_bytes();
        bytes[2] ^= 1;
        assert_eq!(cursors.decode(&String::from_utf8_lossy(&bytes)), None);
        assert_eq!(Cursors::new(&[8u8; 32]).decode(&c), None, "another server's key");
        assert_eq!(cursors.decode("garbage"), None);
    }
}
