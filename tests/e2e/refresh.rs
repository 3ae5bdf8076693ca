//! One test per row of CONTRACT.md §9 (refresh), against the project's own
//! token server (`fixtures/oauth`) started by each test on loopback, through
//! the real broker and the real store.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use mmt_oauth_fixture::{Mode, Options, Provider};
use serde_json::{Value, json};

use crate::util::{PATIENCE, TestWorker, code, token_id};

/// The brokerType the tests configure.
pub const BROKER: &str = "fxoauth";

/// How an integration is configured for a test.
pub struct Setup {
    pub refresh_ahead_seconds: u64,
    pub timeout_ms: u64,
    pub concurrency: usize,
    pub revoke: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            refresh_ahead_seconds: 300,
            timeout_ms: 2_000,
            concurrency: 16,
            revoke: false,
        }
    }
}

/// Writes the integrations file for `provider` into `dir`.
pub fn integrations_file(dir: &std::path::Path, provider: &Provider, setup: &Setup) -> PathBuf {
    let secret = dir.join("client-secret");
    std::fs::write(&secret, provider.client_secret()).expect("secret file");
    let revoke = if setup.revoke {
        format!("revoke_url = \"{}\"\n", provider.revoke_url())
    } else {
        String::new()
    };
    let text = format!(
        "refresh_concurrency = {}\n\n[integrations.{BROKER}]\ntoken_url = \"{}\"\nclient_id = \"{}\"\nclient_secret_file = \"{}\"\nrefresh_ahead_seconds = {}\ntimeout_ms = {}\n{revoke}",
        setup.concurrency,
        provider.token_url(),
        provider.client_id(),
        secret.display(),
        setup.refresh_ahead_seconds,
        setup.timeout_ms,
    );
    let path = dir.join("integrations.toml");
    std::fs::write(&path, text).expect("integrations file");
    path
}

/// A worker whose integrations file points at a fresh provider.
pub async fn start(test: &str, options: Options, setup: Setup) -> (TestWorker, Provider) {
    let provider = Provider::start(options).await.expect("provider starts");
    let mut w = TestWorker::start_idle(test).await;
    w.integrations = Some(integrations_file(w.dir.path(), &provider, &setup));
    w.start_worker().await;
    (w, provider)
}

/// A worker set up as `setup` whose provider answers every request after
/// `delay` (refreshes with an hour's expiry), and `n` end users connected
/// whose tokens (2 s of life) are due at once: the worker, the provider and
/// the tokenIds.
pub async fn due_at_once(
    test: &str,
    setup: Setup,
    delay: Duration,
    n: u64,
) -> (TestWorker, Provider, Vec<String>) {
    let options = Options {
        expires_in: Some(3600),
        ..Options::default()
    };
    let (mut w, p) = start(test, options, setup).await;
    p.set_mode(Mode::Slow(delay));
    let mut ids = Vec::new();
    for i in 0..n {
        let reply = w
            .connect(oauth_connected(
                &format!("u{i}"),
                "raw",
                &p.issue_refresh_token(),
                2,
                None,
            ))
            .await;
        ids.push(token_id(&reply));
    }
    (w, p, ids)
}

/// An `integration.connected` body with an access and a refresh token.
pub fn oauth_connected(
    user: &str,
    access: &str,
    refresh: &str,
    expires_in: u64,
    refresh_expires_in: Option<u64>,
) -> Value {
    let mut body = json!({
        "clientId": "acme",
        "endUserId": user,
        "scope": "read",
        "accessToken": {
            "brokerType": BROKER,
            "accountTokens": [{
                "account": {"accountId": "acc-1"},
                "accessToken": access,
                "refreshToken": refresh,
            }],
            "expiresInSeconds": expires_in,
        },
    });
    if let Some(r) = refresh_expires_in {
        body["accessToken"]["refreshTokenExpiresInSeconds"] = r.into();
    }
    body
}

/// Polls `check` until it holds or [`PATIENCE`] runs out.
pub async fn until(what: &str, check: impl FnMut() -> bool) {
    until_within(PATIENCE, what, check).await;
}

/// Polls `check` until it holds or `patience` runs out.
pub async fn until_within(patience: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + patience;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} did not happen within {patience:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The refresh health of the test's integration (empty when it has none).
fn health_row(w: &TestWorker) -> mmt_shared::console::IntegrationHealth {
    w.worker()
        .refresher()
        .health()
        .integrations
        .into_iter()
        .find(|i| i.broker_type == BROKER)
        .unwrap_or_default()
}

pub fn count(c: &std::sync::atomic::AtomicU64) -> u64 {
    c.load(Ordering::SeqCst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refreshable_token_is_refreshed_ahead_of_expiry_under_the_same_token_id() {
    let (mut w, p) = start("refresh-ahead", Options::default(), Setup::default()).await;
    let refresh = p.issue_refresh_token();
    let id = token_id(
        &w.connect(oauth_connected("u1", "raw-a1", &refresh, 2, None))
            .await,
    );
    assert_eq!(
        w.resolve("acme", &id, "read").await["accessToken"],
        "raw-a1"
    );
    let refreshed = w.event("token.refreshed").await;
    assert_eq!(refreshed["tokenId"], id.as_str());
    assert_eq!(refreshed["state"], "active");
    let resolved = w.resolve("acme", &id, "read").await;
    let access = resolved["accessToken"].as_str().expect("a token");
    assert!(access.starts_with("fxat_"), "{resolved}");
    let expires = resolved["expiresAt"].as_str().expect("an expiry");
    let expires = mmt_shared::time_fmt::parse_rfc3339(expires).expect("RFC 3339");
    assert!(
        expires > mmt_shared::time_fmt::now_millis() + 3_000_000,
        "{resolved}"
    );
    assert!(!p.is_valid_refresh_token(&refresh), "rotated away");
    assert_eq!(count(&p.counters().reuses), 0);
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_refresh_token_replaces_the_old_one_which_is_never_sent_again() {
    let options = Options {
        expires_in: Some(1),
        ..Options::default()
    };
    let (mut w, p) = start("refresh-rotation", options, Setup::default()).await;
    let refresh = p.issue_refresh_token();
    let id = token_id(
        &w.connect(oauth_connected("u1", "raw-a1", &refresh, 1, None))
            .await,
    );
    for _ in 0..4 {
        assert_eq!(w.event("token.refreshed").await["tokenId"], id.as_str());
    }
    assert_eq!(count(&p.counters().reuses), 0);
    assert_eq!(count(&p.counters().unknown), 0);
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_without_a_refresh_token_keeps_the_old_one_for_next_time() {
    let options = Options {
        expires_in: Some(1),
        rotate: false,
        ..Options::default()
    };
    let (mut w, p) = start("refresh-kept", options, Setup::default()).await;
    let refresh = p.issue_refresh_token();
    w.connect(oauth_connected("u1", "raw-a1", &refresh, 1, None))
        .await;
    for _ in 0..3 {
        w.event("token.refreshed").await;
    }
    assert!(p.is_valid_refresh_token(&refresh));
    assert!(count(&p.counters().refreshes) >= 3);
    assert_eq!(
        count(&p.counters().unknown) + count(&p.counters().reuses),
        0
    );
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_grant_means_reauth_required_at_once_and_reconnecting_keeps_the_token_id() {
    let (mut w, p) = start(
        "refresh-invalid-grant",
        Options::default(),
        Setup::default(),
    )
    .await;
    p.set_mode(Mode::InvalidGrant);
    let refresh = p.issue_refresh_token();
    let id = token_id(
        &w.connect(oauth_connected("u1", "raw-a1", &refresh, 2, None))
            .await,
    );
    let expired = w.event("token.expired").await;
    assert_eq!(expired["tokenId"], id.as_str());
    assert_eq!(expired["reason"], "refresh_rejected");
    assert_eq!(expired["state"], "reauth_required");
    assert_eq!(
        code(&w.resolve("acme", &id, "read").await),
        "reauth_required"
    );
    p.set_mode(Mode::Normal);
    let again = w
        .connect(oauth_connected(
            "u1",
            "raw-a2",
            &p.issue_refresh_token(),
            3600,
            None,
        ))
        .await;
    assert_eq!(token_id(&again), id);
    assert_eq!(again["tokens"][0]["created"], false);
    assert_eq!(
        w.resolve("acme", &id, "read").await["accessToken"],
        "raw-a2"
    );
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried_resolvable_until_expiry_then_refresh_pending() {
    let (mut w, p) = start("refresh-transient", Options::default(), Setup::default()).await;
    p.set_mode(Mode::Status(503));
    let refresh = p.issue_refresh_token();
    let id = token_id(
        &w.connect(oauth_connected("u1", "raw-a1", &refresh, 3, None))
            .await,
    );
    until("a failed refresh attempt", || {
        count(&p.counters().requests) >= 1
    })
    .await;
    assert_eq!(
        w.resolve("acme", &id, "read").await["accessToken"],
        "raw-a1"
    );
    let failed = w.event("token.refresh_failed").await;
    assert_eq!(failed["tokenId"], id.as_str());
    assert_eq!(failed["reason"], "http_503");
    assert_eq!(
        code(&w.resolve("acme", &id, "read").await),
        "refresh_pending"
    );
    p.set_mode(Mode::TooMany(1));
    let seen = count(&p.counters().requests);
    until("a retry after 429", || count(&p.counters().requests) > seen).await;
    assert_eq!(
        code(&w.resolve("acme", &id, "read").await),
        "refresh_pending"
    );
    p.set_mode(Mode::Normal);
    assert_eq!(w.event("token.refreshed").await["tokenId"], id.as_str());
    let resolved = w.resolve("acme", &id, "read").await;
    assert!(
        resolved["accessToken"]
            .as_str()
            .is_some_and(|a| a.starts_with("fxat_")),
        "{resolved}"
    );
    let failed_events = w
        .drain_events()
        .await
        .into_iter()
        .filter(|(k, _)| k == "token.refresh_failed" || k == "token.expired")
        .count();
    assert_eq!(
        failed_events, 0,
        "refresh_failed at most once a minute, never expired"
    );
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_client_is_the_operators_fault_one_unhealthy_event_never_reauth() {
    let (mut w, p) = start(
        "refresh-invalid-client",
        Options::default(),
        Setup::default(),
    )
    .await;
    p.set_mode(Mode::InvalidClient);
    let a = token_id(
        &w.connect(oauth_connected(
            "u1",
            "raw-a",
            &p.issue_refresh_token(),
            1,
            None,
        ))
        .await,
    );
    token_id(
        &w.connect(oauth_connected(
            "u2",
            "raw-b",
            &p.issue_refresh_token(),
            1,
            None,
        ))
        .await,
    );
    let unhealthy = w.event("integration.unhealthy").await;
    assert_eq!(unhealthy["brokerType"], BROKER);
    let seen = count(&p.counters().requests);
    until("more refused attempts", || {
        count(&p.counters().requests) >= seen + 3
    })
    .await;
    // Resolvable until its expiry (1 s after the connect), then
    // refresh_pending: never anything else while the provider refuses.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let reply = w.resolve("acme", &a, "read").await;
        if reply["ok"] == true {
            assert!(
                tokio::time::Instant::now() < deadline,
                "never refresh_pending"
            );
            continue;
        }
        assert_eq!(code(&reply), "refresh_pending");
        break;
    }
    p.set_mode(Mode::Normal);
    w.event("integration.healthy").await;
    let events = w.drain_events().await;
    assert!(
        !events
            .iter()
            .any(|(k, _)| k == "integration.unhealthy" || k == "token.expired"),
        "{events:?}"
    );
    until("both refreshed", || count(&p.counters().refreshes) >= 2).await;
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_refresh_tokens_own_expiry_passing_means_reauth_required() {
    let (mut w, p) = start("refresh-token-expiry", Options::default(), Setup::default()).await;
    p.set_mode(Mode::Status(500));
    let id = token_id(
        &w.connect(oauth_connected(
            "u1",
            "raw-a",
            &p.issue_refresh_token(),
            3600,
            Some(2),
        ))
        .await,
    );
    let expired = w.event("token.expired").await;
    assert_eq!(expired["tokenId"], id.as_str());
    assert_eq!(expired["reason"], "refresh_token_expired");
    assert_eq!(
        code(&w.resolve("acme", &id, "read").await),
        "reauth_required"
    );
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_type_without_integration_keeps_v1_expiry() {
    let (mut w, p) = start("refresh-unconfigured", Options::default(), Setup::default()).await;
    let mut body = oauth_connected("u1", "raw-a", "some-refresh", 1, None);
    body["accessToken"]["brokerType"] = "binance".into();
    let id = token_id(&w.connect(body).await);
    let expired = w.event("token.expired").await;
    assert_eq!(expired["tokenId"], id.as_str());
    assert!(expired.get("reason").is_none(), "{expired}");
    assert_eq!(
        code(&w.resolve("acme", &id, "read").await),
        "reauth_required"
    );
    assert_eq!(count(&p.counters().requests), 0);
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_timeouts_and_refused_connections_are_transient_and_recover() {
    let setup = Setup {
        timeout_ms: 300,
        ..Setup::default()
    };
    let (mut w, p) = start("refresh-garbage", Options::default(), setup).await;
    let last_error = |w: &TestWorker| health_row(w).last_error.unwrap_or_default();
    p.set_mode(Mode::Garbage);
    let id = token_id(
        &w.connect(oauth_connected(
            "u1",
            "raw-a",
            &p.issue_refresh_token(),
            1,
            None,
        ))
        .await,
    );
    until("a garbage answer", || last_error(&w) == "garbage").await;
    p.set_mode(Mode::Hang);
    until("a timeout", || last_error(&w) == "timeout").await;
    assert_eq!(
        code(&w.resolve("acme", &id, "read").await),
        "refresh_pending"
    );
    p.set_mode(Mode::Normal);
    assert_eq!(w.event("token.refreshed").await["tokenId"], id.as_str());
    let health = w.worker().refresher().health();
    assert!(
        health.integrations.iter().all(|i| i.failing == 0),
        "{health:?}"
    );
    assert_eq!(count(&p.counters().reuses), 0);
    w.finish().await;

    let closed = Provider::start(Options::default()).await.expect("provider");
    let mut w = TestWorker::start_idle("refresh-refused").await;
    w.integrations = Some(integrations_file(w.dir.path(), &closed, &Setup::default()));
    drop(closed);
    w.start_worker().await;
    w.connect(oauth_connected("u1", "raw-a", "rt", 1, None))
        .await;
    until("a refused connection", || last_error(&w) == "connect").await;
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tokens_due_at_once_stay_within_refresh_concurrency() {
    let n = 120;
    let setup = Setup {
        concurrency: 4,
        ..Setup::default()
    };
    let (w, p, _) = due_at_once("refresh-concurrency", setup, Duration::from_millis(200), n).await;
    until("every token refreshed", || {
        count(&p.counters().refreshes) >= n
    })
    .await;
    let peak = count(&p.counters().max_in_flight);
    assert!((2..=4).contains(&peak), "peak {peak}");
    assert_eq!(count(&p.counters().reuses), 0);
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_with_a_broken_file_keeps_the_integrations_in_force() {
    let (mut w, p) = start("refresh-reload", Options::default(), Setup::default()).await;
    let path = w.integrations.clone().expect("file");
    let good = std::fs::read_to_string(&path).expect("reads");
    std::fs::write(
        &path,
        good.replace("timeout_ms = 2000", "timeout_ms = \"soon\""),
    )
    .expect("breaks");
    let worker = w.worker();
    assert!(
        !mmt_worker::refresh::reload::reload(worker.service(), worker.refresher(), path.clone())
            .await
    );
    assert!(worker.service().integrations().get(BROKER).is_some());
    let id = token_id(
        &w.connect(oauth_connected(
            "u1",
            "raw-a",
            &p.issue_refresh_token(),
            2,
            None,
        ))
        .await,
    );
    assert_eq!(w.event("token.refreshed").await["tokenId"], id.as_str());
    std::fs::write(&path, "").expect("empties");
    let worker = w.worker();
    assert!(mmt_worker::refresh::reload::reload(worker.service(), worker.refresher(), path).await);
    assert!(worker.service().integrations().get(BROKER).is_none());
    w.finish().await;
}

/// Issue 8, item 2: the expiry sweep returned on the first record that did
/// not decode and read the same batch again at every tick, so no token ever
/// expired again. Now the record is skipped, counted and logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_one_undecodable_record_does_not_stop_expiry_of_the_others() {
    let mut w = TestWorker::start("undecodable-expiry").await;
    let mut body = oauth_connected("u1", "raw-bad", "rt", 1, None);
    body["accessToken"]["brokerType"] = "binance".into();
    let bad = token_id(&w.connect(body.clone()).await);
    body["endUserId"] = "u2".into();
    body["accessToken"]["expiresInSeconds"] = 3.into();
    let good = token_id(&w.connect(body).await);
    w.stop_worker().await;
    crate::util::garble_record(&w.data_dir(), &bad);
    w.start_worker().await;
    let expired = w.event("token.expired").await;
    assert_eq!(expired["tokenId"], good.as_str());
    assert_eq!(
        code(&w.resolve("acme", &good, "read").await),
        "reauth_required"
    );
    assert_eq!(w.worker().refresher().health().skipped_records, 1);
    w.finish().await;
}

fn delayed(user: &str, refresh: &str) -> Value {
    json!({
        "clientId": "acme",
        "endUserId": user,
        "scope": "read",
        "delayedAuth": {"brokerType": BROKER, "refreshToken": refresh},
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_auth_connection_is_stored_with_an_empty_account_and_refreshed_at_once() {
    let (mut w, p) = start("refresh-delayed-auth", Options::default(), Setup::default()).await;
    let reply = w.connect(delayed("u1", &p.issue_refresh_token())).await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["tokens"][0]["accountId"], "");
    assert_eq!(reply["tokens"][0]["created"], true);
    let id = token_id(&reply);
    assert_eq!(reply["accessTokens"][0]["accessToken"], id.as_str());
    assert_eq!(w.event("token.refreshed").await["tokenId"], id.as_str());
    let resolved = w.resolve("acme", &id, "read").await;
    assert!(
        resolved["accessToken"]
            .as_str()
            .is_some_and(|a| a.starts_with("fxat_")),
        "{resolved}"
    );
    assert_eq!(resolved["accountId"], "");
    let again = w.connect(delayed("u1", &p.issue_refresh_token())).await;
    assert_eq!(token_id(&again), id);
    assert_eq!(again["tokens"][0]["created"], false);
    let both = json!({
        "clientId": "acme", "endUserId": "u2", "scope": "read",
        "delayedAuth": {"brokerType": BROKER, "refreshToken": "r"},
        "accessToken": {"brokerType": BROKER, "accountTokens": []},
    });
    assert_eq!(code(&w.connect(both).await), "invalid_request");
    assert_eq!(count(&p.counters().reuses), 0);
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_connection_is_revoked_locally_at_once_then_upstream_from_a_sealed_job() {
    let setup = Setup {
        revoke: true,
        ..Setup::default()
    };
    let (mut w, p) = start("refresh-revoke-upstream", Options::default(), setup).await;
    let refresh = p.issue_refresh_token();
    let id = token_id(
        &w.connect(oauth_connected("u1", "raw-acc-1", &refresh, 3600, None))
            .await,
    );
    let reply = w.revoke("acme", &id).await;
    assert_eq!(reply, json!({"ok": true, "revoked": true}));
    assert_eq!(code(&w.resolve("acme", &id, "read").await), "revoked");
    let done = w.event("token.revoked_upstream").await;
    assert_eq!(
        (done["tokenId"].as_str(), done["ok"].as_bool()),
        (Some(id.as_str()), Some(true))
    );
    assert!(p.is_revoked(&refresh) && p.is_revoked("raw-acc-1"));
    let store = w.worker().service().store();
    assert!(
        store.upstream_jobs(10).expect("reads").is_empty(),
        "the job and its secret are gone"
    );

    p.set_mode(Mode::Status(503));
    let refresh = p.issue_refresh_token();
    let id = token_id(
        &w.connect(oauth_connected("u2", "raw-acc-2", &refresh, 3600, None))
            .await,
    );
    let seen = count(&p.counters().requests);
    w.revoke("acme", &id).await;
    until("two failed attempts", || {
        count(&p.counters().requests) >= seen + 2
    })
    .await;
    p.set_mode(Mode::Normal);
    let done = w.event("token.revoked_upstream").await;
    assert_eq!(
        (done["tokenId"].as_str(), done["ok"].as_bool()),
        (Some(id.as_str()), Some(true))
    );

    p.set_mode(Mode::Status(400));
    let id = token_id(
        &w.connect(oauth_connected(
            "u3",
            "raw-acc-3",
            &p.issue_refresh_token(),
            3600,
            None,
        ))
        .await,
    );
    let seen = count(&p.counters().requests);
    w.revoke("acme", &id).await;
    let done = w.event("token.revoked_upstream").await;
    assert_eq!(
        (done["tokenId"].as_str(), done["ok"].as_bool()),
        (Some(id.as_str()), Some(false))
    );
    assert_eq!(
        count(&p.counters().requests),
        seen + 1,
        "given up at once on a 4xx"
    );
    assert!(
        w.worker()
            .service()
            .store()
            .upstream_jobs(10)
            .expect("reads")
            .is_empty()
    );
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_revocation_does_not_wait_behind_a_backlog_of_refreshes() {
    let n = 100;
    let setup = Setup {
        concurrency: 2,
        revoke: true,
        ..Setup::default()
    };
    // 100 refreshes at 100 ms each over 2 request slots: 5 s of backlog.
    let (mut w, p, _) = due_at_once(
        "refresh-revoke-backlog",
        setup,
        Duration::from_millis(100),
        n,
    )
    .await;
    let id = token_id(
        &w.connect(oauth_connected(
            "removed",
            "raw-removed",
            &p.issue_refresh_token(),
            3600,
            None,
        ))
        .await,
    );
    until("the backlog is being worked off", || {
        count(&p.counters().refreshes) >= 5
    })
    .await;
    w.revoke("acme", &id).await;
    let done = w.event("token.revoked_upstream").await;
    let refreshed = count(&p.counters().refreshes);
    assert_eq!(
        (done["tokenId"].as_str(), done["ok"].as_bool()),
        (Some(id.as_str()), Some(true))
    );
    assert!(
        refreshed < n / 2,
        "the revocation went out after {refreshed} of {n} refreshes: it waited behind the backlog"
    );
    until("every token refreshed", || {
        count(&p.counters().refreshes) >= n
    })
    .await;
    assert!(
        count(&p.counters().max_in_flight) <= 2,
        "within refresh_concurrency"
    );
    assert_eq!(count(&p.counters().reuses), 0);
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_shows_the_failing_refreshes_it_stopped_with() {
    let setup = Setup {
        timeout_ms: 5_000,
        ..Setup::default()
    };
    let (mut w, p) = start("refresh-failing-restart", Options::default(), setup).await;
    let failing = |w: &TestWorker| {
        let row = health_row(w);
        (row.failing, row.last_error.unwrap_or_default())
    };
    p.set_mode(Mode::Status(503));
    w.connect(oauth_connected(
        "u1",
        "raw-a",
        &p.issue_refresh_token(),
        2,
        None,
    ))
    .await;
    // Due at once (the refresh-ahead window is longer than its life).
    until("a failing refresh", || {
        failing(&w) == (1, "http_503".into())
    })
    .await;
    w.stop_worker().await;
    // From now on the provider never answers: a failure seen after the
    // restart would be a `timeout`, 5 s away.
    p.set_mode(Mode::Hang);
    w.start_worker().await;
    until("the failing refresh read back from the store", || {
        failing(&w) == (1, "http_503".into())
    })
    .await;
    w.finish().await;
}
