//! Finding and reaching a running engine: the address file a server writes into its data
//! directory (never a secret: the address only), and the short-lived token a local client
//! mints for itself when it can read the data directory's signing key (the same OS user).

use crate::auth::Identity;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

/// The file, in the data directory, naming the address of the server that holds it.
pub const SERVER_FILE: &str = "server.json";

/// How long a self-minted local token lives; the client mints a new one before it ends.
pub const LOCAL_TOKEN_TTL: Duration = Duration::from_secs(15 * 60);

/// What `server.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerFile {
    /// Base URL, e.g. `http://127.0.0.1:7420`.
    pub url: String,
    /// The serving process.
    pub pid: u32,
    /// The server's TLS certificate (a path, never a secret), which local clients trust for
    /// this server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<std::path::PathBuf>,
}

impl ServerFile {
    /// Publishes the address of this process's server (replaced atomically).
    pub fn write(data: &Path, url: &str, cert: Option<&Path>) -> std::io::Result<()> {
        let file = ServerFile {
            url: url.to_string(),
            pid: std::process::id(),
            cert: cert.map(|c| std::path::absolute(c).unwrap_or_else(|_| c.to_path_buf())),
        };
        let text = serde_json::to_vec_pretty(&file).map_err(std::io::Error::other)?;
        crate::fsutil::replace_private(&data.join(SERVER_FILE), &text)
    }

    /// Removes the file if this process wrote it.
    pub fn remove_own(data: &Path) {
        if discover(data).is_some_and(|f| f.pid == std::process::id()) {
            let _ = std::fs::remove_file(data.join(SERVER_FILE));
        }
    }
}

/// The server named in `data`'s address file, if there is a readable one.
pub fn discover(data: &Path) -> Option<ServerFile> {
    let text = crate::fsutil::read_small(&data.join(SERVER_FILE), 4096).ok()?;
    serde_json::from_str(&text).ok()
}

/// The server of the process that holds `data` now: the address file only counts when its
/// pid is the lock holder's (`taskdeck.pid`); a file left by a server that died is ignored.
pub fn discover_holder(data: &Path) -> Option<ServerFile> {
    let file = discover(data)?;
    let held = crate::fsutil::read_small(&data.join("taskdeck.pid"), 200).ok()?;
    let pid: u32 = held
        .strip_prefix("taskdeck process ")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    (pid == file.pid).then_some(file)
}

/// A token naming the local user as admin, signed with `data`'s key, valid for
/// `LOCAL_TOKEN_TTL`: how the two README commands keep working with no set-up when another
/// process holds the data directory. Only someone who can read the key (its owner) can mint
/// one.
pub fn local_token(key: &[u8]) -> Result<String, crate::auth::token::TokenError> {
    let proof = crate::auth::Authn {
        amr: vec![crate::auth::token::LOCAL_KEY_AMR.into()],
        auth_time: None,
    };
    crate::auth::token::issue(
        key,
        &Identity::local(&crate::engine::default_operator()?).authenticated(proof),
        LOCAL_TOKEN_TTL,
    )
}

/// Connects to `url` with `options`, checking the server answers and whom the token names.
pub async fn connect(options: super::HttpOptions) -> Result<super::Http, super::Problem> {
    super::Http::connect(options).await
}
