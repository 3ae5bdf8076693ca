//! The clients file (`--clients`, CONTRACT.md §10): TOML read strictly into
//! [`Clients`]; an unknown key, a missing one, an empty list or a webhook
//! that is not exactly right is refused with the file, the line and the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mmt_shared::tomlfile::{FileError, TomlFile};
use serde::Deserialize;
use toml::Spanned;

use crate::rules::identity::{Client, Clients, Webhook, WebhookSecret};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSchema {
    #[serde(default)]
    clients: BTreeMap<String, ClientSchema>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientSchema {
    broker_users: Spanned<Vec<String>>,
    #[serde(default)]
    webhook: Option<Spanned<WebhookSchema>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookSchema {
    url: Spanned<String>,
    #[serde(default)]
    secret_env: Option<String>,
    #[serde(default)]
    secret_file: Option<PathBuf>,
}

/// Reads and validates the clients file at `path`.
pub fn load(path: &Path) -> Result<Clients, FileError> {
    parse(&TomlFile::read(path)?)
}

/// Validates a clients file already read.
pub fn parse(file: &TomlFile) -> Result<Clients, FileError> {
    let schema: FileSchema = file.parse()?;
    let mut clients = Vec::with_capacity(schema.clients.len());
    for (client_id, entry) in schema.clients {
        let key = |field: &str| format!("clients.{client_id}.{field}");
        let users = entry.broker_users.get_ref();
        if users.is_empty() {
            return Err(file.error_at(
                entry.broker_users.span(),
                &key("broker_users"),
                "must name at least one broker user",
            ));
        }
        if users.iter().any(|u| u.trim().is_empty()) {
            return Err(file.error_at(
                entry.broker_users.span(),
                &key("broker_users"),
                "holds an empty broker user",
            ));
        }
        let webhook = match entry.webhook {
            None => None,
            Some(webhook) => {
                let span = webhook.span();
                let webhook = webhook.into_inner();
                let url = file.check_url(&key("webhook.url"), &webhook.url)?;
                let secret = match (webhook.secret_env, webhook.secret_file) {
                    (Some(env), None) if !env.is_empty() => WebhookSecret::Env(env),
                    (None, Some(path)) if !path.as_os_str().is_empty() => WebhookSecret::File(path),
                    _ => {
                        return Err(file.error_at(
                            span,
                            &key("webhook"),
                            "needs exactly one of secret_env and secret_file",
                        ));
                    }
                };
                Some(Webhook { url, secret })
            }
        };
        let broker_users = entry.broker_users.into_inner().into_iter().collect();
        clients.push((
            client_id,
            Client {
                broker_users,
                webhook,
            },
        ));
    }
    Ok(Clients::new(clients))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<Clients, FileError> {
        parse(&TomlFile::from_text(
            Path::new("clients.toml"),
            text.to_owned(),
        ))
    }

    #[test]
    fn the_contract_example_parses() {
        let clients = parse_text(
            r#"
[clients.acme]
broker_users = ["acme-backend", "acme-gateway"]

[clients.acme.webhook]
url = "https://hooks.acme.example/mmt"
secret_env = "MMT_ACME_WEBHOOK_SECRET"

[clients.globex]
broker_users = ["globex-app"]
"#,
        )
        .expect("valid");
        assert_eq!(clients.len(), 2);
        let acme = clients.get("acme").expect("acme");
        assert!(acme.broker_users.contains("acme-gateway"));
        let webhook = acme.webhook.as_ref().expect("webhook");
        assert_eq!(webhook.url.host_str(), Some("hooks.acme.example"));
        assert_eq!(
            webhook.secret,
            WebhookSecret::Env("MMT_ACME_WEBHOOK_SECRET".into())
        );
        assert!(clients.get("globex").expect("globex").webhook.is_none());
    }

    #[test]
    fn an_unknown_key_is_refused_with_file_line_and_key() {
        let e = parse_text("[clients.acme]\nbroker_users = [\"a\"]\nbroker_user = \"b\"\n")
            .unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert_eq!(e.path, Path::new("clients.toml"));
        assert!(e.reason.starts_with("unknown key"), "{e}");
        let e = parse_text("[client.acme]\nbroker_users = [\"a\"]\n").unwrap_err();
        assert!(e.reason.starts_with("unknown key"), "{e}");
    }

    #[test]
    fn an_unknown_webhook_key_is_refused() {
        let e = parse_text(
            "[clients.acme]\nbroker_users = [\"a\"]\n[clients.acme.webhook]\nurl = \"https://h.example/\"\nsecret_env = \"S\"\nsecret = \"hunter2\"\n",
        )
        .unwrap_err();
        assert_eq!(e.line, Some(6), "{e}");
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

    #[test]
    fn broker_users_must_be_given_and_not_empty() {
        let e = parse_text("[clients.acme]\n").unwrap_err();
        assert!(e.reason.contains("broker_users"), "{e}");
        let e = parse_text("[clients.acme]\nbroker_users = []\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("clients.acme.broker_users"));
        assert_eq!(e.line, Some(2));
        let e = parse_text("[clients.acme]\nbroker_users = [\"a\", \" \"]\n").unwrap_err();
        assert_eq!(e.reason, "holds an empty broker user");
    }

    #[test]
    fn a_webhook_needs_exactly_one_secret() {
        let base = "[clients.acme]\nbroker_users = [\"a\"]\n[clients.acme.webhook]\nurl = \"https://h.example/\"\n";
        for extra in ["", "secret_env = \"S\"\nsecret_file = \"/s\"\n"] {
            let e = parse_text(&format!("{base}{extra}")).unwrap_err();
            assert_eq!(e.key.as_deref(), Some("clients.acme.webhook"), "{e}");
            assert_eq!(e.reason, "needs exactly one of secret_env and secret_file");
        }
        let ok =
            parse_text(&format!("{base}secret_file = \"/run/secrets/acme\"\n")).expect("valid");
        assert_eq!(
            ok.get("acme")
                .and_then(|c| c.webhook.as_ref())
                .map(|w| &w.secret),
            Some(&WebhookSecret::File("/run/secrets/acme".into()))
        );
    }

    #[test]
    fn a_webhook_url_must_be_https_or_loopback() {
        let e = parse_text(
            "[clients.acme]\nbroker_users = [\"a\"]\n[clients.acme.webhook]\nurl = \"http://hooks.example/\"\nsecret_env = \"S\"\n",
        )
        .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("clients.acme.webhook.url"));
        assert_eq!(e.line, Some(4));
    }
}
