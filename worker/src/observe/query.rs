//! The console's token search (docs/console.md, "Tokens"): the filter terms
//! of a `console.tokens` request, whether a listed token matches them, the
//! top rows of a sort over every token, and a token's refresh state as the
//! console shows it. Pure: the store reads that feed it live in `console.rs`.

use mmt_shared::console::{SortBy, TokenRefresh};
use mmt_shared::time_fmt::{UnixMillis, rfc3339};
use mmt_shared::wire::TokenState;

use crate::store::{Listed, RefreshRecord};

/// A token's refresh state at `now` from its refresh record (the token
/// expires at `expires_at`): no secret is in either.
pub fn refresh_of(
    record: &RefreshRecord,
    expires_at: Option<UnixMillis>,
    now: UnixMillis,
) -> TokenRefresh {
    TokenRefresh {
        next_at: rfc3339(record.due_at),
        last_refreshed_at: record.last_refreshed_at.map(rfc3339),
        attempts: record.attempts,
        last_error: record.last_error.clone().filter(|_| record.attempts > 0),
        in_flight: record.lease.is_some_and(|lease| lease.until > now),
        pending: expires_at.is_some_and(|at| at <= now),
    }
}

/// The fields a term can be narrowed to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    Any,
    Id,
    Client,
    User,
    Account,
    Integration,
    Scope,
    State,
}

/// One search term.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Term {
    /// The field contains the text (lowercase).
    Text(Field, String),
    /// The token has no expiry.
    NeverExpires,
    /// The token expires at or before this RFC 3339 time or prefix of one.
    ExpiresBy(String),
}

/// A parsed filter: every term must match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query {
    terms: Vec<Term>,
}

/// The fields of a listed token that a search reads.
struct View<'a> {
    token_id: &'a str,
    client_id: &'a str,
    end_user_id: &'a str,
    account_id: &'a str,
    broker_type: &'a str,
    scope: &'a str,
    state: TokenState,
    expires_at: Option<UnixMillis>,
    updated_at: UnixMillis,
}

impl<'a> View<'a> {
    fn of(token_id: &'a str, listed: &'a Listed) -> Self {
        match listed {
            Listed::Live(meta) => Self {
                token_id,
                client_id: &meta.client_id,
                end_user_id: &meta.end_user_id,
                account_id: &meta.account_id,
                broker_type: &meta.broker_type,
                scope: meta.scope.as_str(),
                state: meta.state,
                expires_at: meta.expires_at,
                updated_at: meta.updated_at,
            },
            Listed::Revoked(tomb) => Self {
                token_id,
                client_id: &tomb.client_id,
                end_user_id: "",
                account_id: "",
                broker_type: &tomb.broker_type,
                scope: tomb.scope.as_str(),
                state: TokenState::Revoked,
                expires_at: None,
                updated_at: tomb.revoked_at,
            },
        }
    }

    fn field(&self, field: Field) -> &str {
        match field {
            Field::Id => self.token_id,
            Field::Client => self.client_id,
            Field::User => self.end_user_id,
            Field::Account => self.account_id,
            Field::Integration => self.broker_type,
            Field::Scope => self.scope,
            Field::State | Field::Any => self.state.as_str(),
        }
    }
}

fn contains(haystack: &str, needle: &str) -> bool {
    if haystack.is_ascii() && needle.is_ascii() {
        haystack
            .as_bytes()
            .windows(needle.len().max(1))
            .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
            || needle.is_empty()
    } else {
        haystack.to_lowercase().contains(needle)
    }
}

impl Query {
    /// Parses the filter text (see `TokensRequest::filter`).
    pub fn parse(text: &str) -> Self {
        let terms = text
            .split_whitespace()
            .map(|word| {
                let lower = word.to_lowercase();
                let Some((key, value)) = lower.split_once(':') else {
                    return Term::Text(Field::Any, lower);
                };
                let field = match key {
                    "id" | "token" | "tokenid" => Field::Id,
                    "client" | "clientid" => Field::Client,
                    "user" | "enduser" | "enduserid" => Field::User,
                    "account" | "accountid" => Field::Account,
                    "integration" | "broker" | "brokertype" => Field::Integration,
                    "scope" => Field::Scope,
                    "state" => Field::State,
                    "expires" | "expiresat" if value == "none" || value == "never" => {
                        return Term::NeverExpires;
                    }
                    "expires" | "expiresat" => return Term::ExpiresBy(value.to_uppercase()),
                    _ => return Term::Text(Field::Any, lower),
                };
                Term::Text(field, value.to_owned())
            })
            .collect();
        Self { terms }
    }

    /// Whether there is no term (everything matches).
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// Whether the listed token matches every term.
    pub fn matches(&self, token_id: &str, listed: &Listed) -> bool {
        let view = View::of(token_id, listed);
        self.terms.iter().all(|term| match term {
            Term::Text(Field::Any, text) => [
                Field::Id,
                Field::Client,
                Field::User,
                Field::Account,
                Field::Integration,
                Field::Scope,
                Field::State,
            ]
            .into_iter()
            .any(|f| contains(view.field(f), text)),
            Term::Text(field, text) => contains(view.field(*field), text),
            Term::NeverExpires => view.expires_at.is_none() && view.state != TokenState::Revoked,
            Term::ExpiresBy(by) => view.expires_at.is_some_and(|at| {
                let at = rfc3339(at);
                at.get(..by.len()).unwrap_or(&at) <= by.as_str()
            }),
        })
    }
}

/// A sort key: text or a time, then the tokenId.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Text(String),
    Time(UnixMillis),
}

fn sort_key(sort: SortBy, view: &View<'_>) -> Key {
    match sort {
        SortBy::TokenId => Key::Text(String::new()),
        SortBy::ClientId => Key::Text(view.client_id.to_owned()),
        SortBy::EndUserId => Key::Text(view.end_user_id.to_owned()),
        SortBy::BrokerType => Key::Text(view.broker_type.to_owned()),
        SortBy::Scope => Key::Text(view.scope.to_owned()),
        SortBy::State => Key::Text(view.state.as_str().to_owned()),
        SortBy::ExpiresAt => Key::Time(view.expires_at.unwrap_or(UnixMillis::MAX)),
        SortBy::UpdatedAt => Key::Time(view.updated_at),
    }
}

/// The best `keep` rows of a sort seen so far, and how many matched in all.
/// Memory stays within twice `keep` rows whatever the number of tokens.
pub struct TopRows {
    sort: SortBy,
    descending: bool,
    keep: usize,
    rows: Vec<((Key, String), Listed)>,
    /// The last kept key once `keep` rows are kept: a row past it is not
    /// copied at all.
    worst: Option<(Key, String)>,
    /// How many rows were offered.
    pub matched: u64,
}

impl TopRows {
    /// Keeps the first `keep` rows by `sort`.
    pub fn new(sort: SortBy, descending: bool, keep: usize) -> Self {
        Self {
            sort,
            descending,
            keep,
            rows: Vec::new(),
            worst: None,
            matched: 0,
        }
    }

    /// Offers one matching row.
    pub fn offer(&mut self, token_id: &str, listed: &Listed) {
        self.matched += 1;
        if self.keep == 0 {
            return;
        }
        let key = sort_key(self.sort, &View::of(token_id, listed));
        if let Some((worst, worst_id)) = &self.worst {
            let order = (&key, token_id).cmp(&(worst, worst_id.as_str()));
            let past = if self.descending {
                order.is_lt()
            } else {
                order.is_gt()
            };
            if past {
                return;
            }
        }
        self.rows.push(((key, token_id.to_owned()), listed.clone()));
        if self.rows.len() >= self.keep.saturating_mul(2).max(64) {
            self.settle();
        }
    }

    fn settle(&mut self) {
        if self.descending {
            self.rows.sort_by(|a, b| b.0.cmp(&a.0));
        } else {
            self.rows.sort_by(|a, b| a.0.cmp(&b.0));
        }
        self.rows.truncate(self.keep);
        if self.rows.len() == self.keep {
            self.worst = self.rows.last().map(|(key, _)| key.clone());
        }
    }

    /// The kept rows in order, from `offset` on.
    pub fn into_rows(mut self, offset: usize) -> Vec<(String, Listed)> {
        self.settle();
        self.rows
            .into_iter()
            .skip(offset)
            .map(|((_, id), listed)| (id, listed))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use mmt_shared::wire::Scope;

    use super::*;
    use crate::rules::lifecycle::{TokenMeta, Tombstone};

    fn live(client: &str, user: &str, scope: Scope, expires_at: Option<UnixMillis>) -> Listed {
        Listed::Live(TokenMeta {
            client_id: client.into(),
            end_user_id: user.into(),
            broker_type: "coinbase".into(),
            broker_name: String::new(),
            account_id: "cb-1".into(),
            account_name: String::new(),
            scope,
            state: TokenState::Active,
            created_at: 1,
            updated_at: 2,
            expires_at,
            refresh_expires_at: None,
            has_refresh_token: false,
        })
    }

    fn revoked(client: &str) -> Listed {
        Listed::Revoked(Tombstone {
            client_id: client.into(),
            broker_type: "binance".into(),
            scope: Scope::Read,
            revoked_at: 3,
        })
    }

    #[test]
    fn a_bare_term_matches_scope_and_end_user_too() {
        let write = live("acme", "user-42", Scope::Write, None);
        assert!(Query::parse("write").matches("tok_1", &write));
        assert!(Query::parse("USER-42").matches("tok_1", &write));
        assert!(Query::parse("cb-1").matches("tok_1", &write));
        assert!(!Query::parse("read").matches("tok_1", &write));
    }

    #[test]
    fn every_term_must_match_and_a_field_term_reads_only_its_field() {
        let token = live("acme", "user-42", Scope::Read, None);
        assert!(Query::parse("client:acme scope:read").matches("tok_1", &token));
        assert!(!Query::parse("client:acme scope:write").matches("tok_1", &token));
        assert!(!Query::parse("user:acme").matches("tok_1", &token));
        assert!(Query::parse("state:revoked").matches("tok_2", &revoked("acme")));
        assert!(Query::parse("").is_empty());
    }

    #[test]
    fn expiry_terms_keep_tokens_without_expiry_or_due_by_a_time() {
        let never = live("acme", "u", Scope::Read, None);
        let due = live("acme", "u", Scope::Read, Some(1_795_003_200_000));
        assert!(Query::parse("expires:never").matches("t", &never));
        assert!(!Query::parse("expires:never").matches("t", &due));
        assert!(!Query::parse("expires:none").matches("t", &revoked("acme")));
        assert!(Query::parse("expires:2026-11-18").matches("t", &due));
        assert!(Query::parse("expires:2026-12").matches("t", &due));
        assert!(!Query::parse("expires:2026-11-17").matches("t", &due));
        assert!(!Query::parse("expires:2030").matches("t", &never));
    }

    #[test]
    fn the_top_rows_of_a_sort_are_those_of_the_whole_table() {
        let mut top = TopRows::new(SortBy::ClientId, false, 3);
        for i in (0..500).rev() {
            top.offer(
                &format!("tok_{i:03}"),
                &live(&format!("c{i:03}"), "u", Scope::Read, None),
            );
        }
        assert_eq!(top.matched, 500);
        let ids: Vec<String> = top.into_rows(1).into_iter().map(|(id, _)| id).collect();
        assert_eq!(ids, ["tok_001", "tok_002"]);
    }

    #[test]
    fn rows_past_the_kept_ones_are_skipped_in_either_order() {
        for descending in [false, true] {
            let mut top = TopRows::new(SortBy::ClientId, descending, 2);
            for i in 0..300 {
                let n = (i * 7) % 300;
                top.offer(
                    &format!("tok_{n:03}"),
                    &live(&format!("c{n:03}"), "u", Scope::Read, None),
                );
            }
            let ids: Vec<String> = top.into_rows(0).into_iter().map(|(id, _)| id).collect();
            let want = if descending {
                ["tok_299", "tok_298"]
            } else {
                ["tok_000", "tok_001"]
            };
            assert_eq!(ids, want, "descending: {descending}");
        }
    }

    #[test]
    fn the_refresh_state_tells_in_flight_failing_and_pending() {
        let failing = RefreshRecord {
            due_at: 1_795_003_200_000,
            attempts: 3,
            lease: Some(crate::store::Lease {
                id: 7,
                sent_at: 900,
                until: 2_000,
            }),
            last_error: Some("http_503".into()),
            last_refreshed_at: Some(1_795_000_000_000),
            last_failed_event_at: None,
        };
        let seen = refresh_of(&failing, Some(1_000), 1_500);
        assert_eq!(
            seen,
            TokenRefresh {
                next_at: rfc3339(1_795_003_200_000),
                last_refreshed_at: Some(rfc3339(1_795_000_000_000)),
                attempts: 3,
                last_error: Some("http_503".into()),
                in_flight: true,
                pending: true,
            }
        );
        let later = refresh_of(&failing, Some(9_000), 2_000);
        assert!(!later.in_flight, "the lease ran out");
        assert!(!later.pending, "not past expiresAt yet");
        let healthy = RefreshRecord {
            attempts: 0,
            lease: None,
            ..failing
        };
        assert_eq!(refresh_of(&healthy, None, 1_500).last_error, None);
    }

    #[test]
    fn descending_expiry_puts_no_expiry_first() {
        let mut top = TopRows::new(SortBy::ExpiresAt, true, 10);
        top.offer("tok_a", &live("acme", "u", Scope::Read, Some(5)));
        top.offer("tok_b", &live("acme", "u", Scope::Read, None));
        top.offer("tok_c", &live("acme", "u", Scope::Read, Some(9)));
        let ids: Vec<String> = top.into_rows(0).into_iter().map(|(id, _)| id).collect();
        assert_eq!(ids, ["tok_b", "tok_c", "tok_a"]);
    }
}
