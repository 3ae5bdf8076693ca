//! The terminal: raw mode and the alternate screen for as long as a
//! [`TerminalGuard`] lives, restored when it drops and when anything panics.

use std::io::{self, Stdout};
use std::sync::Once;

use crossterm::ExecutableCommand;
use crossterm::cursor::Show;
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;

/// The terminal the console draws on.
pub type Term = Terminal<CrosstermBackend<Stdout>>;

/// Puts the terminal back: leaves the alternate screen, shows the cursor,
/// leaves raw mode. Safe to call more than once.
pub fn restore() {
    let mut out = io::stdout();
    let _ = out.execute(LeaveAlternateScreen);
    let _ = out.execute(Show);
    let _ = disable_raw_mode();
}

fn restore_on_panic() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
    });
}

/// Owns the terminal while the console runs.
pub struct TerminalGuard {
    /// The ratatui terminal.
    pub terminal: Term,
}

impl TerminalGuard {
    /// Enters raw mode and the alternate screen.
    pub fn enter() -> io::Result<Self> {
        restore_on_panic();
        enable_raw_mode()?;
        let mut out = io::stdout();
        if let Err(error) = out.execute(EnterAlternateScreen) {
            restore();
            return Err(error);
        }
        let terminal = Terminal::new(CrosstermBackend::new(out)).inspect_err(|_| restore())?;
        Ok(Self { terminal })
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore();
    }
}
