//! Colours and emphasis. Colour is never the only signal: every coloured
//! thing also says what it means in text, and `--no-color` (or `NO_COLOR`)
//! keeps only bold and reverse.

use ratatui::style::{Color, Modifier, Style};

/// The console's palette.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Styles {
    color: bool,
}

impl Styles {
    /// A palette with or without colour.
    pub fn new(color: bool) -> Self {
        Self { color }
    }

    fn fg(self, color: Color) -> Style {
        if self.color {
            Style::default().fg(color)
        } else {
            Style::default()
        }
    }

    /// Good news: connected, alive, live.
    pub fn good(self) -> Style {
        self.fg(Color::Green)
    }

    /// Needs attention: paused, reconnecting, stale.
    pub fn warn(self) -> Style {
        self.fg(Color::Yellow).add_modifier(Modifier::BOLD)
    }

    /// Bad news: down, dead, dropped, scope mismatch.
    pub fn bad(self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }

    /// Secondary text.
    pub fn dim(self) -> Style {
        if self.color {
            Style::default().fg(Color::DarkGray)
        } else {
            Style::default()
        }
    }

    /// Titles and headers.
    pub fn title(self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    /// Key names in the footer and the help.
    pub fn key(self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    /// The selected row.
    pub fn selected(self) -> Style {
        Style::default().add_modifier(Modifier::REVERSED)
    }

    /// The active tab.
    pub fn active_tab(self) -> Style {
        self.fg(Color::Cyan)
            .add_modifier(Modifier::BOLD | Modifier::REVERSED)
    }

    /// Sparklines.
    pub fn spark(self) -> Style {
        self.fg(Color::Cyan)
    }
}
