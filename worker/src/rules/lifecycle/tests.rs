//! Unit tests of the lifecycle rules: every row they decide, every code
//! they give, without a disk.

use super::*;

const NOW: UnixMillis = 1_795_000_000_000;

fn input(scope: Scope) -> ConnectInput<'static> {
    ConnectInput {
        client_id: "acme",
        end_user_id: "user-42",
        broker_type: "coinbase",
        broker_name: "Coinbase",
        account_id: "cb-1",
        account_name: "Main",
        scope,
        expires_in_seconds: None,
        refresh_expires_in_seconds: None,
        has_refresh_token: false,
        at: NOW,
    }
}

fn mint() -> String {
    "tok_new".to_owned()
}

fn live(scope: Scope) -> TokenMeta {
    connect(None, &input(scope), NOW, mint).meta
}

fn holder<'a>(lookup: Lookup<'a>, same_secrets: bool) -> Holder<'a> {
    Holder {
        token_id: "tok_old",
        lookup,
        same_secrets,
    }
}

fn tomb(client: &str) -> Tombstone {
    Tombstone {
        client_id: client.into(),
        broker_type: "coinbase".into(),
        scope: Scope::Read,
        revoked_at: NOW,
    }
}

#[test]
fn same_identity_connecting_again_rotates_and_is_active_again() {
    let mut old = live(Scope::Read);
    old.state = TokenState::ReauthRequired;
    old.created_at = NOW - 5_000;
    let plan = connect(
        Some(holder(Lookup::Live(&old), false)),
        &input(Scope::Read),
        NOW,
        mint,
    );
    assert_eq!(plan.token_id, "tok_old");
    assert!(!plan.created);
    assert_eq!(plan.event, EventKind::TokenRotated);
    assert_eq!(plan.meta.state, TokenState::Active);
    assert_eq!(plan.meta.created_at, NOW - 5_000);
    assert_eq!(plan.meta.updated_at, NOW);
}

#[test]
fn the_same_raw_token_connecting_again_is_a_reconnection_not_a_rotation() {
    let mut old = live(Scope::Read);
    old.state = TokenState::ReauthRequired;
    let plan = connect(
        Some(holder(Lookup::Live(&old), true)),
        &input(Scope::Read),
        NOW,
        mint,
    );
    assert_eq!(plan.token_id, "tok_old");
    assert!(!plan.created);
    assert_eq!(plan.event, EventKind::TokenReconnected);
    assert_eq!(plan.meta.state, TokenState::Active);
}

#[test]
fn no_live_token_for_the_identity_mints() {
    for holder in [
        None,
        Some(holder(Lookup::Missing, false)),
        Some(holder(Lookup::Revoked(&tomb("acme")), true)),
    ] {
        let plan = connect(holder, &input(Scope::Write), NOW, mint);
        assert_eq!(plan.token_id, "tok_new", "{holder:?}");
        assert!(plan.created);
        assert_eq!(plan.event, EventKind::TokenIssued);
        assert_eq!(plan.meta.created_at, NOW);
    }
}

#[test]
fn write_on_a_read_token_is_scope_mismatch() {
    let meta = live(Scope::Read);
    let err = resolve(Lookup::Live(&meta), "acme", Operation::Write, NOW).expect_err("refused");
    assert_eq!(err.code, ErrorCode::ScopeMismatch);
}

#[test]
fn read_on_a_write_token_is_allowed() {
    let meta = live(Scope::Write);
    assert_eq!(
        resolve(Lookup::Live(&meta), "acme", Operation::Read, NOW),
        Ok(())
    );
    assert_eq!(
        resolve(Lookup::Live(&meta), "acme", Operation::Write, NOW),
        Ok(())
    );
}

#[test]
fn revoked_token_resolves_to_revoked_for_its_client() {
    let err =
        resolve(Lookup::Revoked(&tomb("acme")), "acme", Operation::Read, NOW).expect_err("refused");
    assert_eq!(err.code, ErrorCode::Revoked);
}

#[test]
fn another_clients_token_is_not_found_live_or_revoked() {
    let meta = live(Scope::Write);
    for lookup in [
        Lookup::Live(&meta),
        Lookup::Revoked(&tomb("acme")),
        Lookup::Missing,
    ] {
        let err = resolve(lookup, "other", Operation::Read, NOW).expect_err("refused");
        assert_eq!(err.code, ErrorCode::NotFound);
        let err = revoke(lookup, "other").expect_err("refused");
        assert_eq!(err.code, ErrorCode::NotFound);
    }
}

#[test]
fn revoking_twice_says_already_revoked() {
    let meta = live(Scope::Read);
    assert_eq!(revoke(Lookup::Live(&meta), "acme"), Ok(RevokePlan::Revoke));
    assert_eq!(
        revoke(Lookup::Revoked(&tomb("acme")), "acme"),
        Ok(RevokePlan::AlreadyRevoked)
    );
}

#[test]
fn expiring_token_without_refresh_needs_reauth_after_expiry() {
    let mut binance = input(Scope::Read);
    binance.expires_in_seconds = Some(3600);
    let meta = connect(None, &binance, NOW, mint).meta;
    assert_eq!(meta.expires_at, Some(NOW + 3_600_000));
    assert_eq!(effective_state(&meta, NOW + 3_599_999), TokenState::Active);
    assert_eq!(
        effective_state(&meta, NOW + 3_600_000),
        TokenState::ReauthRequired
    );
    assert!(expires_now(&meta, NOW + 3_600_000));
    let err = resolve(
        Lookup::Live(&meta),
        "acme",
        Operation::Read,
        NOW + 3_600_000,
    )
    .expect_err("refused");
    assert_eq!(err.code, ErrorCode::ReauthRequired);
}

#[test]
fn scope_is_judged_before_expiry() {
    let mut binance = input(Scope::Read);
    binance.expires_in_seconds = Some(1);
    let meta = connect(None, &binance, NOW, mint).meta;
    let err =
        resolve(Lookup::Live(&meta), "acme", Operation::Write, NOW + 10_000).expect_err("refused");
    assert_eq!(err.code, ErrorCode::ScopeMismatch);
}

#[test]
fn long_lived_token_stays_active_indefinitely() {
    let meta = live(Scope::Read);
    assert_eq!(meta.expires_at, None);
    assert_eq!(effective_state(&meta, i64::MAX), TokenState::Active);
    assert!(!expires_now(&meta, i64::MAX));
}

#[test]
fn expiry_counts_from_the_message_time_and_never_from_the_future() {
    assert_eq!(event_time(Some(1_000), NOW), 1_000_000);
    assert_eq!(event_time(None, NOW), NOW);
    assert_eq!(event_time(Some(u64::MAX), NOW), NOW);
}

#[test]
fn wallets_are_recognised_including_configured_ones() {
    for wallet in DEFAULT_WALLET_BROKER_TYPES {
        assert!(is_wallet(wallet, &[]));
    }
    assert!(!is_wallet("coinbase", &[]));
    assert!(!is_wallet("someNewExchange", &[]));
    assert!(is_wallet("ledgerLive", &["ledgerLive".to_owned()]));
}

#[test]
fn ids_must_be_present_and_bounded() {
    assert!(check_id("clientId", "acme").is_ok());
    assert_eq!(
        check_id("clientId", "").expect_err("refused").code,
        ErrorCode::InvalidRequest
    );
    assert_eq!(
        check_id("clientId", &"x".repeat(MAX_ID_BYTES + 1))
            .expect_err("refused")
            .code,
        ErrorCode::InvalidRequest
    );
}

#[test]
fn link_listing_filters_by_scope_only_when_asked() {
    let meta = live(Scope::Read);
    assert!(listed(&meta, None));
    assert!(listed(&meta, Some(Scope::Read)));
    assert!(!listed(&meta, Some(Scope::Write)));
}

#[test]
fn refresh_expiry_is_kept_only_with_a_refresh_token() {
    let mut with = input(Scope::Read);
    with.refresh_expires_in_seconds = Some(10);
    with.has_refresh_token = true;
    assert_eq!(
        connect(None, &with, NOW, mint).meta.refresh_expires_at,
        Some(NOW + 10_000)
    );
    with.has_refresh_token = false;
    assert_eq!(
        connect(None, &with, NOW, mint).meta.refresh_expires_at,
        None
    );
}
