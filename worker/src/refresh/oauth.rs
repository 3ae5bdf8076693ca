//! The OAuth 2.0 client of the refresh engine: the `refresh_token` grant
//! (RFC 6749 §6) and token revocation (RFC 7009), over rustls only, with a
//! timeout on every request, no redirects, and answers read up to a bound.
//!
//! What comes back is classified by [`classify_refresh`] and
//! [`classify_revoke`], pure functions of (status, `Retry-After`, body).
//! A [`Failure`] carries a code from structure (`timeout`, `http_503`, ...),
//! never the URL, a header or a body.

use std::time::Duration;

use base64::Engine as _;
use mmt_shared::secret::Secret;
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::config::integrations::{ClientAuth, Integration};
use crate::rules::refresh::{Failure, Grant};
use crate::service::MAX_SECRET_BYTES;

/// The most of an answer that is read.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// The client could not be built (the TLS roots).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client")]
pub struct ClientError(#[source] reqwest::Error);

/// The HTTP client shared by every refresh and revocation.
#[derive(Clone)]
pub struct OAuthClient {
    http: reqwest::Client,
}

/// An answer as the classifiers see it.
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The `Retry-After` header, when present.
    pub retry_after: Option<String>,
    /// The body (at most [`MAX_ANSWER_BYTES`]; it may hold tokens).
    pub body: Zeroizing<Vec<u8>>,
}

impl OAuthClient {
    /// A client over rustls (ring) with the web PKI roots, no redirects.
    pub fn new() -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("mmt-worker/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(ClientError)?;
        Ok(Self { http })
    }

    /// The `refresh_token` grant.
    pub async fn refresh(
        &self,
        integration: &Integration,
        refresh_token: &Secret,
    ) -> Result<Grant, Failure> {
        let answer = self
            .post(
                integration,
                &integration.token_url,
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh_token.expose()),
                ],
            )
            .await?;
        classify_refresh(&answer)
    }

    /// RFC 7009 revocation of one token.
    pub async fn revoke(
        &self,
        integration: &Integration,
        url: &url::Url,
        token: &Secret,
        hint: &str,
    ) -> Result<(), Failure> {
        let answer = self
            .post(
                integration,
                url,
                &[("token", token.expose()), ("token_type_hint", hint)],
            )
            .await?;
        classify_revoke(&answer)
    }

    async fn post(
        &self,
        integration: &Integration,
        url: &url::Url,
        fields: &[(&str, &str)],
    ) -> Result<Answer, Failure> {
        let mut request = self
            .http
            .post(url.clone())
            .timeout(integration.timeout)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json");
        if integration.client_auth == ClientAuth::Basic {
            request = request.header("authorization", basic_auth(integration).as_str());
        }
        let body = form_body(integration, fields);
        let mut response = request
            .body(body.as_bytes().to_vec())
            .send()
            .await
            .map_err(|e| Failure::transient(request_code(&e)))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut read = Zeroizing::new(Vec::new());
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) if read.len() + chunk.len() <= MAX_ANSWER_BYTES => {
                    read.extend_from_slice(&chunk);
                }
                Ok(Some(_)) => return Err(Failure::transient("answer_too_large")),
                Ok(None) => break,
                Err(e) => return Err(Failure::transient(request_code(&e))),
            }
        }
        Ok(Answer {
            status,
            retry_after,
            body: read,
        })
    }
}

/// The form body: `fields`, and the client credentials with `post`.
fn form_body(integration: &Integration, fields: &[(&str, &str)]) -> Zeroizing<String> {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in fields {
        form.append_pair(name, value);
    }
    if integration.client_auth == ClientAuth::Post {
        form.append_pair("client_id", &integration.client_id);
        form.append_pair("client_secret", integration.client_secret.expose());
    }
    Zeroizing::new(form.finish())
}

/// The `Authorization` header of `basic` (RFC 6749 §2.3.1).
fn basic_auth(integration: &Integration) -> Zeroizing<String> {
    let pair = Zeroizing::new(format!(
        "{}:{}",
        form_encode(&integration.client_id),
        Zeroizing::new(form_encode(integration.client_secret.expose())).as_str()
    ));
    Zeroizing::new(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair.as_bytes())
    ))
}

/// RFC 6749 §2.3.1: the id and secret are form-urlencoded before Basic.
fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// What went wrong with a request, from reqwest's structure only (its
/// message names the URL).
fn request_code(error: &reqwest::Error) -> &'static str {
    if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "connect"
    } else if error.is_body() || error.is_decode() {
        "answer_broken"
    } else {
        "request"
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: Secret,
    #[serde(default)]
    refresh_token: Option<Secret>,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    refresh_token_expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct ErrorAnswer {
    error: String,
}

/// `Retry-After` in seconds (an HTTP date counts as unknown), bounded.
pub fn retry_after(value: Option<&str>) -> Option<Duration> {
    let secs: u64 = value?.trim().parse().ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

fn error_code(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<ErrorAnswer>(body)
        .ok()
        .map(|e| e.error)
}

/// The outcome of a refresh answer (CONTRACT.md §9's table).
pub fn classify_refresh(answer: &Answer) -> Result<Grant, Failure> {
    match answer.status {
        200 => {
            let parsed: TokenAnswer =
                serde_json::from_slice(&answer.body).map_err(|_| Failure::transient("garbage"))?;
            let too_long = |s: &Secret| s.expose().len() > MAX_SECRET_BYTES;
            if parsed.access_token.is_empty()
                || too_long(&parsed.access_token)
                || parsed
                    .refresh_token
                    .as_ref()
                    .is_some_and(|r| r.is_empty() || too_long(r))
            {
                return Err(Failure::transient("garbage"));
            }
            Ok(Grant {
                access_token: parsed.access_token,
                refresh_token: parsed.refresh_token,
                expires_in: parsed.expires_in,
                refresh_token_expires_in: parsed.refresh_token_expires_in,
            })
        }
        400 | 401 => match error_code(&answer.body).as_deref() {
            Some("invalid_grant") => Err(Failure::InvalidGrant),
            Some("invalid_client") => Err(Failure::InvalidClient),
            _ if answer.status == 401 => Err(Failure::InvalidClient),
            _ => Err(Failure::transient("http_400")),
        },
        status => Err(Failure::Transient {
            code: format!("http_{status}"),
            retry_after: retry_after(answer.retry_after.as_deref()),
        }),
    }
}

/// The outcome of a revocation answer (RFC 7009 §2.2: 200 whether or not the
/// token was valid; 503 and 429 mean later; any other 4xx is final).
pub fn classify_revoke(answer: &Answer) -> Result<(), Failure> {
    match answer.status {
        200..=299 => Ok(()),
        401 => Err(Failure::InvalidClient),
        400 if error_code(&answer.body).as_deref() == Some("invalid_client") => {
            Err(Failure::InvalidClient)
        }
        429 | 500..=599 => Err(Failure::Transient {
            code: format!("http_{}", answer.status),
            retry_after: retry_after(answer.retry_after.as_deref()),
        }),
        status @ 400..=499 => Err(Failure::Refused(status)),
        status => Err(Failure::transient(format!("http_{status}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status,
            retry_after: None,
            body: Zeroizing::new(body.as_bytes().to_vec()),
        }
    }

    #[test]
    fn a_200_with_a_rotated_refresh_token_is_a_grant() {
        let grant = classify_refresh(&answer(
            200,
            r#"{"access_token":"a2","token_type":"bearer","expires_in":3600,"refresh_token":"r2","refresh_token_expires_in":99}"#,
        ))
        .expect("grant");
        assert_eq!(grant.access_token.expose(), "a2");
        assert_eq!(grant.refresh_token.as_ref().map(Secret::expose), Some("r2"));
        assert_eq!(
            (grant.expires_in, grant.refresh_token_expires_in),
            (Some(3600), Some(99))
        );
        let kept = classify_refresh(&answer(200, r#"{"access_token":"a3"}"#)).expect("grant");
        assert!(kept.refresh_token.is_none() && kept.expires_in.is_none());
    }

    #[test]
    fn invalid_grant_is_final_and_invalid_client_or_a_bare_401_is_the_operators() {
        let e = |status, body| classify_refresh(&answer(status, body)).expect_err("fails");
        assert_eq!(
            e(400, r#"{"error":"invalid_grant"}"#),
            Failure::InvalidGrant
        );
        assert_eq!(
            e(401, r#"{"error":"invalid_grant"}"#),
            Failure::InvalidGrant
        );
        assert_eq!(
            e(401, r#"{"error":"invalid_client"}"#),
            Failure::InvalidClient
        );
        assert_eq!(
            e(400, r#"{"error":"invalid_client"}"#),
            Failure::InvalidClient
        );
        assert_eq!(e(401, "nope"), Failure::InvalidClient);
        assert_eq!(e(400, r#"{"error":"invalid_request"}"#).code(), "http_400");
    }

    #[test]
    fn garbage_5xx_and_429_are_transient_and_retry_after_is_honoured() {
        for body in [
            "<html>",
            "{}",
            r#"{"access_token":""}"#,
            r#"{"access_token":7}"#,
        ] {
            assert_eq!(
                classify_refresh(&answer(200, body))
                    .expect_err("fails")
                    .code(),
                "garbage"
            );
        }
        assert_eq!(
            classify_refresh(&answer(503, ""))
                .expect_err("fails")
                .code(),
            "http_503"
        );
        let mut limited = answer(429, "");
        limited.retry_after = Some("7".into());
        assert_eq!(
            classify_refresh(&limited).expect_err("fails"),
            Failure::Transient {
                code: "http_429".into(),
                retry_after: Some(Duration::from_secs(7))
            }
        );
        assert_eq!(retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT")), None);
        assert_eq!(retry_after(Some("999999")), Some(MAX_RETRY_AFTER));
    }

    #[test]
    fn revocation_gives_up_on_other_4xx_and_retries_5xx() {
        assert_eq!(classify_revoke(&answer(200, "")), Ok(()));
        assert_eq!(
            classify_revoke(&answer(404, "")),
            Err(Failure::Refused(404))
        );
        assert_eq!(
            classify_revoke(&answer(400, r#"{"error":"unsupported_token_type"}"#)),
            Err(Failure::Refused(400))
        );
        assert!(matches!(
            classify_revoke(&answer(503, "")),
            Err(Failure::Transient { .. })
        ));
    }

    fn integration(provider: &mmt_oauth_fixture::Provider, auth: ClientAuth) -> Integration {
        let dir = std::path::Path::new("i.toml");
        let text = format!(
            "[integrations.fx]\ntoken_url = \"{}\"\nclient_id = \"{}\"\nclient_secret_env = \"S\"\ntimeout_ms = 300\n",
            provider.token_url(),
            provider.client_id()
        );
        let file = mmt_shared::tomlfile::TomlFile::from_text(dir, text);
        let secret = provider.client_secret();
        let all =
            crate::config::integrations::Integrations::from_file(&file, &|_| Some(secret.clone()))
                .expect("parses");
        let mut fx = all.get("fx").expect("configured").clone();
        fx.client_auth = auth;
        fx
    }

    #[tokio::test]
    async fn refreshes_rotate_against_a_real_provider_with_basic_and_post_auth() {
        let provider = mmt_oauth_fixture::Provider::start(Default::default())
            .await
            .expect("starts");
        let client = OAuthClient::new().expect("client");
        let first = Secret::new(provider.issue_refresh_token());
        for auth in [ClientAuth::Basic, ClientAuth::Post] {
            let fx = integration(&provider, auth);
            let token = Secret::new(provider.issue_refresh_token());
            let grant = client.refresh(&fx, &token).await.expect("refreshes");
            let next = grant.refresh_token.expect("rotated");
            assert!(provider.is_valid_refresh_token(next.expose()));
            assert_eq!(
                client.refresh(&fx, &token).await.expect_err("reuse"),
                Failure::InvalidGrant
            );
        }
        assert_eq!(
            provider
                .counters()
                .reuses
                .load(std::sync::atomic::Ordering::SeqCst),
            2
        );
        let mut wrong = integration(&provider, ClientAuth::Basic);
        wrong.client_id = "someone-else".into();
        assert_eq!(
            client.refresh(&wrong, &first).await.expect_err("refused"),
            Failure::InvalidClient
        );
    }

    #[tokio::test]
    async fn a_hanging_provider_times_out_and_a_closed_port_is_a_connect_error() {
        let provider = mmt_oauth_fixture::Provider::start(Default::default())
            .await
            .expect("starts");
        let client = OAuthClient::new().expect("client");
        let fx = integration(&provider, ClientAuth::Basic);
        provider.set_mode(mmt_oauth_fixture::Mode::Hang);
        let token = Secret::new(provider.issue_refresh_token());
        assert_eq!(
            client.refresh(&fx, &token).await.expect_err("hangs").code(),
            "timeout"
        );
        drop(provider);
        let refused = client.refresh(&fx, &token).await.expect_err("closed");
        assert!(
            matches!(refused.code().as_str(), "connect" | "request"),
            "{refused:?}"
        );
    }
}
