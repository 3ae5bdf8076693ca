//! The selection on every table and what Enter and `y` do with it: the
//! detail pane of the selected row's token (or of the selected dead
//! letter), its tokenId on the clipboard.

use super::{Action, Command, Detail, Screen, State};

impl State {
    pub(super) fn scroll(&mut self, action: Action) {
        const PAGE: usize = 10;
        let moved = |at: usize, len: usize| {
            let last = len.saturating_sub(1);
            match action {
                Action::Up => at.saturating_sub(1),
                Action::Down => at.saturating_add(1),
                Action::PageUp => at.saturating_sub(PAGE),
                Action::PageDown => at.saturating_add(PAGE),
                Action::Top => 0,
                _ => last,
            }
            .min(last)
        };
        match self.screen {
            Screen::Tokens => self.tokens.scroll(action, PAGE),
            Screen::Rejections => {
                self.rejection_selected = moved(self.rejection_selected, self.rejections.len());
            }
            Screen::Overview => {
                self.lifecycle_selected = moved(self.lifecycle_selected, self.lifecycle.len());
            }
            Screen::DeadLetters => {
                self.dead_selected = moved(self.dead_selected, self.dead_letters.len());
            }
            Screen::Health => {}
        }
    }

    /// The tokenId of the selected row of the screen shown.
    fn selected_token(&self) -> Option<String> {
        let newest = |len: usize, selected: usize| len.checked_sub(selected + 1);
        let id = match self.screen {
            Screen::Tokens => self.tokens.selected_row().map(|r| r.token_id.clone()),
            Screen::Rejections => newest(self.rejections.len(), self.rejection_selected)
                .and_then(|i| self.rejections.get(i))
                .map(|r| r.token_id.clone()),
            Screen::Overview => newest(self.lifecycle.len(), self.lifecycle_selected)
                .and_then(|i| self.lifecycle.get(i))
                .map(|l| l.token_id.clone()),
            Screen::DeadLetters | Screen::Health => None,
        };
        id.filter(|id| !id.is_empty())
    }

    pub(super) fn open_detail(&mut self) -> Vec<Command> {
        if self.screen == Screen::DeadLetters {
            self.dead_open = self
                .dead_letters
                .len()
                .checked_sub(self.dead_selected + 1)
                .and_then(|i| self.dead_letters.get(i))
                .cloned();
            return Vec::new();
        }
        let Some(token_id) = self.selected_token() else {
            return Vec::new();
        };
        let row = self
            .tokens
            .rows
            .iter()
            .find(|r| r.token_id == token_id)
            .cloned();
        let (detail, request) = Detail::open(token_id, row, self.now);
        self.detail = Some(detail);
        request.map(Command::Tokens).into_iter().collect()
    }

    pub(super) fn copy(&mut self) -> Vec<Command> {
        let id = match &self.detail {
            Some(detail) => Some(detail.token_id.clone()),
            None => self.selected_token(),
        };
        match id {
            Some(id) => {
                self.notice = Some("tokenId copied (OSC 52, where the terminal allows)".into());
                vec![Command::Copy(id)]
            }
            None => Vec::new(),
        }
    }
}
