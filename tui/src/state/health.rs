//! The health screen's one question for the worker: which clients hold the
//! most tokens (a scan of every token, asked when the screen is shown).

use mmt_shared::console::{TokensReply, TokensRequest};

/// The top clients by tokens, once the worker answered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TopClients {
    /// (client, tokens), most first.
    pub by_tokens: Vec<(String, u64)>,
    /// Whether the worker is being asked.
    pub loading: bool,
    /// Whether an answer ever arrived.
    pub loaded: bool,
    pending: Option<TokensRequest>,
}

impl TopClients {
    /// The request to send, unless one is in flight.
    pub fn ask(&mut self) -> Option<TokensRequest> {
        if self.loading {
            return None;
        }
        let request = TokensRequest {
            by_client: true,
            ..TokensRequest::default()
        };
        self.loading = true;
        self.pending = Some(request.clone());
        Some(request)
    }

    /// Whether `request` is this one's.
    pub fn awaits(&self, request: &TokensRequest) -> bool {
        self.pending.as_ref() == Some(request)
    }

    /// The worker answered.
    pub fn loaded(&mut self, reply: TokensReply) {
        self.pending = None;
        self.loading = false;
        self.loaded = true;
        self.by_tokens = reply
            .by_client
            .into_iter()
            .map(|c| (c.client_id, c.count))
            .collect();
    }

    /// The worker did not answer.
    pub fn failed(&mut self) {
        self.pending = None;
        self.loading = false;
    }
}
