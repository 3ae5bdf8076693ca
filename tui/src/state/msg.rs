//! What goes into the model and what comes out: the screens, the broker
//! link, the feed's messages, the operator's actions and the model's
//! commands.

use mmt_shared::console::{SnapshotReply, TokensReply, TokensRequest, WorkerStats};
use mmt_shared::events::Event;

/// The screens, in Tab order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Screen {
    /// Counts, rates, queues, recent lifecycle events.
    Overview,
    /// The token listing.
    Tokens,
    /// The feed of refused requests.
    Rejections,
    /// What the worker dead-lettered.
    DeadLetters,
    /// Latency, errors, queues, the worker process, top clients.
    Health,
}

impl Screen {
    /// Every screen, in Tab order.
    pub const ALL: [Screen; 5] = [
        Screen::Overview,
        Screen::Tokens,
        Screen::Rejections,
        Screen::DeadLetters,
        Screen::Health,
    ];

    /// The tab title.
    pub fn title(self) -> &'static str {
        match self {
            Screen::Overview => "Overview",
            Screen::Tokens => "Tokens",
            Screen::Rejections => "Rejections",
            Screen::DeadLetters => "Dead letters",
            Screen::Health => "Health",
        }
    }

    fn index(self) -> usize {
        Screen::ALL.iter().position(|s| *s == self).unwrap_or(0)
    }

    pub(super) fn offset(self, by: isize) -> Screen {
        let n = Screen::ALL.len() as isize;
        let next = (self.index() as isize + by).rem_euclid(n) as usize;
        Screen::ALL.get(next).copied().unwrap_or(Screen::Overview)
    }
}

/// The broker link, as the feed reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Link {
    /// Trying to connect (`attempt` 0 is the first try); `error` says why the
    /// previous try or link failed.
    Connecting {
        /// How many tries failed in a row.
        attempt: u32,
        /// Why the last one failed.
        error: Option<String>,
    },
    /// Connected and subscribed to `NS.events`.
    Up,
}

/// What the feed tells the model.
#[derive(Clone, Debug)]
pub enum Msg {
    /// The broker link changed.
    Link(Link),
    /// An event from `NS.events` (not `worker.stats`).
    Event(Event),
    /// A `worker.stats` body.
    Stats(WorkerStats),
    /// The reply to a snapshot request.
    Snapshot(SnapshotReply),
    /// The reply to a token listing request.
    Tokens(TokensRequest, TokensReply),
    /// A request got no usable answer: why, and the listing request when it
    /// was one.
    RequestFailed(Option<TokensRequest>, String),
    /// The feed has dropped this many events in total (it could not keep
    /// up).
    Dropped(u64),
    /// Time passes (ages in the header).
    Tick,
}

/// What the operator asked for (from the key table, see `input.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Leave the console.
    Quit,
    /// Next screen.
    NextScreen,
    /// Previous screen.
    PrevScreen,
    /// Go to a screen.
    Jump(Screen),
    /// Open or close the help popup.
    Help,
    /// Close the help popup or cancel the filter being typed.
    Close,
    /// Freeze or resume the feeds (nothing is lost while frozen).
    Pause,
    /// Move the selection up.
    Up,
    /// Move the selection down.
    Down,
    /// A screenful up.
    PageUp,
    /// A screenful down.
    PageDown,
    /// First row.
    Top,
    /// Last row.
    Bottom,
    /// Start typing a filter.
    Filter,
    /// Sort by the next column.
    Sort,
    /// Reverse the sort order.
    Reverse,
    /// Next page of the token listing.
    NextPage,
    /// Previous page of the token listing.
    PrevPage,
    /// Ask the worker again (snapshot and the current page).
    Refresh,
    /// Open the detail pane of the selected row's token.
    Open,
    /// Copy the tokenId of the pane or the selected row (OSC 52).
    Copy,
}

/// What the model wants the feed to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Ask for a snapshot.
    Snapshot,
    /// Ask for the token counts only (a snapshot without recent events).
    Counts,
    /// Ask for the token counts and the recent dead letters.
    DeadLetters,
    /// Ask for a page of the token listing.
    Tokens(TokensRequest),
    /// Put this text on the terminal's clipboard (OSC 52).
    Copy(String),
    /// Leave.
    Quit,
}
