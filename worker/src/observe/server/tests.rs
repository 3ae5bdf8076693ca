//! The console's answers over a real store: searches, the detail lookup
//! and the refresh fields.

use mmt_shared::wire::MessageKind;
use serde_json::{Value, json};

use super::*;
use crate::service::Inbound;
use crate::store::Store;
use crate::store::crypto::KeyRing;

fn service(dir: &std::path::Path) -> Service {
    let store = Store::open(dir, KeyRing::generate().expect("random key")).expect("opens");
    Service::new(store, Vec::new())
}

fn connect(service: &Service, client: &str, user: &str, scope: &str) {
    let body = json!({
        "clientId": client, "endUserId": user, "scope": scope,
        "accessToken": {"brokerType": "coinbase", "accountTokens": [
            {"account": {"accountId": "acct"}, "accessToken": "raw"}
        ]}
    })
    .to_string();
    service
        .handle(&Inbound {
            kind: MessageKind::IntegrationConnected,
            body: body.as_bytes(),
            message_id: None,
            timestamp: None,
            received_at: now_millis(),
            user_id: None,
        })
        .expect("stored");
}

fn ask(service: &Service, request: Value) -> TokensReply {
    let stats = Stats::new(&Namespace::new("t").expect("valid"));
    let reply = answer(
        Request::Tokens,
        request.to_string().as_bytes(),
        service,
        &stats,
    )
    .expect("answered");
    serde_json::from_slice(&reply).expect("a listing")
}

#[test]
fn a_search_sorts_every_token_and_counts_the_matches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let service = service(dir.path());
    for (client, user) in [
        ("zeta", "u1"),
        ("acme", "u2"),
        ("mid", "u3"),
        ("acme", "u4"),
    ] {
        connect(&service, client, user, "read");
    }
    connect(&service, "globex", "u5", "write");
    let page = ask(
        &service,
        json!({"sort": "clientId", "limit": 2, "offset": 1, "filter": "read"}),
    );
    let clients: Vec<&str> = page.tokens.iter().map(|t| t.client_id.as_str()).collect();
    assert_eq!(clients, ["acme", "mid"]);
    assert_eq!(page.total, Some(4), "the write token does not match");
    assert_eq!(page.next_offset, Some(3));
    assert_eq!(page.scanned, 5);
    let users: Vec<_> = ask(&service, json!({"sort": "endUserId", "descending": true}))
        .tokens
        .into_iter()
        .filter_map(|t| t.end_user_id)
        .collect();
    assert_eq!(users, ["u5", "u4", "u3", "u2", "u1"]);
    let by_client = ask(&service, json!({"byClient": true}));
    assert_eq!(
        by_client.by_client.first(),
        Some(&ClientCount {
            client_id: "acme".into(),
            count: 2
        })
    );
    assert_eq!(by_client.total, Some(5));
}

#[test]
fn one_token_is_found_by_its_id_with_every_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let service = service(dir.path());
    connect(&service, "acme", "user-42", "write");
    let any = ask(&service, json!({}));
    let id = any.tokens[0].token_id.clone();
    let found = ask(&service, json!({"tokenId": id}));
    assert_eq!(found.tokens.len(), 1);
    let row = &found.tokens[0];
    assert_eq!(row.end_user_id.as_deref(), Some("user-42"));
    assert_eq!(row.account_id.as_deref(), Some("acct"));
    assert!(row.created_at.is_some());
    let missing = ask(&service, json!({"tokenId": "tok_nope"}));
    assert!(missing.tokens.is_empty());
}

#[test]
fn rows_carry_the_refresh_record_of_the_tokens_the_engine_owns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let service = service(dir.path());
    connect(&service, "acme", "user-1", "read");
    connect(&service, "acme", "user-2", "read");
    let listed = ask(&service, json!({}));
    assert!(listed.tokens.iter().all(|t| t.refresh.is_none()));
    let id = listed.tokens[0].token_id.clone();
    let record = crate::store::RefreshRecord {
        due_at: now_millis() + 60_000,
        attempts: 2,
        last_error: Some("http_503".into()),
        last_refreshed_at: Some(now_millis() - 3_600_000),
        ..crate::store::RefreshRecord::default()
    };
    let store = service.store();
    store
        .write(|tx| {
            tx.put_refresh(&id, None, &record, None)?;
            Ok(crate::store::Decision::Commit(()))
        })
        .expect("commits");
    let want = crate::observe::query::refresh_of(&record, None, now_millis());
    let found = ask(&service, json!({"tokenId": id}));
    assert_eq!(found.tokens[0].refresh.as_ref(), Some(&want));
    let page = ask(&service, json!({}));
    let on_page: Vec<_> = page.tokens.iter().map(|t| t.refresh.is_some()).collect();
    assert_eq!(on_page.iter().filter(|r| **r).count(), 1, "{on_page:?}");
    let searched = ask(
        &service,
        json!({"sort": "clientId", "filter": "user-1 user-2"}),
    );
    assert!(searched.tokens.is_empty());
    let searched = ask(&service, json!({"sort": "clientId"}));
    let with_refresh = searched
        .tokens
        .iter()
        .find(|t| t.token_id == id)
        .and_then(|t| t.refresh.clone());
    assert_eq!(with_refresh.map(|r| r.last_error), Some(want.last_error));
}

#[test]
fn a_malformed_console_request_is_answered_without_quoting_its_values() {
    let dir = tempfile::tempdir().expect("tempdir");
    let service = service(dir.path());
    let stats = Stats::new(&Namespace::new("t").expect("valid"));
    for (request, body, starts) in [
        (
            Request::Tokens,
            r#"{"sort":"raw-secret-1"}"#,
            "body does not match console.tokens (line 1, column ",
        ),
        (
            Request::Snapshot,
            r#"{"recent":"raw-secret-2"}"#,
            "body does not match console.snapshot (line 1, column ",
        ),
        (
            Request::Tokens,
            r#"{"raw-secret-3"#,
            "body is not valid JSON (line 1, column ",
        ),
    ] {
        let reply = answer(request, body.as_bytes(), &service, &stats).expect("answered");
        let reply: Value = serde_json::from_slice(&reply).expect("JSON");
        let message = reply["error"]["message"].as_str().expect("a message");
        assert!(!message.contains("raw-secret"), "{message}");
        assert!(message.starts_with(starts), "{message}");
        assert_eq!(reply["error"]["code"], "invalid_message");
    }
}
