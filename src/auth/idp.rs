//! Tokens from an enterprise identity provider (Okta, Entra ID, Keycloak): RS256 or ES256
//! JWTs verified against the provider's public keys in a JWKS file (`--jwks`), with the
//! issuer and audience checked and the key chosen by the token's `kid`. Claims map to a
//! Taskdeck identity: `sub`, the team and role claims (names configurable), and OpenID
//! Connect's `amr`/`auth_time` for step-up. Anything else is refused with why: an unknown
//! `kid`, an algorithm other than the key's, HS256 or `none` claiming to be the provider's,
//! a wrong issuer or audience, an expired token.

use super::token::TokenError;
use super::{Authn, Identity, Role};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm};
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde_json::Value;
use std::path::Path;

/// How an identity provider's tokens are checked and read.
#[derive(Debug, Clone)]
pub struct Idp {
    keys: JwkSet,
    /// The `iss` its tokens must carry.
    pub issuer: String,
    /// The `aud` its tokens must include (this Taskdeck).
    pub audience: String,
    /// The claim holding the team (default `team`).
    pub team_claim: String,
    /// The claim holding the role (default `role`; viewer, operator, manager, admin, monitor).
    pub role_claim: String,
}

/// The largest JWKS file read: 256 KiB.
const MAX_JWKS_BYTES: u64 = 256 * 1024;

impl Idp {
    /// Reads the JWKS file at `path`. Errors name the file and what is wrong with it: not
    /// JSON, a key without `kid`, or a key that is not an RSA or P-256 public key.
    pub fn load(
        path: &Path,
        issuer: &str,
        audience: &str,
        team_claim: &str,
        role_claim: &str,
    ) -> Result<Idp, String> {
        let bytes = crate::fsutil::read_named(path, MAX_JWKS_BYTES)
            .map_err(|e| format!("cannot read the JWKS file {}: {e}", path.display()))?;
        Idp::parse(
            &String::from_utf8_lossy(&bytes),
            issuer,
            audience,
            team_claim,
            role_claim,
        )
        .map_err(|e| format!("the JWKS file {}: {e}", path.display()))
    }

    /// Parses a JWKS document (see `load`).
    pub fn parse(
        text: &str,
        issuer: &str,
        audience: &str,
        team_claim: &str,
        role_claim: &str,
    ) -> Result<Idp, String> {
        let keys: JwkSet = serde_json::from_str(text)
            .map_err(|e| format!("not a JWKS document (`{{\"keys\": [...]}}`): {e}"))?;
        if keys.keys.is_empty() {
            return Err("it holds no key".into());
        }
        let mut seen = std::collections::HashSet::new();
        for (i, k) in keys.keys.iter().enumerate() {
            let Some(kid) = k.common.key_id.as_deref().filter(|kid| !kid.trim().is_empty()) else {
                return Err(format!("keys[{i}] has no `kid`: tokens choose their key by it"));
            };
            if !seen.insert(kid) {
                return Err(format!("keys[{i}]: key id `{kid}` is given twice: a token naming it could be checked with either key"));
            }
            let Some(alg) = algorithm_of(&k.algorithm) else {
                return Err(format!(
                    "keys[{i}] (`{kid}`) is neither an RSA nor a P-256 public key"
                ));
            };
            if let Some(declared) = k.common.key_algorithm.filter(|d| !same(*d, alg)) {
                return Err(format!(
                    "keys[{i}] (`{kid}`) declares {declared:?}, but it is a key for {alg:?}"
                ));
            }
            // A key the provider published for encryption is not one its tokens are signed with.
            let signs = !matches!(
                k.common.public_key_use,
                Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
            ) && k.common.key_operations.as_ref().is_none_or(|ops| {
                ops.iter()
                    .any(|o| matches!(o, jsonwebtoken::jwk::KeyOperations::Verify))
            });
            if !signs {
                return Err(format!(
                    "keys[{i}] (`{kid}`) is not for verifying signatures (`use`/`key_ops`)"
                ));
            }
            if let Err(e) = DecodingKey::from_jwk(k) {
                return Err(format!("keys[{i}] (`{kid}`) is not a usable public key: {e}"));
            }
        }
        if issuer.trim().is_empty() || audience.trim().is_empty() {
            return Err("--jwt-issuer and --jwt-audience are required with --jwks".into());
        }
        Ok(Idp {
            keys,
            issuer: issuer.to_string(),
            audience: audience.to_string(),
            team_claim: team_claim.to_string(),
            role_claim: role_claim.to_string(),
        })
    }

    /// Checks a provider's token and returns whom it names.
    ///
    /// Errors: `Invalid` (with why) for an unknown or missing `kid`, an algorithm that is not
    /// the key's, a wrong issuer or audience, missing claims, an unknown or service role;
    /// `Expired`, `NotYetValid`, `BadSignature` as for local tokens.
    pub fn verify(&self, token: &str) -> Result<Identity, TokenError> {
        let header =
            decode_header(token.trim()).map_err(|_| TokenError::Invalid("it is not a JWT".into()))?;
        if super::token::has_critical_parameters(token) {
            return Err(TokenError::Invalid(
                "it names critical header parameters (`crit`), which Taskdeck does not implement".into(),
            ));
        }
        let Some(kid) = header.kid.as_deref() else {
            return Err(TokenError::Invalid(format!(
                "it is {:?} but names no key id (`kid`)",
                header.alg
            )));
        };
        let Some(jwk) = self.keys.find(kid) else {
            return Err(TokenError::Invalid(format!(
                "key id `{}` is not in the identity provider's JWKS",
                crate::model::clip(kid, 64)
            )));
        };
        let expected = algorithm_of(&jwk.algorithm);
        if expected != Some(header.alg) || jwk.common.key_algorithm.is_some_and(|a| !same(a, header.alg)) {
            return Err(TokenError::Invalid(format!(
                "it is signed with {:?}, but key `{kid}` is {}",
                header.alg,
                expected.map_or("unusable".to_string(), |a| format!("{a:?}"))
            )));
        }
        let key = DecodingKey::from_jwk(jwk).map_err(|e| TokenError::Invalid(format!("key `{kid}`: {e}")))?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = 30;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        let data =
            decode::<serde_json::Map<String, Value>>(token.trim(), &key, &validation).map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                match e.kind() {
                    ErrorKind::ExpiredSignature => TokenError::Expired,
                    ErrorKind::ImmatureSignature => TokenError::NotYetValid,
                    ErrorKind::InvalidSignature => {
                        TokenError::Invalid(format!("its signature does not match key `{kid}`"))
                    }
                    ErrorKind::InvalidIssuer => {
                        TokenError::Invalid(format!("its issuer is not {}", self.issuer))
                    }
                    ErrorKind::InvalidAudience => {
                        TokenError::Invalid(format!("its audience does not include {}", self.audience))
                    }
                    ErrorKind::MissingRequiredClaim(c) => {
                        TokenError::Invalid(format!("it has no `{c}` claim"))
                    }
                    _ => TokenError::Invalid(e.to_string()),
                }
            })?;
        let claims = data.claims;
        let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_string);
        let sub = text("sub").ok_or_else(|| TokenError::Invalid("its `sub` is not a string".into()))?;
        let team = text(&self.team_claim).ok_or_else(|| {
            TokenError::Invalid(format!("it has no `{}` claim (the team)", self.team_claim))
        })?;
        let role_text = text(&self.role_claim).ok_or_else(|| {
            TokenError::Invalid(format!("it has no `{}` claim (the role)", self.role_claim))
        })?;
        let role: Role = role_text.parse().map_err(TokenError::BadRole)?;
        if role == Role::Service {
            return Err(TokenError::Invalid(
                "the service role belongs to the engine's own delegation".into(),
            ));
        }
        super::token::check_subject(&sub).map_err(|e| TokenError::Invalid(e.to_string()))?;
        super::token::check_subject(&team).map_err(|_| {
            TokenError::Invalid(format!("`{}` is not a valid team", crate::model::clip(&team, 64)))
        })?;
        let now_s = chrono::Utc::now().timestamp();
        // Times are numbers of seconds, possibly with a fraction or beyond i64 (read as f64,
        // so no form of a number skips a check).
        let seconds = |name: &str| claims.get(name).and_then(Value::as_f64);
        if !claims.get("iss").is_some_and(Value::is_string) {
            return Err(TokenError::Invalid("its `iss` is not a string".into()));
        }
        let Some(exp) = seconds("exp").filter(|e| e.is_finite()) else {
            return Err(TokenError::Invalid("its `exp` is not a number".into()));
        };
        // As for local tokens: at most 30 days ahead, and not issued in the future.
        let max_ttl = super::token::MAX_TTL.as_secs_f64();
        if exp > now_s as f64 + max_ttl {
            return Err(TokenError::Invalid(format!(
                "it expires more than {} days from now",
                super::token::MAX_TTL.as_secs() / 86_400
            )));
        }
        if seconds("iat").is_some_and(|iat| !iat.is_finite() || iat > now_s as f64 + 60.0) {
            return Err(TokenError::NotYetValid);
        }
        let exp = exp.floor() as i64;
        let amr = claims
            .get("amr")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default();
        let auth_time = seconds("auth_time")
            .filter(|t| t.is_finite() && *t <= now_s as f64 + 60.0)
            .map(|t| (t * 1000.0).floor() as i64);
        Ok(Identity::new(&sub, &team, role)
            .expiring_at(exp.saturating_mul(1000))
            .authenticated(Authn { amr, auth_time }))
    }
}

/// The algorithm a JWK's key is used with: RS256 for RSA, ES256 for P-256.
fn algorithm_of(params: &AlgorithmParameters) -> Option<Algorithm> {
    match params {
        AlgorithmParameters::RSA(_) => Some(Algorithm::RS256),
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => Some(Algorithm::ES256),
        _ => None,
    }
}

impl Idp {
    /// Whether the provider's JWKS has a key named `kid` (an HS256 token naming one is
    /// refused as the wrong algorithm, not checked against the local key).
    pub fn has_key(&self, kid: &str) -> bool {
        self.keys.find(kid).is_some()
    }
}

fn same(declared: KeyAlgorithm, alg: Algorithm) -> bool {
    matches!(
        (declared, alg),
        (KeyAlgorithm::RS256, Algorithm::RS256) | (KeyAlgorithm::ES256, Algorithm::ES256)
    )
}
