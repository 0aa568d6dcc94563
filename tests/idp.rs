//! Tokens from an identity provider: RS256 and ES256 JWTs signed with keys whose public halves
//! are in `tests/fixtures/idp/jwks.json` (made with openssl; `rsa2.der` is a key the JWKS does
//! not hold) are accepted with the right issuer, audience and key id, and refused — each with
//! its reason — with a wrong issuer, audience, kid or algorithm, an unknown signer, no kid,
//! expired, or a service role; their `amr`/`auth_time` carry a step-up. Then the binary:
//! `token show --jwks`, and `token rotate-key` keeping the previous key's tokens valid.

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use taskdeck::auth::idp::Idp;

const ISS: &str = "https://idp.example.com/oauth2/default";
const AUD: &str = "taskdeck";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/idp/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn idp() -> Idp {
    let jwks = String::from_utf8(fixture("jwks.json")).unwrap();
    Idp::parse(&jwks, ISS, AUD, "team", "role").unwrap()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn claims() -> Value {
    json!({
        "sub": "jane", "team": "customer_success", "role": "manager",
        "iss": ISS, "aud": [AUD, "other-app"], "iat": now(), "exp": now() + 600,
        "amr": ["pwd", "mfa"], "auth_time": now() - 60,
    })
}

fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    encode(&header, claims, key).unwrap()
}

fn rsa() -> EncodingKey {
    EncodingKey::from_rsa_der(&fixture("rsa.der"))
}

fn ec() -> EncodingKey {
    EncodingKey::from_ec_der(&fixture("ec.der"))
}

#[test]
fn rs256_and_es256_tokens_of_the_provider_name_their_holder() {
    for (alg, kid, key) in [
        (Algorithm::RS256, "rsa-2026", rsa()),
        (Algorithm::ES256, "ec-2026", ec()),
    ] {
        let who = idp().verify(&sign(alg, Some(kid), &key, &claims())).unwrap();
        assert_eq!(
            (who.sub.as_str(), who.team.as_str()),
            ("jane", "customer_success")
        );
        assert_eq!(who.role, taskdeck::auth::Role::Manager);
        let auth = who.auth.unwrap();
        assert!(auth.mfa_since((now() - 120) * 1000), "{auth:?}");
        assert!(who.expires_at.is_some());
    }
}

#[test]
fn a_wrong_issuer_audience_kid_or_algorithm_is_refused_with_why() {
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = claims();
        f(&mut c);
        c
    };
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "wrong issuer",
            sign(
                Algorithm::RS256,
                Some("rsa-2026"),
                &rsa(),
                &with(&|c| c["iss"] = json!("https://evil.example.com")),
            ),
            "issuer",
        ),
        (
            "wrong audience",
            sign(
                Algorithm::RS256,
                Some("rsa-2026"),
                &rsa(),
                &with(&|c| c["aud"] = json!("another-app")),
            ),
            "audience",
        ),
        (
            "no audience",
            sign(
                Algorithm::RS256,
                Some("rsa-2026"),
                &rsa(),
                &with(&|c| {
                    c.as_object_mut().unwrap().remove("aud");
                }),
            ),
            "aud",
        ),
        (
            "unknown kid",
            sign(Algorithm::RS256, Some("rsa-2025"), &rsa(), &claims()),
            "not in the identity provider's JWKS",
        ),
        (
            "no kid",
            sign(Algorithm::RS256, None, &rsa(), &claims()),
            "names no key id",
        ),
        (
            "ES256 under the RSA key's kid",
            sign(Algorithm::ES256, Some("rsa-2026"), &ec(), &claims()),
            "but key `rsa-2026` is RS256",
        ),
        (
            "RS256 under the EC key's kid",
            sign(Algorithm::RS256, Some("ec-2026"), &rsa(), &claims()),
            "but key `ec-2026` is ES256",
        ),
        (
            "HS256 under the RSA key's kid",
            sign(
                Algorithm::HS256,
                Some("rsa-2026"),
                &EncodingKey::from_secret(b"guess"),
                &claims(),
            ),
            "but key `rsa-2026` is RS256",
        ),
        (
            "signed by a key the JWKS lacks",
            sign(
                Algorithm::RS256,
                Some("rsa-2026"),
                &EncodingKey::from_rsa_der(&fixture("rsa2.der")),
                &claims(),
            ),
            "signature does not match",
        ),
        (
            "expired",
            sign(
                Algorithm::RS256,
                Some("rsa-2026"),
                &rsa(),
                &with(&|c| c["exp"] = json!(now() - 3600)),
            ),
            "expired",
        ),
        (
            "service role",
            sign(
                Algorithm::RS256,
                Some("rsa-2026"),
                &rsa(),
                &with(&|c| c["role"] = json!("service")),
            ),
            "service role",
        ),
        (
            "no team",
            sign(
                Algorithm::RS256,
                Some("rsa-2026"),
                &rsa(),
                &with(&|c| {
                    c.as_object_mut().unwrap().remove("team");
                }),
            ),
            "`team`",
        ),
    ];
    for (what, token, why) in cases {
        let err = idp().verify(&token).unwrap_err().to_string();
        assert!(err.contains(why), "{what}: {err}");
    }
    // `alg: none` is not a signature at all.
    let none = format!(
        "{}.{}.",
        base64url(&json!({"alg": "none", "kid": "rsa-2026"})),
        base64url(&claims())
    );
    assert!(idp().verify(&none).is_err());
    // A JWKS without key ids, or with a symmetric key, is refused when loaded.
    let err = Idp::parse(
        r#"{"keys":[{"kty":"oct","kid":"k","k":"c2VjcmV0"}]}"#,
        ISS,
        AUD,
        "team",
        "role",
    )
    .unwrap_err();
    assert!(err.contains("neither an RSA nor a P-256"), "{err}");
}

#[test]
fn a_future_auth_time_is_no_step_up() {
    let mut c = claims();
    c["auth_time"] = json!(now() + 3600);
    let who = idp()
        .verify(&sign(Algorithm::ES256, Some("ec-2026"), &ec(), &c))
        .unwrap();
    assert_eq!(who.auth.unwrap().auth_time, None);
}

fn base64url(v: &Value) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

fn taskdeck(data: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_taskdeck"))
        .arg("--data")
        .arg(data)
        .args(args)
        .env_remove("TASKDECK_TOKEN")
        .env_remove("TASKDECK_JWKS")
        .output()
        .unwrap()
}

#[test]
fn the_binary_accepts_provider_tokens_and_keeps_the_previous_key_valid_after_rotation() {
    let data = tempfile::tempdir().unwrap();
    let jwks = format!("{}/tests/fixtures/idp/jwks.json", env!("CARGO_MANIFEST_DIR"));
    let token = sign(Algorithm::ES256, Some("ec-2026"), &ec(), &claims());
    let out = taskdeck(
        data.path(),
        &[
            "--jwks",
            &jwks,
            "--jwt-issuer",
            ISS,
            "--jwt-audience",
            AUD,
            "token",
            "show",
            &token,
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("jane (manager, customer_success)"));
    let without = taskdeck(data.path(), &["token", "show", &token]);
    assert!(String::from_utf8_lossy(&without.stderr).contains("trusts none (--jwks)"));
    let wrong_aud = taskdeck(
        data.path(),
        &[
            "--jwks",
            &jwks,
            "--jwt-issuer",
            ISS,
            "--jwt-audience",
            "billing",
            "token",
            "show",
            &token,
        ],
    );
    assert!(String::from_utf8_lossy(&wrong_aud.stderr).contains("audience"));

    // Rotation: the old token still works, a new one too, and the rotation is journaled.
    let issue = || {
        let out = taskdeck(
            data.path(),
            &[
                "token",
                "issue",
                "--sub",
                "priya",
                "--team",
                "customer_success",
                "--role",
                "operator",
            ],
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let old = issue();
    let out = taskdeck(data.path(), &["token", "rotate-key"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let new = issue();
    assert_ne!(old, new);
    for t in [&old, &new] {
        let shown = taskdeck(data.path(), &["token", "show", t]);
        assert!(
            shown.status.success(),
            "{}",
            String::from_utf8_lossy(&shown.stderr)
        );
    }
    // A second rotation drops the first key: its tokens stop working.
    assert!(taskdeck(data.path(), &["token", "rotate-key"]).status.success());
    let dropped = taskdeck(data.path(), &["token", "show", &old]);
    assert!(!dropped.status.success());
    assert!(taskdeck(data.path(), &["token", "show", &new]).status.success());
    let journal = String::from_utf8_lossy(&taskdeck(data.path(), &["audit", "export"]).stdout).into_owned();
    assert_eq!(journal.matches("key.rotated").count(), 2, "{journal}");
}

#[test]
fn lifetimes_issue_times_critical_headers_and_bad_key_sets_are_refused() {
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = claims();
        f(&mut c);
        sign(Algorithm::RS256, Some("rsa-2026"), &rsa(), &c)
    };
    let far = idp()
        .verify(&with(&|c| c["exp"] = json!(9_999_999_999i64)))
        .unwrap_err();
    assert!(far.to_string().contains("more than 30 days"), "{far}");
    // Every form of a number is read: a fraction or beyond i64 skips no check.
    for exp in [json!(9_999_999_999.5f64), json!(9_223_372_036_854_775_808u64)] {
        let err = idp().verify(&with(&|c| c["exp"] = exp.clone())).unwrap_err();
        assert!(err.to_string().contains("more than 30 days"), "{exp}: {err}");
    }
    let fractional_iat = idp()
        .verify(&with(&|c| c["iat"] = json!(now() as f64 + 86_400.5)))
        .unwrap_err();
    assert!(matches!(
        fractional_iat,
        taskdeck::auth::token::TokenError::NotYetValid
    ));
    let listed_issuer = idp().verify(&with(&|c| c["iss"] = json!([ISS]))).unwrap_err();
    assert!(listed_issuer.to_string().contains("iss"), "{listed_issuer}");
    let future = idp()
        .verify(&with(&|c| c["iat"] = json!(now() + 3600)))
        .unwrap_err();
    assert!(
        matches!(future, taskdeck::auth::token::TokenError::NotYetValid),
        "{future}"
    );
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa-2026".into());
    header.crit = Some(vec!["exp-ext".into()]);
    let crit = encode(&header, &claims(), &rsa()).unwrap();
    assert!(idp().verify(&crit).unwrap_err().to_string().contains("crit"));
    // HS256 under a provider's key id: the wrong algorithm, whatever the local key is.
    let hs = sign(
        Algorithm::HS256,
        Some("rsa-2026"),
        &EncodingKey::from_secret(&[3; 32]),
        &claims(),
    );
    let err = taskdeck::auth::token::verify_any(&[3; 32], None, Some(&idp()), &hs).unwrap_err();
    assert!(err.to_string().contains("not used with it"), "{err}");

    let jwks: Value = serde_json::from_slice(&fixture("jwks.json")).unwrap();
    let rsa_key = jwks["keys"][0].clone();
    let parse =
        |keys: Value| Idp::parse(&json!({ "keys": keys }).to_string(), ISS, AUD, "team", "role").unwrap_err();
    let mut twice = rsa_key.clone();
    twice["alg"] = json!("RS256");
    assert!(parse(json!([rsa_key, twice])).contains("given twice"));
    let mut empty = rsa_key.clone();
    empty["kid"] = json!("");
    assert!(parse(json!([empty])).contains("no `kid`"));
    let mut mismatched = rsa_key.clone();
    mismatched["alg"] = json!("ES256");
    assert!(parse(json!([mismatched])).contains("declares ES256, but it is a key for RS256"));
    let mut encrypting = rsa_key.clone();
    encrypting["use"] = json!("enc");
    assert!(parse(json!([encrypting])).contains("not for verifying"));
    let mut broken = rsa_key;
    broken["n"] = json!("not base64!");
    assert!(parse(json!([broken])).contains("not a usable public key"));
}
