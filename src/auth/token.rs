//! Signed identities: JWTs (HS256) with `sub`, `team`, `role`, `iat`, `nbf` and `exp`, signed
//! with a key kept in the data directory (`auth/jwt.key`: 32 random bytes, mode 0600, created
//! atomically on first use).
//!
//! What a token can claim is bounded: a lifetime of at most [`MAX_TTL`], a role a person can
//! hold (never `service`: service identities are the engine's own, for delegation), and a
//! subject and team that are plain names (never the engine's or a service's).

use super::{Identity, Role};
use crate::model::Timestamp;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The longest lifetime a token may have: 30 days. Longer-lived credentials belong in a
/// secrets manager, not in a shell's history.
pub const MAX_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// Length of the HS256 signing key in bytes; a shorter key file is refused.
pub const KEY_LEN: usize = 32;

/// The `amr` value of a token a local client mints for its own user (RFC 8176 `swk`: proof of
/// possession of a software-held key, here the data directory's signing key). Such a token
/// stands for the local user, who holds the data directory, so it needs no step-up; `token
/// issue` never writes it, and tokens from an identity provider never count as one.
pub const LOCAL_KEY_AMR: &str = "swk";

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("the token has expired; issue a new one with `taskdeck token issue`")]
    Expired,
    #[error("the token is not valid yet (its `nbf` or `iat` is in the future)")]
    NotYetValid,
    #[error("the token's signature does not match this data directory's key (issued for another data directory, or altered)")]
    BadSignature,
    #[error("the token names {0}")]
    BadRole(String),
    #[error("cannot issue this token: {0}")]
    Refused(String),
    /// `$USER` cannot name the local operator.
    #[error("{0}")]
    LocalUser(String),
    #[error("cannot use the signing key {path}: {cause}")]
    Key { path: String, cause: String },
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    team: String,
    role: String,
    iat: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nbf: Option<u64>,
    exp: u64,
    /// Authentication methods (OpenID Connect): `["pwd", "mfa"]` for a token issued after MFA.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    amr: Vec<String>,
    /// When the holder authenticated (seconds since the Unix epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auth_time: Option<u64>,
}

fn key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("auth").join("jwt.key")
}

/// The signing key, created on first use: 32 random bytes written to a private temporary
/// file, synced, then linked into place, so that no process ever sees a partial key.
///
/// Errors: the key file cannot be read or created, or it is shorter than [`KEY_LEN`] bytes
/// (a key cut short by a crash or a full disk is never used: anyone could forge tokens).
pub fn signing_key(data_dir: &Path) -> Result<Vec<u8>, TokenError> {
    let path = key_path(data_dir);
    let err = |cause: String| TokenError::Key {
        path: path.display().to_string(),
        cause,
    };
    match read_key(&path) {
        Ok(key) => return checked_key(key).map_err(err),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e.to_string())),
    }
    let dir = path.parent().unwrap_or(data_dir);
    crate::fsutil::create_private_dir(dir).map_err(|e| err(e.to_string()))?;
    let key: [u8; KEY_LEN] = rand::random();
    let tmp = dir.join(format!(".jwt.key.{}.tmp", std::process::id()));
    let written = crate::fsutil::write_private(&tmp, &key).and_then(|()| {
        // A hard link creates the name only if it is free: of two processes creating the key
        // at once, one wins and the other reads the winner's complete key.
        std::fs::hard_link(&tmp, &path)
    });
    let _ = std::fs::remove_file(&tmp);
    match written {
        Ok(()) => {
            crate::fsutil::sync_dir(dir);
            Ok(key.to_vec())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            checked_key(read_key(&path).map_err(|e| err(e.to_string()))?).map_err(err)
        }
        Err(e) => Err(err(e.to_string())),
    }
}

/// The key file's bytes: a regular file of ours, not a link (a key pointed at some
/// world-readable file would let anyone sign), readable by its owner only, and small.
fn read_key(path: &Path) -> std::io::Result<Vec<u8>> {
    crate::fsutil::read_private_key(path, 4096)
}

fn checked_key(key: Vec<u8>) -> Result<Vec<u8>, String> {
    if key.len() < KEY_LEN {
        return Err(format!(
            "the key is {} bytes long, expected {KEY_LEN} (it was cut short, e.g. by a crash or a full disk); \
             delete it to create a new key (tokens issued with the old one stop working)",
            key.len()
        ));
    }
    Ok(key)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Whether `name` may be a token's subject or team: 1–64 letters, digits, `_`, `-`, `.` or
/// `@`, and not a name the engine uses for itself.
fn plain_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@'))
        && !matches!(name, "engine" | "system")
}

/// Why a token may not carry these claims, if it may not.
fn refusal(sub: &str, team: &str, role: Role) -> Option<String> {
    if role == Role::Service {
        return Some(
            "the service role belongs to the engine's own delegation and cannot be given to a token".into(),
        );
    }
    if !plain_name(sub) {
        return Some(format!(
            "`{sub}` is not a valid subject: expected 1-64 letters, digits, `_`, `-`, `.` or `@` (and not `engine` or `system`)"
        ));
    }
    if !plain_name(team) {
        return Some(format!(
            "`{team}` is not a valid team: expected 1-64 letters, digits, `_`, `-`, `.` or `@` (and not `engine` or `system`)"
        ));
    }
    None
}

/// A key for one `purpose` (listing cursors, the server's proof of holding the key), derived
/// from the signing key with HMAC-SHA256, so no purpose uses the signing key itself.
pub fn derive(key: &[u8], purpose: &str) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(b"taskdeck derived key v1\n");
    mac.update(purpose.as_bytes());
    mac.finalize().into_bytes().into()
}

/// What a server answers to prove it holds the signing key, for `nonce` (chosen by the
/// client) and the URL it serves at: HMAC-SHA256 under a key derived for this purpose. Bound
/// to the URL, so a process squatting another port cannot relay the real server's proof.
pub fn server_proof(key: &[u8], nonce: &str, url: &str) -> Vec<u8> {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&derive(key, "server proof"))
        .expect("HMAC takes keys of any length");
    mac.update(nonce.as_bytes());
    mac.update(b"\n");
    mac.update(url.trim_end_matches('/').as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// Whether `subject` may name the local user (a token subject's rules: 1-64 letters, digits,
/// `_`, `-`, `.` or `@`, and not a name the engine uses itself).
pub fn check_subject(subject: &str) -> Result<(), TokenError> {
    if plain_name(subject) {
        Ok(())
    } else {
        Err(TokenError::Refused(format!(
            "`{subject}` is not a valid subject: expected 1-64 letters, digits, `_`, `-`, `.` or `@` (and not `engine` or `system`)"
        )))
    }
}

/// Signs a token for `identity` valid for `ttl` from now.
///
/// Errors: `ttl` is zero or longer than [`MAX_TTL`]; the identity has the service role or a
/// subject/team that is not a plain name.
pub fn issue(key: &[u8], identity: &Identity, ttl: Duration) -> Result<String, TokenError> {
    if ttl.is_zero() || ttl > MAX_TTL {
        return Err(TokenError::Refused(format!(
            "--ttl must be between 1s and {}h (30 days)",
            MAX_TTL.as_secs() / 3600
        )));
    }
    if let Some(why) = refusal(&identity.sub, &identity.team, identity.role) {
        return Err(TokenError::Refused(why));
    }
    let iat = now();
    let auth = identity.auth.clone().unwrap_or_default();
    let claims = Claims {
        sub: identity.sub.clone(),
        team: identity.team.clone(),
        role: identity.role.to_string(),
        iat,
        nbf: Some(iat),
        exp: iat.saturating_add(ttl.as_secs()),
        amr: auth.amr,
        auth_time: auth
            .auth_time
            .map(|ms| u64::try_from(ms.max(0) / 1000).unwrap_or(0)),
    };
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(key),
    )
    .map_err(|e| TokenError::Invalid(e.to_string()))
}

/// Whether the token's header has a `crit` member (RFC 7515 §4.1.11: a recipient that does not
/// understand the named parameters must reject the token).
pub(super) fn has_critical_parameters(token: &str) -> bool {
    use base64::Engine as _;
    let Some(header) = token.trim().split('.').next() else {
        return false;
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header.trim_end_matches('='))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .is_some_and(|h| h.get("crit").is_some())
}

/// Where the key in use before the last `taskdeck token rotate-key` is kept: tokens it signed
/// stay valid until they expire.
fn previous_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("auth").join("jwt.key.previous")
}

/// The signing key in use before the last rotation, if any (and readable: a previous key
/// others may read is an error, like the current one).
pub fn previous_key(data_dir: &Path) -> Result<Option<Vec<u8>>, TokenError> {
    let path = previous_key_path(data_dir);
    match read_key(&path) {
        Ok(key) => checked_key(key).map(Some).map_err(|cause| TokenError::Key {
            path: path.display().to_string(),
            cause,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(TokenError::Key {
            path: path.display().to_string(),
            cause: e.to_string(),
        }),
    }
}

/// Replaces the signing key with a new one; the old one becomes the previous key (the one
/// before it is dropped: tokens it signed stop working). Returns the new key.
///
/// Errors: the key files cannot be read, moved or created.
pub fn rotate_key(data_dir: &Path) -> Result<Vec<u8>, TokenError> {
    let current = signing_key(data_dir)?;
    let previous = previous_key_path(data_dir);
    let err = |path: &Path, e: std::io::Error| TokenError::Key {
        path: path.display().to_string(),
        cause: e.to_string(),
    };
    crate::fsutil::replace_private(&previous, &current).map_err(|e| err(&previous, e))?;
    let path = key_path(data_dir);
    std::fs::remove_file(&path).map_err(|e| err(&path, e))?;
    signing_key(data_dir)
}

/// Checks a token against this data directory's keys (the current one, then the previous
/// one), or — for an RS256/ES256 token — against the identity provider's JWKS.
pub fn verify_any(
    key: &[u8],
    previous: Option<&[u8]>,
    idp: Option<&super::idp::Idp>,
    token: &str,
) -> Result<Identity, TokenError> {
    let header = jsonwebtoken::decode_header(token.trim()).ok();
    if let (Some(h), Some(idp)) = (&header, idp) {
        if let Some(kid) = h.kid.as_deref().filter(|kid| idp.has_key(kid)) {
            if !matches!(h.alg, Algorithm::RS256 | Algorithm::ES256) {
                return Err(TokenError::Invalid(format!(
                    "it is signed with {:?}, but key `{}` of the identity provider is not used with it",
                    h.alg,
                    crate::model::clip(kid, 64)
                )));
            }
        }
    }
    let alg = header.map(|h| h.alg);
    match (alg, idp) {
        (Some(Algorithm::RS256 | Algorithm::ES256), Some(idp)) => idp.verify(token),
        (Some(a @ (Algorithm::RS256 | Algorithm::ES256)), None) => Err(TokenError::Invalid(format!(
            "it is signed with {a:?}, as an identity provider's tokens are, but this Taskdeck trusts none (--jwks)"
        ))),
        _ => match (verify(key, token), previous) {
            (Err(TokenError::BadSignature), Some(previous)) => verify(previous, token),
            (result, _) => result,
        },
    }
}

/// Checks a token and returns whom it names, with its expiry.
///
/// Errors: bad signature, expired, not yet valid (`nbf` or `iat` in the future), a lifetime
/// beyond [`MAX_TTL`], an unknown or service role, or claims that are not plain names.
pub fn verify(key: &[u8], token: &str) -> Result<Identity, TokenError> {
    if key.len() < KEY_LEN {
        return Err(TokenError::Key {
            path: "(in memory)".into(),
            cause: format!("the key is {} bytes long, expected {KEY_LEN}", key.len()),
        });
    }
    if has_critical_parameters(token) {
        return Err(TokenError::Invalid(
            "it names critical header parameters (`crit`), which this server does not implement".into(),
        ));
    }
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 0;
    validation.validate_nbf = true;
    validation.set_required_spec_claims(&["exp", "sub"]);
    let data = decode::<Claims>(token.trim(), &DecodingKey::from_secret(key), &validation).map_err(|e| {
        use jsonwebtoken::errors::ErrorKind;
        match e.kind() {
            ErrorKind::ExpiredSignature => TokenError::Expired,
            ErrorKind::ImmatureSignature => TokenError::NotYetValid,
            ErrorKind::InvalidSignature => TokenError::BadSignature,
            ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                TokenError::Invalid("it is not signed with HS256, the only algorithm taskdeck issues".into())
            }
            ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Json(_) | ErrorKind::Utf8(_) => {
                TokenError::Invalid("it is not a JWT issued by `taskdeck token issue`".into())
            }
            _ => TokenError::Invalid(e.to_string()),
        }
    })?;
    let c = data.claims;
    let now = now();
    // A signed token from the future is refused like one that is not valid yet (a minute of
    // clock skew between machines is allowed for `iat` only).
    if c.iat > now.saturating_add(60) {
        return Err(TokenError::NotYetValid);
    }
    if c.exp.saturating_sub(c.iat) > MAX_TTL.as_secs() || c.exp > now.saturating_add(MAX_TTL.as_secs()) {
        return Err(TokenError::Invalid(format!(
            "its lifetime is longer than the {} days a token may have",
            MAX_TTL.as_secs() / 86_400
        )));
    }
    let role: Role = c.role.parse().map_err(TokenError::BadRole)?;
    if c.team.is_empty() {
        return Err(TokenError::Invalid("the token has no team".into()));
    }
    if let Some(why) = refusal(&c.sub, &c.team, role) {
        return Err(TokenError::Invalid(why));
    }
    let expires_at = Timestamp::try_from(c.exp.saturating_mul(1000)).unwrap_or(Timestamp::MAX);
    // An authentication time in the future is no authentication time (it would make a
    // step-up last for ever).
    let auth_time = c
        .auth_time
        .filter(|t| *t <= now.saturating_add(60))
        .map(|t| Timestamp::try_from(t.saturating_mul(1000)).unwrap_or(Timestamp::MAX));
    let identity = Identity::new(&c.sub, &c.team, role).expiring_at(expires_at);
    // Minted by a client that read the signing key for its own user: the local user itself.
    if c.amr.iter().any(|m| m == LOCAL_KEY_AMR) {
        return Ok(identity);
    }
    Ok(identity.authenticated(crate::auth::Authn {
        amr: c.amr,
        auth_time,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `key` as this data directory's signing key (tests of a damaged key file).
    fn write_raw_key(data_dir: &Path, key: &[u8]) -> std::io::Result<()> {
        let path = key_path(data_dir);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        crate::fsutil::write_private(&path, key)
    }

    fn sign(key: &[u8], claims: &Claims) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(key),
        )
        .unwrap()
    }

    fn claims(role: &str, iat: u64, nbf: Option<u64>, exp: u64) -> Claims {
        Claims {
            sub: "priya".into(),
            team: "customer_success".into(),
            role: role.into(),
            iat,
            nbf,
            exp,
            amr: Vec::new(),
            auth_time: None,
        }
    }

    #[test]
    fn a_self_minted_local_token_stands_for_the_local_user_and_an_issued_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let key = signing_key(dir.path()).unwrap();
        let local = verify(&key, &crate::client::local_token(&key).unwrap()).unwrap();
        assert_eq!(
            local.auth, None,
            "no step-up asked of the data directory's holder"
        );
        assert_eq!(local.team, "local");
        let issued = issue(
            &key,
            &Identity::new("priya", "payments", Role::Admin),
            Duration::from_secs(60),
        )
        .unwrap();
        let issued = verify(&key, &issued).unwrap();
        assert!(issued.auth.is_some(), "a handed-out token is a token: {issued:?}");
    }

    #[test]
    fn tokens_round_trip_and_reject_tampering_expiry_and_unknown_roles() {
        let dir = tempfile::tempdir().unwrap();
        let key = signing_key(dir.path()).unwrap();
        assert_eq!(key.len(), KEY_LEN);
        assert_eq!(signing_key(dir.path()).unwrap(), key, "the key is kept");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(key_path(dir.path()))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let priya = Identity::new("priya", "customer_success", Role::Operator);
        let token = issue(&key, &priya, Duration::from_secs(3600)).unwrap();
        let back = verify(&key, &token).unwrap();
        assert_eq!(
            (back.sub.as_str(), back.team.as_str(), back.role),
            ("priya", "customer_success", Role::Operator)
        );
        let expires = back.expires_at.unwrap();
        let expected = (now() as i64 + 3600) * 1000;
        assert!((expires - expected).abs() <= 2000, "{expires} vs {expected}");

        let other = signing_key(tempfile::tempdir().unwrap().path()).unwrap();
        assert!(matches!(verify(&other, &token), Err(TokenError::BadSignature)));
        // Signed correctly, but its `exp` is a minute ago.
        let expired = sign(&key, &claims("operator", now() - 120, None, now() - 60));
        assert!(matches!(verify(&key, &expired), Err(TokenError::Expired)));
        let odd = sign(&key, &claims("emperor", now(), None, now() + 60));
        let err = verify(&key, &odd).unwrap_err().to_string();
        assert!(err.contains("unknown role `emperor`"), "{err}");
        assert!(matches!(verify(&key, "not.a.token"), Err(TokenError::Invalid(_))));
    }

    #[test]
    fn an_empty_or_short_key_file_is_refused_and_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        write_raw_key(dir.path(), b"").unwrap();
        let err = signing_key(dir.path()).unwrap_err().to_string();
        assert!(err.contains("is 0 bytes long, expected 32"), "{err}");
        write_raw_key(dir.path(), &[7u8; 16]).unwrap();
        assert!(signing_key(dir.path()).is_err());
        assert_eq!(
            std::fs::read(key_path(dir.path())).unwrap(),
            [7u8; 16],
            "left for the operator"
        );
        // A token signed with the empty key claiming admin is refused outright.
        let forged = sign(b"", &claims("admin", now(), None, now() + 600));
        assert!(verify(b"", &forged).is_err());
        assert!(verify(&[0u8; 16], &forged).is_err());
    }

    #[test]
    fn no_temporary_key_file_is_left_behind() {
        let dir = tempfile::tempdir().unwrap();
        signing_key(dir.path()).unwrap();
        let names: Vec<_> = std::fs::read_dir(dir.path().join("auth"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["jwt.key"]);
    }

    #[test]
    fn future_nbf_future_iat_and_unbounded_exp_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = signing_key(dir.path()).unwrap();
        let later = sign(&key, &claims("operator", now(), Some(now() + 3600), now() + 7200));
        assert!(matches!(verify(&key, &later), Err(TokenError::NotYetValid)));
        let from_the_future = sign(&key, &claims("operator", now() + 3600, None, now() + 7200));
        assert!(matches!(
            verify(&key, &from_the_future),
            Err(TokenError::NotYetValid)
        ));
        let forever = sign(&key, &claims("operator", now(), None, u64::MAX));
        let err = verify(&key, &forever).unwrap_err().to_string();
        assert!(err.contains("longer than the 30 days"), "{err}");
    }

    #[test]
    fn service_tokens_and_reserved_names_cannot_be_issued_or_used() {
        let dir = tempfile::tempdir().unwrap();
        let key = signing_key(dir.path()).unwrap();
        let ttl = Duration::from_secs(60);
        let err = issue(
            &key,
            &Identity::new("bot", "customer_success", Role::Service),
            ttl,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("service role belongs to the engine"), "{err}");
        let svc = sign(&key, &claims("service", now(), None, now() + 60));
        assert!(verify(&key, &svc).is_err());
        for sub in ["engine", "svc:customer_success", "", "a b"] {
            assert!(
                issue(&key, &Identity::new(sub, "payments", Role::Manager), ttl).is_err(),
                "{sub}"
            );
        }
        assert!(issue(
            &key,
            &Identity::new("jane", "payments", Role::Manager),
            MAX_TTL + Duration::from_secs(1)
        )
        .is_err());
        assert!(issue(
            &key,
            &Identity::new("jane", "payments", Role::Manager),
            Duration::ZERO
        )
        .is_err());
    }
}
