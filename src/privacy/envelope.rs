//! The sealed form of a personal value: `{{pii:v1:SUBJECT:DATA}}`, where `SUBJECT` is the data
//! subject's id (32 hex digits) and `DATA` is base64url (no padding) of a 12-byte random
//! nonce followed by the AES-256-GCM ciphertext of the value's JSON, with the subject id as
//! associated data (a token moved to another subject does not open). A whole sealed field is
//! one token; a value copied into a longer text becomes a token inside that text.

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::Value;

const OPEN: &str = "{{pii:v1:";
const CLOSE: &str = "}}";
const SUBJECT_LEN: usize = 32;
const NONCE_LEN: usize = 12;

/// HMAC-SHA256 of `label` under `key`: a key for one purpose derived from another.
pub fn derive(key: &[u8], label: &[u8]) -> [u8; 32] {
    #[allow(clippy::expect_used)]
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of every length");
    mac.update(label);
    mac.finalize().into_bytes().into()
}

/// The keyed hash a subject is found by: an email (lower-cased) or an id, never stored as is.
pub fn alias_hash(lookup: &[u8; 32], alias: &str) -> String {
    let normalized = alias.trim().to_lowercase();
    crate::audit::entry::hex(&derive(lookup, normalized.as_bytes()))
}

/// A new data subject id: 16 random bytes in hex.
pub fn new_subject_id() -> String {
    let bytes: [u8; 16] = rand::random();
    crate::audit::entry::hex(&bytes)
}

fn encrypt(cipher: &Aes256Gcm, aad: &[u8], plain: &[u8]) -> Option<Vec<u8>> {
    let nonce: [u8; NONCE_LEN] = rand::random();
    let sealed = cipher
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: plain, aad })
        .ok()?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&sealed);
    Some(out)
}

fn decrypt(cipher: &Aes256Gcm, aad: &[u8], data: &[u8]) -> Option<Vec<u8>> {
    if data.len() < NONCE_LEN {
        return None;
    }
    let (nonce, sealed) = data.split_at(NONCE_LEN);
    cipher
        .decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad })
        .ok()
}

fn wrap_aad(subject: &str) -> Vec<u8> {
    format!("taskdeck data key v1 {subject}").into_bytes()
}

/// A fresh data key for `subject`, and its wrapped form (base64url) to store.
pub fn new_data_key(master: &Aes256Gcm, subject: &str) -> Option<(Aes256Gcm, String)> {
    let key: [u8; 32] = rand::random();
    let wrapped = encrypt(master, &wrap_aad(subject), &key)?;
    let cipher = Aes256Gcm::new_from_slice(&key).ok()?;
    Some((cipher, URL_SAFE_NO_PAD.encode(wrapped)))
}

/// The data key of `subject` from its wrapped form; `None` when it does not open (another
/// master key, or an edited record).
pub fn unwrap_data_key(master: &Aes256Gcm, subject: &str, wrapped: &str) -> Option<Aes256Gcm> {
    let data = URL_SAFE_NO_PAD.decode(wrapped).ok()?;
    let key = decrypt(master, &wrap_aad(subject), &data)?;
    Aes256Gcm::new_from_slice(&key).ok()
}

/// `value` sealed for `subject`. Serializing a JSON value cannot fail; a cipher error (none
/// is possible for these sizes) seals nothing readable: the token then opens to nothing.
pub fn seal(cipher: &Aes256Gcm, subject: &str, value: &Value) -> String {
    let plain = serde_json::to_vec(value).unwrap_or_default();
    let data = encrypt(cipher, subject.as_bytes(), &plain).unwrap_or_default();
    format!("{OPEN}{subject}:{}{CLOSE}", URL_SAFE_NO_PAD.encode(data))
}

/// A token found in a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token<'a> {
    /// Byte range of the whole token in the text.
    pub start: usize,
    pub end: usize,
    pub subject: &'a str,
    data: &'a str,
}

impl Token<'_> {
    /// The sealed value, or `None` when `cipher` does not open it.
    pub fn open(&self, cipher: &Aes256Gcm) -> Option<Value> {
        let data = URL_SAFE_NO_PAD.decode(self.data).ok()?;
        let plain = decrypt(cipher, self.subject.as_bytes(), &data)?;
        serde_json::from_slice(&plain).ok()
    }
}

/// Whether `text` may hold a token (a cheap test before `tokens`).
pub fn has_token(text: &str) -> bool {
    text.contains(OPEN)
}

/// The well-formed tokens in `text`, in order.
pub fn tokens(text: &str) -> Vec<Token<'_>> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(found) = text[from..].find(OPEN) {
        let start = from + found;
        let body = start + OPEN.len();
        let Some(close) = text[body..].find(CLOSE) else {
            break;
        };
        let end = body + close + CLOSE.len();
        let inner = &text[body..body + close];
        match inner.split_once(':') {
            Some((subject, data))
                if subject.len() == SUBJECT_LEN
                    && subject.bytes().all(|b| b.is_ascii_hexdigit())
                    && data
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
            {
                out.push(Token {
                    start,
                    end,
                    subject,
                    data,
                });
                from = end;
            }
            _ => from = body,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cipher() -> Aes256Gcm {
        Aes256Gcm::new_from_slice(&[7u8; 32]).unwrap()
    }

    #[test]
    fn a_token_opens_to_its_value_only_with_its_key_and_subject() {
        let subject = new_subject_id();
        let token = seal(&cipher(), &subject, &json!(4999));
        assert!(!token.contains("4999"));
        let found = tokens(&token);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].open(&cipher()), Some(json!(4999)));
        let other = Aes256Gcm::new_from_slice(&[8u8; 32]).unwrap();
        assert_eq!(found[0].open(&other), None);
        // Moved to another subject, it does not open.
        let moved = token.replace(&subject, &new_subject_id());
        assert_eq!(tokens(&moved)[0].open(&cipher()), None);
    }

    #[test]
    fn tokens_are_found_inside_text_and_malformed_ones_are_skipped() {
        let subject = new_subject_id();
        let a = seal(&cipher(), &subject, &json!("jane@example.com"));
        let text = format!("mail {a} bounced; {{{{pii:v1:zz:bad}}}} and {{{{pii:v1:");
        let found = tokens(&text);
        assert_eq!(found.len(), 1);
        assert_eq!(&text[found[0].start..found[0].end], a);
    }

    #[test]
    fn data_keys_unwrap_only_with_the_master_key_for_their_subject() {
        let master = cipher();
        let (key, wrapped) = new_data_key(&master, "s1").unwrap();
        let token = seal(&key, "0123456789abcdef0123456789abcdef", &json!("x"));
        let back = unwrap_data_key(&master, "s1", &wrapped).unwrap();
        assert_eq!(tokens(&token)[0].open(&back), Some(json!("x")));
        assert!(unwrap_data_key(&master, "s2", &wrapped).is_none());
    }
}
