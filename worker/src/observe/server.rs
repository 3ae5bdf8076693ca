//! Answers the console's requests on `NS.console.snapshot` and
//! `NS.console.tokens` (docs/protocol.md, "Console"): token counts, recent
//! events and counters, and pages of the token listing. Replies carry
//! metadata only: nothing here opens a sealed secret.

use std::cell::RefCell;
use std::sync::Arc;

use futures::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use mmt_shared::config::Namespace;
use mmt_shared::console::{
    ClientCount, MAX_PAGE, MAX_SCAN, MAX_SEARCH_SCAN, RECENT_CAPACITY, SNAPSHOT_ROUTING_KEY,
    SnapshotReply, SnapshotRequest, SortBy, TOKENS_ROUTING_KEY, TokenRow, TokensReply,
    TokensRequest,
};
use mmt_shared::time_fmt::{UnixMillis, now_millis, rfc3339};
use mmt_shared::wire::{ErrorCode, ErrorReply, TokenState};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::amqp::consumer::ConsumerError;
use crate::amqp::topology::console_queue;
use crate::observe::query::{Query, TopRows, refresh_of};
use crate::observe::stats::{self, Stats};
use crate::service::Service;
use crate::store::{Found, Listed, StoreError};

/// Requests of one queue answered at once.
const CONCURRENT: usize = 4;

/// The default page size of a listing.
const DEFAULT_PAGE: u32 = 100;

/// The deepest page a sorted search serves (its rows are kept in memory
/// while the whole table is scanned).
const MAX_OFFSET: u32 = 100_000;

/// Which requests a server answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// `console.snapshot`.
    Snapshot,
    /// `console.tokens`.
    Tokens,
}

impl Request {
    /// Both kinds.
    pub const ALL: [Request; 2] = [Request::Snapshot, Request::Tokens];

    /// The routing key on `NS.in`.
    pub fn routing_key(self) -> &'static str {
        match self {
            Request::Snapshot => SNAPSHOT_ROUTING_KEY,
            Request::Tokens => TOKENS_ROUTING_KEY,
        }
    }
}

/// The consumer of one console queue.
pub struct ConsoleServer {
    request: Request,
    channel: Channel,
    consumer: lapin::Consumer,
    service: Arc<Service>,
    stats: Arc<Stats>,
}

impl ConsoleServer {
    /// Opens a channel on `connection` and starts consuming the queue of
    /// `request`.
    pub async fn start(
        connection: &Connection,
        namespace: &Namespace,
        request: Request,
        service: Arc<Service>,
        stats: Arc<Stats>,
    ) -> Result<Self, lapin::Error> {
        let channel = connection.create_channel().await?;
        channel.basic_qos(16, BasicQosOptions::default()).await?;
        let consumer = channel
            .basic_consume(
                console_queue(namespace, request.routing_key())
                    .as_str()
                    .into(),
                format!("mmt-worker.{}", request.routing_key()).into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok(Self {
            request,
            channel,
            consumer,
            service,
            stats,
        })
    }

    /// Answers requests until `shutdown` fires or the link fails, up to
    /// [`CONCURRENT`] at once: a search that scans every token does not hold
    /// up a detail lookup or the counts behind it.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), ConsumerError> {
        let mut answering = tokio::task::JoinSet::new();
        loop {
            let next = tokio::select! {
                biased;
                () = shutdown.cancelled() => {
                    // Closed here, awaited: a channel left to close itself
                    // when its handle goes races the connection's close.
                    answering.shutdown().await;
                    self.channel.close(200, "mmt-worker stopping".into()).await?;
                    return Ok(());
                }
                Some(done) = answering.join_next(), if !answering.is_empty() => {
                    match done {
                        Ok(result) => result?,
                        Err(error) => tracing::error!(%error, "console request task failed"),
                    }
                    continue;
                }
                next = self.consumer.next(), if answering.len() < CONCURRENT => next,
            };
            let Some(delivery) = next else {
                return if shutdown.is_cancelled() {
                    Ok(())
                } else {
                    Err(ConsumerError::Cancelled {
                        queue: self.request.routing_key().to_owned(),
                    })
                };
            };
            let delivery = delivery?;
            let service = self.service.clone();
            let stats = self.stats.clone();
            let channel = self.channel.clone();
            let request = self.request;
            answering.spawn(async move {
                let body = delivery.data.clone();
                let reply =
                    tokio::task::spawn_blocking(move || answer(request, &body, &service, &stats))
                        .await
                        .unwrap_or_else(|error| {
                            tracing::error!(%error, "console request task failed");
                            None
                        });
                match reply {
                    Some(reply) => crate::amqp::rpc::answer(&channel, &delivery, &reply).await?,
                    None => tracing::warn!(
                        request = request.routing_key(),
                        "console request not answered"
                    ),
                }
                delivery
                    .acker
                    .ack(BasicAckOptions::default())
                    .await
                    .map(|_| ())
            });
        }
    }
}

fn json<T: Serialize>(value: &T) -> Option<Vec<u8>> {
    serde_json::to_vec(value)
        .inspect_err(|error| tracing::error!(%error, "console reply did not serialize"))
        .ok()
}

/// The reply to one request, or `None` when the store failed (logged; the
/// console times out and asks again).
pub fn answer(request: Request, body: &[u8], service: &Service, stats: &Stats) -> Option<Vec<u8>> {
    // From serde's category and position only: its text quotes the input.
    let invalid = |error: serde_json::Error| {
        let what = match error.classify() {
            serde_json::error::Category::Data => {
                format!("body does not match {}", request.routing_key())
            }
            _ => "body is not valid JSON".to_owned(),
        };
        ErrorReply::new(
            ErrorCode::InvalidMessage,
            format!("{what} (line {}, column {})", error.line(), error.column()),
        )
    };
    let reply = match request {
        Request::Snapshot => match serde_json::from_slice::<SnapshotRequest>(body) {
            Ok(r) => snapshot(&r, service, stats).map(|reply| json(&reply)),
            Err(error) => Ok(json(&invalid(error))),
        },
        Request::Tokens => match serde_json::from_slice::<TokensRequest>(body) {
            Ok(r) => tokens(&r, service).map(|reply| json(&reply)),
            Err(error) => Ok(json(&invalid(error))),
        },
    };
    reply.unwrap_or_else(|error| {
        tracing::error!(%error, request = request.routing_key(), "store failure answering the console");
        None
    })
}

fn snapshot(
    request: &SnapshotRequest,
    service: &Service,
    stats: &Stats,
) -> Result<SnapshotReply, StoreError> {
    let n = request
        .recent
        .unwrap_or(RECENT_CAPACITY)
        .min(RECENT_CAPACITY);
    let (recent_rejections, recent_lifecycle) = stats.recent(n);
    Ok(SnapshotReply {
        ok: true,
        at: rfc3339(now_millis()),
        counts: stats::count_rows(service)?,
        recent_rejections,
        recent_lifecycle,
        stats: stats.current(),
        recent_dead_letters: stats
            .dead_letters(request.dead_letters.unwrap_or(n).min(RECENT_CAPACITY)),
        dead_by_reason: stats.dead_by_reason(),
    })
}

/// The console row of a listed token, with its refresh state when the
/// engine owns it (one read of its refresh record).
fn row(
    service: &Service,
    now: UnixMillis,
    token_id: String,
    listed: Listed,
) -> Result<TokenRow, StoreError> {
    Ok(match listed {
        Listed::Live(meta) => TokenRow {
            refresh: service
                .store()
                .refresh_record(&token_id)?
                .map(|record| refresh_of(&record, meta.expires_at, now)),
            token_id,
            client_id: meta.client_id,
            broker_type: meta.broker_type,
            scope: meta.scope,
            state: meta.state,
            expires_at: meta.expires_at.map(rfc3339),
            updated_at: rfc3339(meta.updated_at),
            end_user_id: Some(meta.end_user_id),
            account_id: Some(meta.account_id),
            created_at: Some(rfc3339(meta.created_at)),
        },
        Listed::Revoked(tomb) => TokenRow {
            token_id,
            client_id: tomb.client_id,
            broker_type: tomb.broker_type,
            scope: tomb.scope,
            state: TokenState::Revoked,
            expires_at: None,
            updated_at: rfc3339(tomb.revoked_at),
            end_user_id: None,
            account_id: None,
            created_at: None,
            refresh: None,
        },
    })
}

/// The console rows of listed tokens.
fn rows(service: &Service, listed: Vec<(String, Listed)>) -> Result<Vec<TokenRow>, StoreError> {
    let now = now_millis();
    listed
        .into_iter()
        .map(|(id, listed)| row(service, now, id, listed))
        .collect()
}

fn tokens(request: &TokensRequest, service: &Service) -> Result<TokensReply, StoreError> {
    let limit = request.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE) as usize;
    if let Some(token_id) = &request.token_id {
        return one_token(token_id, service);
    }
    let query = Query::parse(request.filter.as_deref().unwrap_or_default());
    if request.by_client {
        return by_client(&query, service);
    }
    if let Some(sort) = request.sort {
        return search(request, sort, limit, &query, service);
    }
    let keep =
        |token_id: &str, listed: &Listed| query.is_empty() || query.matches(token_id, listed);
    let page =
        service
            .store()
            .list_tokens(request.after.as_deref(), limit, MAX_SCAN as usize, &keep)?;
    Ok(TokensReply {
        ok: true,
        tokens: rows(service, page.tokens)?,
        next_after: page.next_after,
        scanned: page.scanned as u64,
        total: None,
        next_offset: None,
        by_client: Vec::new(),
    })
}

/// The clients with the most matching tokens: one scan of every token.
fn by_client(query: &Query, service: &Service) -> Result<TokensReply, StoreError> {
    let counts = RefCell::new(std::collections::HashMap::<String, u64>::new());
    let matched = std::cell::Cell::new(0u64);
    let keep = |token_id: &str, listed: &Listed| {
        if query.is_empty() || query.matches(token_id, listed) {
            let client = match listed {
                Listed::Live(meta) => &meta.client_id,
                Listed::Revoked(tomb) => &tomb.client_id,
            };
            matched.set(matched.get() + 1);
            let mut counts = counts.borrow_mut();
            match counts.get_mut(client) {
                Some(n) => *n += 1,
                None => {
                    counts.insert(client.clone(), 1);
                }
            }
        }
        false
    };
    let page = service
        .store()
        .list_tokens(None, usize::MAX, MAX_SEARCH_SCAN as usize, &keep)?;
    let mut top: Vec<ClientCount> = counts
        .into_inner()
        .into_iter()
        .map(|(client_id, count)| ClientCount { client_id, count })
        .collect();
    top.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| a.client_id.cmp(&b.client_id))
    });
    top.truncate(crate::observe::stats::TOP_CLIENTS);
    Ok(TokensReply {
        ok: true,
        tokens: Vec::new(),
        next_after: None,
        scanned: page.scanned as u64,
        total: page.next_after.is_none().then(|| matched.get()),
        next_offset: None,
        by_client: top,
    })
}

/// The detail pane's lookup: exactly one token, or none.
fn one_token(token_id: &str, service: &Service) -> Result<TokensReply, StoreError> {
    let listed = match service.store().find(token_id)? {
        Found::Live { meta, .. } => Some(Listed::Live(meta)),
        Found::Revoked(tomb) => Some(Listed::Revoked(tomb)),
        Found::Missing => None,
    };
    let tokens = rows(
        service,
        listed
            .map(|listed| (token_id.to_owned(), listed))
            .into_iter()
            .collect(),
    )?;
    Ok(TokensReply {
        ok: true,
        total: Some(tokens.len() as u64),
        tokens,
        next_after: None,
        scanned: 1,
        next_offset: None,
        by_client: Vec::new(),
    })
}

/// A search sorted over every token: one scan of the whole table (within
/// [`MAX_SEARCH_SCAN`] records) keeping only the rows up to the page asked
/// for, and counting the matches.
fn search(
    request: &TokensRequest,
    sort: SortBy,
    limit: usize,
    query: &Query,
    service: &Service,
) -> Result<TokensReply, StoreError> {
    let offset = request.offset.unwrap_or(0).min(MAX_OFFSET) as usize;
    let top = RefCell::new(TopRows::new(sort, request.descending, offset + limit));
    let keep = |token_id: &str, listed: &Listed| {
        if query.is_empty() || query.matches(token_id, listed) {
            top.borrow_mut().offer(token_id, listed);
        }
        false
    };
    let page = service
        .store()
        .list_tokens(None, usize::MAX, MAX_SEARCH_SCAN as usize, &keep)
        .map(|page| (page.next_after.is_none(), page.scanned))?;
    let top = top.into_inner();
    let (complete, scanned) = page;
    let matched = top.matched;
    let tokens = rows(service, top.into_rows(offset))?;
    let shown = (offset + tokens.len()) as u64;
    Ok(TokensReply {
        ok: true,
        tokens,
        next_after: None,
        scanned: scanned as u64,
        total: complete.then_some(matched),
        next_offset: (shown < matched)
            .then(|| u32::try_from(shown).ok())
            .flatten(),
        by_client: Vec::new(),
    })
}

#[cfg(test)]
mod tests;
