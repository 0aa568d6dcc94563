//! Signed identities: JWTs (HS256) with `sub`, `team`, `role`, `iat` and `exp`, signed with a
//! key kept in the data directory (created on first use, readable by its owner only).

use super::{Identity, Role};
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("the token has expired; issue a new one with `taskdeck token issue`")]
    Expired,
    #[error("the token's signature does not match this data directory's key (issued for another data directory, or altered)")]
    BadSignature,
    #[error("the token names {0}")]
    BadRole(String),
    #[error("cannot use the signing key {path}: {source}")]
    Key { path: String, source: std::io::Error },
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    team: String,
    role: String,
    iat: u64,
    exp: u64,
}

fn key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("auth").join("jwt.key")
}

/// The signing key, created (32 random bytes, mode 0600) on first use.
pub fn signing_key(data_dir: &Path) -> Result<Vec<u8>, TokenError> {
    let path = key_path(data_dir);
    let err = |source| TokenError::Key {
        path: path.display().to_string(),
        source,
    };
    if let Ok(key) = std::fs::read(&path) {
        return Ok(key);
    }
    std::fs::create_dir_all(path.parent().unwrap_or(data_dir)).map_err(err)?;
    let key: [u8; 32] = rand::random();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    use std::io::Write;
    match options.open(&path) {
        Ok(mut file) => file.write_all(&key).map_err(err)?,
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return std::fs::read(&path).map_err(err),
        Err(e) => return Err(err(e)),
    }
    Ok(key.to_vec())
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub fn issue(key: &[u8], identity: &Identity, ttl: Duration) -> Result<String, TokenError> {
    let iat = now();
    let claims = Claims {
        sub: identity.sub.clone(),
        team: identity.team.clone(),
        role: identity.role.to_string(),
        iat,
        exp: iat + ttl.as_secs(),
    };
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(key),
    )
    .map_err(|e| TokenError::Invalid(e.to_string()))
}

pub fn verify(key: &[u8], token: &str) -> Result<Identity, TokenError> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 0;
    validation.set_required_spec_claims(&["exp", "sub"]);
    let data = decode::<Claims>(token.trim(), &DecodingKey::from_secret(key), &validation).map_err(|e| {
        use jsonwebtoken::errors::ErrorKind;
        match e.kind() {
            ErrorKind::ExpiredSignature => TokenError::Expired,
            ErrorKind::InvalidSignature => TokenError::BadSignature,
            ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Json(_) | ErrorKind::Utf8(_) => {
                TokenError::Invalid("it is not a JWT issued by `taskdeck token issue`".into())
            }
            _ => TokenError::Invalid(e.to_string()),
        }
    })?;
    let c = data.claims;
    let role: Role = c.role.parse().map_err(TokenError::BadRole)?;
    if c.team.is_empty() {
        return Err(TokenError::Invalid("the token has no team".into()));
    }
    Ok(Identity::new(&c.sub, &c.team, role))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_reject_tampering_expiry_and_unknown_roles() {
        let dir = tempfile::tempdir().unwrap();
        let key = signing_key(dir.path()).unwrap();
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
        assert_eq!(verify(&key, &token).unwrap(), priya);

        let other = signing_key(tempfile::tempdir().unwrap().path()).unwrap();
        assert!(matches!(verify(&other, &token), Err(TokenError::BadSignature)));
        // Signed correctly, but its `exp` is a minute ago.
        let past = Claims {
            sub: "priya".into(),
            team: "customer_success".into(),
            role: "operator".into(),
            iat: now() - 120,
            exp: now() - 60,
        };
        let expired = encode(
            &Header::new(Algorithm::HS256),
            &past,
            &EncodingKey::from_secret(&key),
        )
        .unwrap();
        assert!(matches!(verify(&key, &expired), Err(TokenError::Expired)));
        let claims = Claims {
            sub: "x".into(),
            team: "t".into(),
            role: "emperor".into(),
            iat: now(),
            exp: now() + 60,
        };
        let odd = encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(&key),
        )
        .unwrap();
        let err = verify(&key, &odd).unwrap_err().to_string();
        assert!(err.contains("unknown role `emperor`"), "{err}");
        assert!(matches!(verify(&key, "not.a.token"), Err(TokenError::Invalid(_))));
    }
}
