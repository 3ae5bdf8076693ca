//! The integrations file (`--integrations`, CONTRACT.md §9): per brokerType,
//! how to reach the provider's OAuth 2.0 token endpoint. Parsed strictly
//! ([`mmt_shared::tomlfile`]), refused with file, line and key; the client
//! secret comes from an environment variable or a file, never from the TOML,
//! and lives in a [`ClientSecret`] that zeroizes and never prints.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mmt_shared::tomlfile::{FileError, TomlFile};
use serde::Deserialize;
use toml::Spanned;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Default of `refresh_concurrency`.
pub const DEFAULT_CONCURRENCY: usize = 16;
/// Default of `refresh_ahead_seconds`.
pub const DEFAULT_REFRESH_AHEAD_SECS: u64 = 300;
/// Default of `timeout_ms`.
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;
/// The largest `refresh_concurrency` accepted.
pub const MAX_CONCURRENCY: usize = 4096;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSchema {
    refresh_concurrency: Option<Spanned<usize>>,
    #[serde(default)]
    integrations: BTreeMap<String, IntegrationSchema>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IntegrationSchema {
    token_url: Spanned<String>,
    client_id: Spanned<String>,
    client_secret_env: Option<Spanned<String>>,
    client_secret_file: Option<Spanned<String>>,
    client_auth: Option<ClientAuth>,
    refresh_ahead_seconds: Option<u64>,
    revoke_url: Option<Spanned<String>>,
    timeout_ms: Option<Spanned<u64>>,
}

/// How the worker authenticates to the provider.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// HTTP Basic with the form-urlencoded id and secret (RFC 6749 §2.3.1).
    #[default]
    Basic,
    /// `client_id` and `client_secret` in the form body.
    Post,
}

/// An OAuth client secret: zeroized on drop, never printed.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct ClientSecret(String);

impl ClientSecret {
    /// The raw value; only to authenticate to the provider.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientSecret(***)")
    }
}

/// One configured integration.
#[derive(Clone, Debug)]
pub struct Integration {
    /// The brokerType it serves.
    pub broker_type: String,
    /// The token endpoint (never logged: it may carry a query).
    pub token_url: url::Url,
    /// The OAuth client id.
    pub client_id: String,
    /// The OAuth client secret.
    pub client_secret: ClientSecret,
    /// Basic or post.
    pub client_auth: ClientAuth,
    /// How long before `expiresAt` a refresh is due (at most half the
    /// token's lifetime: see [`crate::rules::refresh`]).
    pub refresh_ahead: Duration,
    /// The RFC 7009 revocation endpoint, when configured.
    pub revoke_url: Option<url::Url>,
    /// The timeout of one HTTP request.
    pub timeout: Duration,
}

/// The whole file.
#[derive(Clone, Debug, Default)]
pub struct Integrations {
    /// Where it was read from (`None`: no `--integrations`).
    pub path: Option<PathBuf>,
    /// Most refreshes in flight at once.
    pub concurrency: usize,
    /// By brokerType.
    pub by_broker_type: BTreeMap<String, Integration>,
}

impl Integrations {
    /// No integration configured: every expiring token follows v1 rules.
    pub fn none() -> Self {
        Self {
            path: None,
            concurrency: DEFAULT_CONCURRENCY,
            by_broker_type: BTreeMap::new(),
        }
    }

    /// Reads and checks the file at `path`, secrets included.
    pub fn load(path: &Path) -> Result<Self, FileError> {
        let file = TomlFile::read(path)?;
        Self::from_file(&file, &|name| std::env::var(name).ok())
    }

    /// Checks a file already read; `env` looks up environment variables.
    pub fn from_file(
        file: &TomlFile,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, FileError> {
        let schema: FileSchema = file.parse()?;
        let concurrency = match &schema.refresh_concurrency {
            None => DEFAULT_CONCURRENCY,
            Some(c) if (1..=MAX_CONCURRENCY).contains(c.get_ref()) => *c.get_ref(),
            Some(c) => {
                return Err(file.error_at(
                    c.span(),
                    "refresh_concurrency",
                    format!("must be between 1 and {MAX_CONCURRENCY}"),
                ));
            }
        };
        let mut by_broker_type = BTreeMap::new();
        for (broker_type, entry) in schema.integrations {
            let integration = integration(file, &broker_type, entry, env)?;
            by_broker_type.insert(broker_type, integration);
        }
        Ok(Self {
            path: Some(file.path().to_owned()),
            concurrency,
            by_broker_type,
        })
    }

    /// The integration of `broker_type`, if configured.
    pub fn get(&self, broker_type: &str) -> Option<&Integration> {
        self.by_broker_type.get(broker_type)
    }
}

fn integration(
    file: &TomlFile,
    broker_type: &str,
    entry: IntegrationSchema,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Integration, FileError> {
    let key = |name: &str| format!("integrations.{broker_type}.{name}");
    let token_url = file.check_url(&key("token_url"), &entry.token_url)?;
    let revoke_url = entry
        .revoke_url
        .as_ref()
        .map(|u| file.check_url(&key("revoke_url"), u))
        .transpose()?;
    if entry.client_id.get_ref().is_empty() {
        return Err(file.error_at(entry.client_id.span(), &key("client_id"), "is empty"));
    }
    let client_secret = match (&entry.client_secret_env, &entry.client_secret_file) {
        (Some(var), None) => match env(var.get_ref()) {
            Some(value) if !value.is_empty() => ClientSecret(value),
            _ => {
                return Err(file.error_at(
                    var.span(),
                    &key("client_secret_env"),
                    "names an environment variable that is unset or empty",
                ));
            }
        },
        (None, Some(path)) => {
            let read = std::fs::read_to_string(path.get_ref()).map_err(|e| {
                file.error_at(
                    path.span(),
                    &key("client_secret_file"),
                    format!("cannot be read ({})", e.kind()),
                )
            })?;
            let value = ClientSecret(read.trim().to_owned());
            drop(zeroize::Zeroizing::new(read));
            if value.expose().is_empty() {
                return Err(file.error_at(
                    path.span(),
                    &key("client_secret_file"),
                    "names an empty file",
                ));
            }
            value
        }
        (Some(var), Some(_)) => {
            return Err(file.error_at(
                var.span(),
                &key("client_secret_env"),
                "give client_secret_env or client_secret_file, not both",
            ));
        }
        (None, None) => {
            return Err(file.error_at(
                entry.client_id.span(),
                &format!("integrations.{broker_type}"),
                "needs client_secret_env or client_secret_file",
            ));
        }
    };
    let timeout_ms = match &entry.timeout_ms {
        None => DEFAULT_TIMEOUT_MS,
        Some(t) if (1..=600_000).contains(t.get_ref()) => *t.get_ref(),
        Some(t) => {
            return Err(file.error_at(
                t.span(),
                &key("timeout_ms"),
                "must be between 1 and 600000",
            ));
        }
    };
    Ok(Integration {
        broker_type: broker_type.to_owned(),
        token_url,
        client_id: entry.client_id.into_inner(),
        client_secret,
        client_auth: entry.client_auth.unwrap_or_default(),
        refresh_ahead: Duration::from_secs(
            entry
                .refresh_ahead_seconds
                .unwrap_or(DEFAULT_REFRESH_AHEAD_SECS),
        ),
        revoke_url,
        timeout: Duration::from_millis(timeout_ms),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Integrations, FileError> {
        let file = TomlFile::from_text(Path::new("integrations.toml"), text.into());
        Integrations::from_file(&file, &|name| {
            (name == "CB_SECRET").then(|| "s3cr3t-value".to_owned())
        })
    }

    const GOOD: &str = r#"refresh_concurrency = 8

[integrations.coinbase]
token_url = "https://api.coinbase.com/oauth/token"
client_id = "mmt-prod"
client_secret_env = "CB_SECRET"
client_auth = "post"
refresh_ahead_seconds = 120
revoke_url = "https://api.coinbase.com/oauth/revoke"
timeout_ms = 2500
"#;

    #[test]
    fn the_contract_example_parses_with_every_field() {
        let all = parse(GOOD).expect("parses");
        assert_eq!(all.concurrency, 8);
        let cb = all.get("coinbase").expect("configured");
        assert_eq!(cb.client_id, "mmt-prod");
        assert_eq!(cb.client_secret.expose(), "s3cr3t-value");
        assert_eq!(cb.client_auth, ClientAuth::Post);
        assert_eq!(cb.refresh_ahead, Duration::from_secs(120));
        assert_eq!(cb.timeout, Duration::from_millis(2500));
        assert!(cb.revoke_url.is_some());
        assert!(!format!("{all:?}").contains("s3cr3t-value"));
    }

    #[test]
    fn defaults_apply_when_optional_keys_are_absent() {
        let all = parse(
            "[integrations.x]\ntoken_url = \"http://127.0.0.1:9/t\"\nclient_id = \"c\"\nclient_secret_env = \"CB_SECRET\"\n",
        )
        .expect("parses");
        assert_eq!(all.concurrency, DEFAULT_CONCURRENCY);
        let x = all.get("x").expect("configured");
        assert_eq!(x.client_auth, ClientAuth::Basic);
        assert_eq!(x.refresh_ahead, Duration::from_secs(300));
        assert_eq!(x.timeout, Duration::from_millis(DEFAULT_TIMEOUT_MS));
    }

    #[test]
    fn a_bad_file_names_the_line_and_key_and_never_a_value() {
        for (text, line, key) in [
            (
                GOOD.replace(
                    "https://api.coinbase.com/oauth/token",
                    "http://evil.example/t",
                ),
                4,
                "integrations.coinbase.token_url",
            ),
            (
                GOOD.replace("CB_SECRET", "UNSET_VAR"),
                6,
                "integrations.coinbase.client_secret_env",
            ),
            (
                GOOD.replace("timeout_ms = 2500", "timeout_ms = 0"),
                10,
                "integrations.coinbase.timeout_ms",
            ),
            (
                GOOD.replace("client_auth = \"post\"", "client_auth = \"hunter2\""),
                7,
                "integrations.coinbase.client_auth",
            ),
            (
                GOOD.replace("timeout_ms", "client_secret = \"hunter2\"\ntimeout_ms"),
                10,
                "integrations.coinbase",
            ),
            (
                GOOD.replace("refresh_concurrency = 8", "refresh_concurrency = 0"),
                1,
                "refresh_concurrency",
            ),
        ] {
            let e = parse(&text).expect_err("refused");
            assert_eq!(e.line, Some(line), "{e}");
            assert!(e.key.as_deref().is_some_and(|k| k.starts_with(key)), "{e}");
            assert!(
                !e.to_string().contains("hunter2") && !e.to_string().contains("evil"),
                "{e}"
            );
        }
    }

    #[test]
    fn the_secret_is_read_from_a_file_and_trimmed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "from-file\n").expect("writes");
        let text = format!(
            "[integrations.x]\ntoken_url = \"https://a.example/t\"\nclient_id = \"c\"\nclient_secret_file = \"{}\"\n",
            secret.display()
        );
        let all = parse(&text).expect("parses");
        assert_eq!(
            all.get("x").expect("configured").client_secret.expose(),
            "from-file"
        );
    }
}
