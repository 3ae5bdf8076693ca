//! The key table: one list of bindings drives what a key does, the footer
//! hints and the `?` help popup, so the three cannot disagree. Key releases
//! and repeats are ignored.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::state::{Action, FilterKey, Screen};

/// Where a binding applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Context {
    /// On every screen.
    Global,
    /// On one screen.
    On(Screen),
    /// On the screens with a table (all of them: the overview's table is
    /// its lifecycle events).
    Lists,
}

impl Context {
    fn applies(self, screen: Screen) -> bool {
        match self {
            Context::Global => true,
            Context::On(s) => s == screen,
            Context::Lists => matches!(
                screen,
                Screen::Overview | Screen::Tokens | Screen::Rejections | Screen::DeadLetters
            ),
        }
    }
}

/// A key: its code and the modifiers it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key(pub KeyCode, pub KeyModifiers);

const fn plain(code: KeyCode) -> Key {
    Key(code, KeyModifiers::NONE)
}

const fn ch(c: char) -> Key {
    plain(KeyCode::Char(c))
}

/// One line of the key table.
#[derive(Clone, Copy, Debug)]
pub struct Binding {
    /// The keys.
    pub keys: &'static [Key],
    /// How the keys are written in the footer and the help.
    pub label: &'static str,
    /// What it does, for people.
    pub help: &'static str,
    /// What it does.
    pub action: Action,
    /// Where it applies.
    pub context: Context,
    /// The footer's word for it, when the footer shows it.
    pub hint: Option<&'static str>,
}

/// The key table.
pub const BINDINGS: &[Binding] = &[
    Binding {
        keys: &[ch('q'), Key(KeyCode::Char('c'), KeyModifiers::CONTROL)],
        label: "q",
        help: "quit (also Ctrl-C)",
        action: Action::Quit,
        context: Context::Global,
        hint: Some("quit"),
    },
    Binding {
        keys: &[plain(KeyCode::Tab)],
        label: "Tab",
        help: "next screen",
        action: Action::NextScreen,
        context: Context::Global,
        hint: Some("screen"),
    },
    Binding {
        keys: &[
            plain(KeyCode::BackTab),
            Key(KeyCode::BackTab, KeyModifiers::SHIFT),
        ],
        label: "S-Tab",
        help: "previous screen",
        action: Action::PrevScreen,
        context: Context::Global,
        hint: None,
    },
    Binding {
        keys: &[ch('1')],
        label: "1",
        help: "overview",
        action: Action::Jump(Screen::Overview),
        context: Context::Global,
        hint: None,
    },
    Binding {
        keys: &[ch('2')],
        label: "2",
        help: "tokens",
        action: Action::Jump(Screen::Tokens),
        context: Context::Global,
        hint: None,
    },
    Binding {
        keys: &[ch('3')],
        label: "3",
        help: "rejections",
        action: Action::Jump(Screen::Rejections),
        context: Context::Global,
        hint: None,
    },
    Binding {
        keys: &[ch('4')],
        label: "4",
        help: "dead letters",
        action: Action::Jump(Screen::DeadLetters),
        context: Context::Global,
        hint: None,
    },
    Binding {
        keys: &[ch('5')],
        label: "5",
        help: "health",
        action: Action::Jump(Screen::Health),
        context: Context::Global,
        hint: None,
    },
    Binding {
        keys: &[plain(KeyCode::Enter)],
        label: "Enter",
        help: "details of the selected row's token or dead letter",
        action: Action::Open,
        context: Context::Lists,
        hint: Some("info"),
    },
    Binding {
        keys: &[ch('y')],
        label: "y",
        help: "copy the tokenId (OSC 52, where the terminal allows)",
        action: Action::Copy,
        context: Context::Lists,
        hint: None,
    },
    Binding {
        keys: &[ch(' ')],
        label: "Space",
        help: "pause/resume the feeds (nothing is lost)",
        action: Action::Pause,
        context: Context::Global,
        hint: Some("pause"),
    },
    Binding {
        keys: &[ch('/')],
        label: "/",
        help: "search all tokens (words; client: user: state: scope: expires:)",
        action: Action::Filter,
        context: Context::On(Screen::Tokens),
        hint: Some("search"),
    },
    Binding {
        keys: &[ch('s')],
        label: "s",
        help: "sort all tokens by the next column",
        action: Action::Sort,
        context: Context::On(Screen::Tokens),
        hint: Some("sort"),
    },
    Binding {
        keys: &[ch('r')],
        label: "r",
        help: "reverse the sort order",
        action: Action::Reverse,
        context: Context::On(Screen::Tokens),
        hint: None,
    },
    Binding {
        keys: &[ch(']')],
        label: "]",
        help: "next page",
        action: Action::NextPage,
        context: Context::On(Screen::Tokens),
        hint: Some("next"),
    },
    Binding {
        keys: &[ch('[')],
        label: "[",
        help: "previous page",
        action: Action::PrevPage,
        context: Context::On(Screen::Tokens),
        hint: None,
    },
    Binding {
        keys: &[plain(KeyCode::Up), ch('k')],
        label: "↑/k",
        help: "up",
        action: Action::Up,
        context: Context::Lists,
        hint: None,
    },
    Binding {
        keys: &[plain(KeyCode::Down), ch('j')],
        label: "↓/j",
        help: "down",
        action: Action::Down,
        context: Context::Lists,
        hint: None,
    },
    Binding {
        keys: &[plain(KeyCode::PageUp)],
        label: "PgUp",
        help: "a screenful up",
        action: Action::PageUp,
        context: Context::Lists,
        hint: None,
    },
    Binding {
        keys: &[plain(KeyCode::PageDown)],
        label: "PgDn",
        help: "a screenful down",
        action: Action::PageDown,
        context: Context::Lists,
        hint: None,
    },
    Binding {
        keys: &[plain(KeyCode::Home), ch('g')],
        label: "Home/g",
        help: "first row",
        action: Action::Top,
        context: Context::Lists,
        hint: None,
    },
    Binding {
        keys: &[
            plain(KeyCode::End),
            ch('G'),
            Key(KeyCode::Char('G'), KeyModifiers::SHIFT),
        ],
        label: "End/G",
        help: "last row",
        action: Action::Bottom,
        context: Context::Lists,
        hint: None,
    },
    Binding {
        keys: &[Key(KeyCode::Char('r'), KeyModifiers::CONTROL)],
        label: "C-r",
        help: "ask the worker again",
        action: Action::Refresh,
        context: Context::Global,
        hint: None,
    },
    Binding {
        keys: &[ch('?')],
        label: "?",
        help: "this help",
        action: Action::Help,
        context: Context::Global,
        hint: Some("help"),
    },
    Binding {
        keys: &[plain(KeyCode::Esc)],
        label: "Esc",
        help: "close the help or the details, cancel the filter",
        action: Action::Close,
        context: Context::Global,
        hint: None,
    },
];

fn same(key: &Key, event: &KeyEvent) -> bool {
    let mods = match event.code {
        KeyCode::Char(_) => event.modifiers - KeyModifiers::SHIFT,
        _ => event.modifiers,
    };
    let want = match key.0 {
        KeyCode::Char(_) => key.1 - KeyModifiers::SHIFT,
        _ => key.1,
    };
    key.0 == event.code && mods == want
}

/// What a key press does on `screen`; `None` for releases, repeats and keys
/// without a binding.
pub fn action(event: &KeyEvent, screen: Screen) -> Option<Action> {
    if event.kind != KeyEventKind::Press {
        return None;
    }
    BINDINGS
        .iter()
        .filter(|b| b.context.applies(screen))
        .find(|b| b.keys.iter().any(|k| same(k, event)))
        .map(|b| b.action)
}

/// What a key press does while the filter is being typed: Ctrl-C still
/// quits, everything else edits the filter.
pub enum Editing {
    /// Leave the console.
    Quit,
    /// Edit the filter.
    Key(FilterKey),
}

/// The meaning of a key press while the filter is typed.
pub fn editing(event: &KeyEvent) -> Option<Editing> {
    if event.kind != KeyEventKind::Press {
        return None;
    }
    match event.code {
        KeyCode::Char('c') if event.modifiers.contains(KeyModifiers::CONTROL) => {
            Some(Editing::Quit)
        }
        KeyCode::Char('u') if event.modifiers.contains(KeyModifiers::CONTROL) => {
            Some(Editing::Key(FilterKey::Clear))
        }
        KeyCode::Left | KeyCode::Right | KeyCode::Home | KeyCode::End => {
            Some(Editing::Key(FilterKey::Deselect))
        }
        KeyCode::Char(c) if !event.modifiers.contains(KeyModifiers::CONTROL) => {
            Some(Editing::Key(FilterKey::Char(c)))
        }
        KeyCode::Backspace => Some(Editing::Key(FilterKey::Backspace)),
        KeyCode::Enter => Some(Editing::Key(FilterKey::Enter)),
        KeyCode::Esc => Some(Editing::Key(FilterKey::Escape)),
        _ => None,
    }
}

/// The footer hints for `screen`: (keys, what), from the key table.
pub fn footer(screen: Screen) -> impl Iterator<Item = (&'static str, &'static str)> {
    BINDINGS
        .iter()
        .filter(move |b| b.context.applies(screen))
        .filter_map(|b| b.hint.map(|hint| (b.label, hint)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn press(code: KeyCode, modifiers: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, modifiers)
    }

    #[test]
    fn quit_keys_work_everywhere_and_releases_are_ignored() {
        for screen in Screen::ALL {
            assert_eq!(
                action(&press(KeyCode::Char('q'), KeyModifiers::NONE), screen),
                Some(Action::Quit)
            );
            assert_eq!(
                action(&press(KeyCode::Char('c'), KeyModifiers::CONTROL), screen),
                Some(Action::Quit)
            );
        }
        let mut release = press(KeyCode::Char('q'), KeyModifiers::NONE);
        release.kind = KeyEventKind::Release;
        assert_eq!(action(&release, Screen::Overview), None);
        let mut repeat = press(KeyCode::Tab, KeyModifiers::NONE);
        repeat.kind = KeyEventKind::Repeat;
        assert_eq!(action(&repeat, Screen::Overview), None);
    }

    #[test]
    fn screen_keys_apply_only_on_their_screen() {
        let slash = press(KeyCode::Char('/'), KeyModifiers::NONE);
        assert_eq!(action(&slash, Screen::Tokens), Some(Action::Filter));
        assert_eq!(action(&slash, Screen::Overview), None);
        assert_eq!(
            action(
                &press(KeyCode::Char('?'), KeyModifiers::SHIFT),
                Screen::Rejections
            ),
            Some(Action::Help)
        );
        assert_eq!(
            action(
                &press(KeyCode::BackTab, KeyModifiers::SHIFT),
                Screen::Tokens
            ),
            Some(Action::PrevScreen)
        );
    }

    #[test]
    fn every_binding_has_distinct_keys_in_each_screen() {
        for screen in Screen::ALL {
            let keys: Vec<_> = BINDINGS
                .iter()
                .filter(|b| b.context.applies(screen))
                .flat_map(|b| b.keys.iter())
                .collect();
            for (i, key) in keys.iter().enumerate() {
                assert!(
                    !keys[i + 1..].contains(key),
                    "{key:?} bound twice on {screen:?}"
                );
            }
        }
    }

    #[test]
    fn the_footer_comes_from_the_table() {
        let hints: Vec<_> = footer(Screen::Tokens).map(|(k, _)| k).collect();
        assert_eq!(hints, ["q", "Tab", "Enter", "Space", "/", "s", "]", "?"]);
    }

    #[test]
    fn ctrl_u_clears_the_filter_and_esc_cancels_it() {
        let key = |code, modifiers| match editing(&press(code, modifiers)) {
            Some(Editing::Key(k)) => Some(k),
            _ => None,
        };
        assert_eq!(
            key(KeyCode::Char('u'), KeyModifiers::CONTROL),
            Some(FilterKey::Clear)
        );
        assert_eq!(
            key(KeyCode::Esc, KeyModifiers::NONE),
            Some(FilterKey::Escape)
        );
        assert_eq!(
            key(KeyCode::End, KeyModifiers::NONE),
            Some(FilterKey::Deselect)
        );
    }

    #[test]
    fn enter_opens_details_on_every_screen_with_a_table() {
        for screen in Screen::ALL.into_iter().filter(|s| *s != Screen::Health) {
            assert_eq!(
                action(&press(KeyCode::Enter, KeyModifiers::NONE), screen),
                Some(Action::Open)
            );
        }
    }
}
