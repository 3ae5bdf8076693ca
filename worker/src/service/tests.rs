//! Unit tests of the service: bad-input reasons and message keys.

use mmt_shared::wire::{IntegrationConnected, LinkAccessTokens, MessageKind, TokenResolve};

use super::message_key;
use crate::rules::decode::{Message, parse};

fn reason<T: Message>(body: &str) -> String {
    match parse::<T>(body.as_bytes()).message {
        Err(reason) => reason,
        Ok(_) => panic!("expected bad input"),
    }
}

#[test]
fn a_raw_token_with_a_quote_in_a_mistyped_field_never_reaches_the_reason() {
    let body = r#"{"clientId":"a","endUserId":"u","scope":"read","accessToken":{"brokerType":"x","accountTokens":"raw\"SECRET-TAIL-XYZ"}}"#;
    let why = reason::<IntegrationConnected>(body);
    assert!(!why.contains("SECRET-TAIL-XYZ"), "{why}");
    assert!(
        why.starts_with(
            "invalid type at `accessToken.accountTokens`: expected an array, found a string"
        ),
        "{why}"
    );
    let misplaced = r#"{"clientId":"a","endUserId":"u","scope":"read","accessToken":{"brokerType":"x","accountTokens":[{"account":"raw-secret-1","accessToken":"t"}]}}"#;
    let why = reason::<IntegrationConnected>(misplaced);
    assert!(!why.contains("raw-secret-1"), "{why}");
    assert!(
        why.contains("at `accessToken.accountTokens[0].account`: expected an object"),
        "{why}"
    );
}

#[test]
fn a_raw_token_sent_as_a_number_never_reaches_the_reason() {
    let body = r#"{"clientId":"a","endUserId":"u","scope":"read","accessToken":{"brokerType":"x","accountTokens":[{"account":{"accountId":"c"},"accessToken":98765432123456789}]}}"#;
    let why = reason::<IntegrationConnected>(body);
    assert!(!why.contains("98765432123456789"), "{why}");
    assert!(
        why.contains(
            "at `accessToken.accountTokens[0].accessToken`: expected a string, found a number"
        ),
        "{why}"
    );
}

#[test]
fn an_unknown_scope_or_operation_is_named_without_its_value() {
    let body = r#"{"clientId":"a","endUserId":"u","scope":"raw-secret-2","accessToken":{"brokerType":"x"}}"#;
    let why = reason::<IntegrationConnected>(body);
    assert!(!why.contains("raw-secret-2"), "{why}");
    assert!(
        why.contains("unknown variant at `scope`: expected `read` or `write`"),
        "{why}"
    );
}

#[test]
fn an_operation_or_scope_of_the_wrong_json_kind_names_the_field_not_a_json_error() {
    for value in ["7", "true", "null", r#"["read"]"#] {
        let why = reason::<TokenResolve>(&format!(
            r#"{{"clientId":"a","tokenId":"t","operation":{value}}}"#
        ));
        assert!(
            why.starts_with("invalid type at `operation`: expected `read` or `write`, found "),
            "{value}: {why}"
        );
        let why = reason::<IntegrationConnected>(&format!(
            r#"{{"clientId":"a","endUserId":"u","scope":{value},"accessToken":{{"brokerType":"x"}}}}"#
        ));
        assert!(
            why.starts_with("invalid type at `scope`: expected `read` or `write`, found "),
            "{value}: {why}"
        );
    }
    for value in ["7", "true", r#"["read"]"#] {
        let why = reason::<LinkAccessTokens>(&format!(
            r#"{{"clientId":"a","endUserId":"u","scope":{value}}}"#
        ));
        assert!(
            why.starts_with("invalid type at `scope`: expected `read` or `write` or null, found "),
            "{value}: {why}"
        );
    }
}

#[test]
fn non_object_bodies_are_refused() {
    assert_eq!(
        reason::<LinkAccessTokens>(r#"["acme","user-42"]"#),
        "body must be a JSON object"
    );
}

#[test]
fn derived_ids_depend_on_routing_key_and_body() {
    let a = message_key(MessageKind::IntegrationConnected, None, b"{}");
    assert_eq!(
        a,
        message_key(MessageKind::IntegrationConnected, None, b"{}")
    );
    assert_ne!(a, message_key(MessageKind::ConnectionRemoved, None, b"{}"));
    assert_ne!(
        a,
        message_key(MessageKind::IntegrationConnected, None, b"{ }")
    );
    assert_eq!(
        message_key(MessageKind::IntegrationConnected, Some("m1"), b"{}"),
        "m1"
    );
}
