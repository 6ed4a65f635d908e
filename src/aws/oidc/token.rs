//! Where CircleCI's OIDC tokens come from: the job's variable while its token is valid, else a
//! fresh one from `circleci run oidc get`, which works inside every job. A job's token expires
//! an hour after CircleCI issued it; a deploy that outlives it mints another.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;

/// How long a token must still be valid to be sent: STS checks `exp` when the call arrives.
const MARGIN: Duration = Duration::from_secs(15);

/// How long one `circleci run oidc get` may take.
const MINT_TIMEOUT: Duration = Duration::from_secs(10);

/// What mints a token inside a job.
const MINT_COMMAND: &str = "circleci run oidc get";

/// Why there is no token at all.
pub fn none() -> String {
    format!(
        "`{}` is not set and `circleci` is not on PATH",
        crate::env_vars::CIRCLE_OIDC_TOKEN_V2
    )
}

/// The tokens of one run: the job's, and the ones minted since.
pub struct Tokens {
    /// The job's token and the variable it came from.
    given: Option<(&'static str, String)>,
    /// `circleci` on PATH.
    cli: Option<PathBuf>,
    /// The audience a minted token must carry: the given token's, else the organization's.
    audience: Option<String>,
    minted: Mutex<Option<String>>,
}

/// A token to send and where it came from (a variable's name or [`MINT_COMMAND`]).
pub struct Token {
    pub value: String,
    pub source: &'static str,
}

/// Which token to send, from the given token's expiry (`None` when there is none; `Some(None)`
/// when it carries none that can be read) and whether `circleci` can mint one.
#[derive(Debug, PartialEq, Eq)]
pub enum Pick {
    /// The given (or last minted) token is valid long enough.
    Given,
    /// Mint a fresh one.
    Mint,
    /// No way to a valid token: send what there is and let STS say why not.
    GivenAnyway,
    /// Nothing to send.
    Nothing,
}

pub fn pick(expiry: Option<Option<SystemTime>>, can_mint: bool, now: SystemTime) -> Pick {
    match expiry {
        Some(None) => Pick::Given,
        Some(Some(exp)) if exp > now + MARGIN => Pick::Given,
        _ if can_mint => Pick::Mint,
        Some(_) => Pick::GivenAnyway,
        None => Pick::Nothing,
    }
}

impl Tokens {
    /// The job's token (`CIRCLE_OIDC_TOKEN_V2`, else `CIRCLE_OIDC_TOKEN`) and `circleci` on
    /// `PATH`; `None` when there is neither.
    pub fn find(var: &dyn Fn(&str) -> Option<String>) -> Option<Self> {
        use crate::env_vars::{CIRCLE_OIDC_TOKEN, CIRCLE_OIDC_TOKEN_V2, CIRCLE_ORGANIZATION_ID};
        let given = [CIRCLE_OIDC_TOKEN_V2, CIRCLE_OIDC_TOKEN]
            .into_iter()
            .find_map(|name| var(name).map(|token| (name, token)));
        let cli = var("PATH").and_then(|path| on_path(&path, "circleci"));
        if given.is_none() && cli.is_none() {
            return None;
        }
        let audience = given
            .as_ref()
            .and_then(|(_, token)| claims(token))
            .and_then(|claims| match &claims["aud"] {
                serde_json::Value::String(aud) => Some(aud.clone()),
                serde_json::Value::Array(auds) => auds.first()?.as_str().map(str::to_owned),
                _ => None,
            })
            .or_else(|| var(CIRCLE_ORGANIZATION_ID));
        Some(Self {
            given,
            cli,
            audience,
            minted: Mutex::new(None),
        })
    }

    /// The variable the job's token is in, else the command that mints one: for messages.
    pub fn source(&self) -> &'static str {
        self.given.as_ref().map_or(MINT_COMMAND, |(name, _)| name)
    }

    /// A token valid for a few seconds more when one can be had.
    pub async fn token(&self) -> Result<Token, String> {
        let now = SystemTime::now();
        let minted = self.minted.lock().map(|m| m.clone()).unwrap_or_default();
        // A minted token is used again only while it says it is valid.
        if let Some(value) = minted
            && let Some(exp) = expiry(&value)
            && pick(Some(Some(exp)), false, now) == Pick::Given
        {
            return Ok(Token {
                value,
                source: MINT_COMMAND,
            });
        }
        let given = self.given.as_ref();
        match pick(
            given.map(|(_, token)| expiry(token)),
            self.cli.is_some(),
            now,
        ) {
            Pick::Given | Pick::GivenAnyway => {
                let (source, value) = given.ok_or("no token")?;
                Ok(Token {
                    value: value.clone(),
                    source,
                })
            }
            Pick::Mint => {
                let value = self.mint().await?;
                if let Ok(mut minted) = self.minted.lock() {
                    *minted = Some(value.clone());
                }
                tracing::info!("minted a fresh OIDC token with `{MINT_COMMAND}`");
                Ok(Token {
                    value,
                    source: MINT_COMMAND,
                })
            }
            Pick::Nothing => Err(none()),
        }
    }

    /// A fresh token from `circleci run oidc get`, tried three times: a failure in the middle of
    /// a rollout would fail the deploy.
    async fn mint(&self) -> Result<String, String> {
        let mut failure = String::new();
        for pause in [0, 1, 2] {
            tokio::time::sleep(Duration::from_secs(pause)).await;
            match self.mint_once().await {
                Ok(token) => return Ok(token),
                Err(problem) => failure = problem,
            }
        }
        Err(failure)
    }

    async fn mint_once(&self) -> Result<String, String> {
        let cli = self.cli.as_deref().ok_or("`circleci` is not on PATH")?;
        let mut command = tokio::process::Command::new(cli);
        command.args(["run", "oidc", "get"]);
        if let Some(audience) = &self.audience {
            command
                .arg("--claims")
                .arg(serde_json::json!({ "aud": audience }).to_string());
        }
        command
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        let out = tokio::time::timeout(MINT_TIMEOUT, command.output())
            .await
            .map_err(|_| {
                format!(
                    "`{MINT_COMMAND}` did not answer within {} s",
                    MINT_TIMEOUT.as_secs()
                )
            })?
            .map_err(|error| format!("`{MINT_COMMAND}` could not run: {error}"))?;
        let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if !out.status.success() || token.is_empty() {
            let said = String::from_utf8_lossy(&out.stderr);
            let first = said.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            return Err(format!("`{MINT_COMMAND}` failed ({}): {first}", out.status));
        }
        Ok(token)
    }
}

/// The token is a secret: never printed.
impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("source", &self.source())
            .field("cli", &self.cli)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

/// A JWT's claims, read without checking the signature: only to know when it expires and for
/// whom it was minted. STS checks it.
fn claims(token: &str) -> Option<serde_json::Value> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// When a token expires, if it says.
fn expiry(token: &str) -> Option<SystemTime> {
    let exp = claims(token)?.get("exp")?.as_u64()?;
    Some(UNIX_EPOCH + Duration::from_secs(exp))
}

/// An executable file named `name` in one of `path`'s folders.
fn on_path(path: &str, name: &str) -> Option<PathBuf> {
    std::env::split_paths(path)
        .map(|folder| folder.join(name))
        .find(|file| is_executable(file))
}

fn is_executable(file: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs_err::metadata(file).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::{Pick, pick};

    /// The job's token while it is valid for 15 s more, else a minted one; what cannot be
    /// read is left to STS to judge.
    #[test]
    fn a_token_is_minted_only_when_the_jobs_has_run_out() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let secs = |s: u64| Some(Some(now + Duration::from_secs(s)));
        let past = Some(Some(now - Duration::from_secs(5)));
        let rows = [
            ("valid for an hour", secs(3600), true, Pick::Given),
            (
                "valid for an hour, no circleci",
                secs(3600),
                false,
                Pick::Given,
            ),
            ("expires within 15 s", secs(10), true, Pick::Mint),
            ("valid for 30 s", secs(30), true, Pick::Given),
            ("expired", past, true, Pick::Mint),
            ("expired, no circleci", past, false, Pick::GivenAnyway),
            ("no exp claim", Some(None), true, Pick::Given),
            ("no token", None, true, Pick::Mint),
            ("nothing", None, false, Pick::Nothing),
        ];
        for (case, expiry, can_mint, want) in rows {
            assert_eq!(pick(expiry, can_mint, now), want, "{case}");
        }
    }

    #[test]
    fn a_tokens_expiry_and_audience_are_read_from_its_claims() {
        use base64::Engine as _;
        let part = |json: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
        let token = format!(
            "{}.{}.sig",
            part(r#"{"alg":"RS256"}"#),
            part(r#"{"aud":"org-1","exp":1700000000}"#)
        );
        assert_eq!(
            super::expiry(&token),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        );
        let var = |name: &str| (name == "CIRCLE_OIDC_TOKEN_V2").then(|| token.clone());
        let tokens = super::Tokens::find(&var).unwrap();
        assert_eq!(tokens.audience.as_deref(), Some("org-1"));
        assert_eq!(tokens.source(), "CIRCLE_OIDC_TOKEN_V2");
        assert!(!format!("{tokens:?}").contains(&token));
        assert_eq!(super::expiry("not-a-jwt"), None);
        assert!(super::Tokens::find(&|_| None).is_none());
    }
}
