//! Property tests of the operator's files: any text, and files put together
//! from their own tables and keys with hostile values, give a configuration
//! or an error naming a line of the file, never a panic; no error quotes a
//! value, and no configuration prints a client secret.

use std::path::Path;

use mmt_shared::tomlfile::{FileError, TomlFile};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use super::clients_file;
use super::integrations::Integrations;

/// What values carry; no error may quote it.
const MARKER: &str = "SECRET";

/// What the environment holds for a secret's variable; no configuration
/// may print it.
const ENV_SECRET: &str = "env-secret-value-QX7";

/// Any TOML value of the pool: the right kinds and the wrong ones, most
/// carrying the marker.
fn value() -> impl Strategy<Value = String> {
    prop::sample::select(
        [URLS, TEXTS, NUMBERS, LISTS, OTHERS]
            .concat()
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>(),
    )
}

const URLS: &[&str] = &[
    r#""https://h.example/SECRET""#,
    r#""http://127.0.0.1:9/SECRET""#,
    r#""http://localhost/SECRET""#,
    r#""http://SECRET.example/""#,
    r#""https://u:SECRET@h.example/""#,
    r#""https://SECRET@h.example/""#,
    r#""ftp://SECRET/""#,
    r#""SECRET""#,
];
const TEXTS: &[&str] = &[
    r#""SECRET-value""#,
    r#""no/such/SECRET-file""#,
    r#""""#,
    r#""basic""#,
    r#""post""#,
    r#""SECRET-auth""#,
];
const NUMBERS: &[&str] = &[
    "8",
    "0",
    "600001",
    "-98765432123456789",
    "98765432123456789000",
    "1234.5678",
];
const LISTS: &[&str] = &[
    r#"["acme-backend", "SECRET-user"]"#,
    r#"["", "  "]"#,
    "[]",
    "[1, 2]",
];
const OTHERS: &[&str] = &[
    "true",
    r#"{ inline = "SECRET" }"#,
    r#""SECRET" "SECRET""#,
    r#"'SECRET\'"#,
];

/// A value for `key`: mostly of the kind the key takes (so that files get
/// past the types to the checks behind them), sometimes any.
fn value_for(key: &str) -> BoxedStrategy<String> {
    let kind = match key {
        "url" | "token_url" | "revoke_url" => URLS,
        "broker_users" => LISTS,
        "refresh_concurrency" | "refresh_ahead_seconds" | "timeout_ms" => NUMBERS,
        _ => TEXTS,
    };
    prop_oneof![
        4 => prop::sample::select(kind).prop_map(str::to_owned),
        1 => value(),
    ]
    .boxed()
}

/// A table or key name (never the marker: a key path may be named).
fn name() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "acme",
        "coinbase",
        "b-2",
        "\"x y\"",
        "clients",
        "integrations",
    ])
    .prop_map(str::to_owned)
}

/// A table: a header (`{}` is a name), each of `keys` present with its
/// chance, and now and then a line of junk.
fn table(header: &'static str, keys: &'static [(&'static str, f64)]) -> BoxedStrategy<String> {
    let lines = keys
        .iter()
        .map(|(key, chance)| {
            prop::option::weighted(
                *chance,
                value_for(key).prop_map(move |v| format!("{key} = {v}")),
            )
        })
        .collect::<Vec<_>>();
    (name(), lines, prop::option::weighted(0.05, "[ -~]{0,12}"))
        .prop_map(move |(name, lines, junk)| {
            let mut text = header.replace("{}", &name);
            for line in lines.into_iter().flatten().chain(junk) {
                text.push('\n');
                text.push_str(&line);
            }
            text
        })
        .boxed()
}

/// A clients file: mostly client tables, some with a webhook.
fn clients_text() -> impl Strategy<Value = String> {
    const CLIENT: &[(&str, f64)] = &[("broker_users", 0.9), ("secret", 0.03), ("url", 0.03)];
    const WEBHOOK: &[(&str, f64)] = &[
        ("url", 0.9),
        ("secret_env", 0.6),
        ("secret_file", 0.3),
        ("secret", 0.03),
        ("broker_users", 0.03),
    ];
    let client = prop_oneof![
        10 => (
            table("[clients.{}]", CLIENT),
            prop::option::weighted(0.5, table("[clients.{}.webhook]", WEBHOOK)),
        )
            .prop_map(|(c, w)| match w {
                Some(w) => format!("{c}\n{w}"),
                None => c,
            }),
        1 => table("[{}]", CLIENT),
        1 => table("[clients]", CLIENT),
    ];
    prop::collection::vec(client, 0..4).prop_map(|tables| tables.join("\n"))
}

/// An integrations file: `refresh_concurrency` now and then, and mostly
/// integration tables.
fn integrations_text() -> impl Strategy<Value = String> {
    const INTEGRATION: &[(&str, f64)] = &[
        ("token_url", 0.9),
        ("client_id", 0.9),
        ("client_secret_env", 0.6),
        ("client_secret_file", 0.3),
        ("client_auth", 0.4),
        ("refresh_ahead_seconds", 0.4),
        ("revoke_url", 0.4),
        ("timeout_ms", 0.4),
        ("client_secret", 0.03),
        ("refresh_concurrency", 0.03),
    ];
    let integration = prop_oneof![
        10 => table("[integrations.{}]", INTEGRATION),
        1 => table("[{}]", INTEGRATION),
        1 => table("[integrations]", INTEGRATION),
    ];
    (
        prop::option::weighted(0.3, value_for("refresh_concurrency")),
        prop::collection::vec(integration, 0..4),
    )
        .prop_map(|(top, tables)| {
            let top = top.map(|v| format!("refresh_concurrency = {v}\n"));
            format!("{}{}", top.unwrap_or_default(), tables.join("\n"))
        })
}

/// An error names a line of the file (or the line after the last), and
/// never quotes a value.
fn clean(error: &FileError, text: &str) -> Result<(), TestCaseError> {
    let lines = text.lines().count().max(1);
    if let Some(line) = error.line {
        prop_assert!(
            (1..=lines + 1).contains(&line),
            "line {} of {}: {}",
            line,
            lines,
            error
        );
    }
    prop_assert!(!error.reason.is_empty());
    prop_assert!(!error.to_string().contains(MARKER), "{}", error);
    Ok(())
}

fn clients(text: &str) -> Result<(), TestCaseError> {
    let file = TomlFile::from_text(Path::new("clients.toml"), text.to_owned());
    if let Err(error) = clients_file::parse(&file) {
        clean(&error, text)?;
    }
    Ok(())
}

fn integrations(text: &str) -> Result<(), TestCaseError> {
    let file = TomlFile::from_text(Path::new("integrations.toml"), text.to_owned());
    let env = |name: &str| (!name.is_empty()).then(|| ENV_SECRET.to_owned());
    match Integrations::from_file(&file, &env) {
        Ok(integrations) => {
            let printed = format!("{integrations:?}");
            prop_assert!(!printed.contains(ENV_SECRET));
        }
        Err(error) => clean(&error, text)?,
    }
    Ok(())
}

proptest! {
    #[test]
    fn any_text_is_a_clients_file_or_an_error(text in ".{0,200}") {
        clients(&text)?;
    }

    #[test]
    fn any_text_is_an_integrations_file_or_an_error(text in ".{0,200}") {
        integrations(&text)?;
    }

    #[test]
    fn a_clients_file_of_its_own_keys_is_clients_or_an_error_that_quotes_no_value(
        text in clients_text(),
    ) {
        clients(&text)?;
    }

    #[test]
    fn an_integrations_file_of_its_own_keys_is_integrations_or_an_error_that_quotes_no_value(
        text in integrations_text(),
    ) {
        integrations(&text)?;
    }
}

/// The generators reach good files: without them the properties would
/// only ever see errors.
#[test]
fn good_files_of_the_same_values_parse() {
    let clients = "[clients.acme]\nbroker_users = [\"acme-backend\", \"SECRET-user\"]\n[clients.acme.webhook]\nurl = \"https://h.example/SECRET\"\nsecret_env = \"SECRET-value\"\n";
    let file = TomlFile::from_text(Path::new("clients.toml"), clients.to_owned());
    assert!(clients_file::parse(&file).is_ok());
    let text = "refresh_concurrency = 8\n[integrations.coinbase]\ntoken_url = \"http://127.0.0.1:9/SECRET\"\nclient_id = \"SECRET-value\"\nclient_secret_env = \"SECRET-value\"\n";
    let file = TomlFile::from_text(Path::new("integrations.toml"), text.to_owned());
    let parsed = Integrations::from_file(&file, &|_| Some(ENV_SECRET.to_owned()));
    match parsed {
        Ok(integrations) => {
            assert_eq!(integrations.by_broker_type.len(), 1);
            assert!(!format!("{integrations:?}").contains(ENV_SECRET));
        }
        Err(error) => panic!("{error}"),
    }
}
