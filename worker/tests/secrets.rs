//! Proof that the worker's keys and raw tokens cannot be printed: at
//! compile time, none of the types that hold them implements `Display`, and
//! those without a redacting `Debug` implement no `Debug` at all; at run
//! time, the redacting `Debug`s never show a known key or token. And the
//! sealed form of a token's secrets is byte for byte what it was when they
//! were plain strings, so records on disk read as before.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::{Debug, Display};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use mmt_shared::secret::Secret;
use mmt_shared::tomlfile::TomlFile;
use mmt_worker::config::integrations::{ClientSecret, Integration, Integrations};
use mmt_worker::refresh::pass::Leased;
use mmt_worker::rules::refresh::Grant;
use mmt_worker::service::Outcome;
use mmt_worker::store::TokenSecrets;
use mmt_worker::store::crypto::KeyRing;
use proptest::prelude::*;
use static_assertions::assert_not_impl_any;

// Raw tokens: no printing at all.
assert_not_impl_any!(TokenSecrets: Debug, Display);
assert_not_impl_any!(Leased: Debug, Display);
assert_not_impl_any!(Outcome: Debug, Display);
// Keys and secrets with a redacting `Debug` (checked below): no `Display`.
assert_not_impl_any!(KeyRing: Display);
assert_not_impl_any!(Grant: Display);
assert_not_impl_any!(ClientSecret: Display);
assert_not_impl_any!(Integration: Display);

const KEY_HEX: &str = "00112233445566778899aabbccddeeff0123456789abcdeffedcba9876543210";

#[test]
fn the_master_key_never_prints() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("mmt.key");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .expect("creates");
    file.write_all(KEY_HEX.as_bytes()).expect("writes");
    drop(file);
    let key = KeyRing::load(&path, dir.path()).expect("a key");
    let printed = format!("{key:?} {key:#?}");
    assert_eq!(format!("{key:?}"), "KeyRing(active 0, ids [0], ***)");
    assert!(
        !printed.to_lowercase().contains(&KEY_HEX[..16]),
        "{printed}"
    );
}

#[test]
fn a_grant_and_an_integration_never_print_their_secrets() {
    let grant = Grant {
        access_token: Secret::new("S3CRET-access".into()),
        refresh_token: Some(Secret::new("S3CRET-refresh".into())),
        expires_in: Some(60),
        refresh_token_expires_in: None,
    };
    let printed = format!("{grant:?} {grant:#?}");
    assert!(!printed.contains("S3CRET"), "{printed}");

    let text = "[integrations.x]\ntoken_url = \"https://h.example/t\"\nclient_id = \"id\"\nclient_secret_env = \"V\"\n";
    let file = TomlFile::from_text(Path::new("integrations.toml"), text.into());
    let integrations =
        Integrations::from_file(&file, &|_| Some("S3CRET-client".into())).expect("valid");
    let printed = format!("{integrations:?} {integrations:#?}");
    assert!(!printed.contains("S3CRET"), "{printed}");
    assert!(printed.contains("ClientSecret(***)"), "{printed}");
}

/// What a token's secrets were before they were [`Secret`]s.
#[derive(serde::Serialize)]
struct PlainSecrets {
    access_token: String,
    refresh_token: Option<String>,
}

proptest! {
    #[test]
    fn token_secrets_are_sealed_as_the_same_bytes_as_plain_strings(
        access in any::<String>(), refresh in any::<Option<String>>(),
    ) {
        let secrets = TokenSecrets {
            access_token: Secret::new(access.clone()),
            refresh_token: refresh.clone().map(Secret::new),
        };
        let bytes = postcard::to_stdvec(&secrets)?;
        let plain = PlainSecrets { access_token: access.clone(), refresh_token: refresh.clone() };
        prop_assert_eq!(&bytes, &postcard::to_stdvec(&plain)?);
        let back: TokenSecrets = postcard::from_bytes(&bytes)?;
        prop_assert_eq!(back.access_token.expose(), access.as_str());
        prop_assert_eq!(back.refresh_token.as_ref().map(Secret::expose), refresh.as_deref());
    }
}
