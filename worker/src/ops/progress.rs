//! The progress line of the long operator commands (`store copy`,
//! `backup`, `restore`): rows done, rate and, for the tokens, time left. On
//! a terminal one line rewritten in place; elsewhere (a log, a pipe) a plain
//! line every 5 s.

use std::io::Write;
use std::time::{Duration, Instant};

use crate::store::copy::Table;

/// How often a plain line is written when the output is not a terminal.
const EVERY: Duration = Duration::from_secs(5);

/// Where a long command is.
#[derive(Clone, Debug)]
pub struct Progress {
    /// The table being worked through.
    pub table: Table,
    /// Rows of it done by this run.
    pub done: u64,
    /// Tokens in all (the size of the biggest table).
    pub tokens: u64,
    /// When this run started the table.
    pub started: Instant,
    /// What is done to the rows (`copied`, `backed up`, `restored`).
    pub verb: &'static str,
}

impl Progress {
    /// Nothing done yet of `table`, of `tokens` tokens.
    pub fn start(table: Table, tokens: u64, verb: &'static str) -> Self {
        Self {
            table,
            done: 0,
            tokens,
            started: Instant::now(),
            verb,
        }
    }

    /// Moves on to `table` (nothing of it done yet) unless it is the one.
    pub fn at(&mut self, table: Table) {
        if self.table != table {
            *self = Self::start(table, self.tokens, self.verb);
        }
    }

    /// One line: count, rate and time left (tokens only: the other tables
    /// have no count to go by).
    pub fn line(&self) -> String {
        let seconds = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = self.done as f64 / seconds;
        match self.table {
            Table::Tokens if self.tokens > 0 => {
                let left = self.tokens.saturating_sub(self.done) as f64 / rate.max(1.0);
                format!(
                    "tokens: {} of {} {} · {:.0}/s · about {} left",
                    self.done,
                    self.tokens,
                    self.verb,
                    rate,
                    short(Duration::from_secs_f64(left))
                )
            }
            table => format!(
                "{}: {} {} · {:.0}/s",
                table.name(),
                self.done,
                self.verb,
                rate
            ),
        }
    }
}

/// A duration as `1h02m`, `1m15s` or `9s`.
pub fn short(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// Writes progress lines for one command.
pub struct Reporter<W: Write> {
    out: W,
    command: &'static str,
    terminal: bool,
    said: Instant,
    shown: bool,
}

impl Reporter<std::io::Stderr> {
    /// Progress of `command` on stderr, in place when it is a terminal.
    pub fn stderr(command: &'static str) -> Self {
        use std::io::IsTerminal;
        let terminal = std::io::stderr().is_terminal();
        Self::new(std::io::stderr(), command, terminal)
    }
}

impl<W: Write> Reporter<W> {
    /// Progress of `command` on `out` (`terminal`: rewritten in place).
    pub fn new(out: W, command: &'static str, terminal: bool) -> Self {
        Self {
            out,
            command,
            terminal,
            said: Instant::now(),
            shown: false,
        }
    }

    /// Shows `progress`: at once on a terminal, else if the last line is
    /// old enough. A write that fails is not the command's failure.
    pub fn show(&mut self, progress: &Progress) {
        if self.terminal {
            let _ = write!(self.out, "\r\x1b[2K{}", progress.line());
            let _ = self.out.flush();
            self.shown = true;
        } else if self.said.elapsed() >= EVERY {
            let _ = writeln!(self.out, "{}: {}", self.command, progress.line());
            self.said = Instant::now();
        }
    }

    /// Ends the line rewritten in place, if there is one.
    pub fn end(&mut self) {
        if std::mem::take(&mut self.shown) {
            let _ = writeln!(self.out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_says_count_rate_and_time_left() {
        let mut progress = Progress::start(Table::Tokens, 2_000, "copied");
        progress.done = 500;
        progress.started = Instant::now() - Duration::from_secs(5);
        let line = progress.line();
        assert!(line.starts_with("tokens: 500 of 2000 copied · "), "{line}");
        assert!(line.ends_with(" left"), "{line}");
        progress.at(Table::Processed);
        progress.done = 7;
        assert!(
            progress.line().starts_with("processed: 7 copied · "),
            "{}",
            progress.line()
        );
        assert_eq!(short(Duration::from_secs(3_725)), "1h02m");
        assert_eq!(short(Duration::from_secs(75)), "1m15s");
    }

    #[test]
    fn a_terminal_gets_one_line_rewritten_and_a_log_a_line_now_and_then() {
        let progress = Progress::start(Table::Tokens, 10, "restored");
        let mut terminal = Reporter::new(Vec::new(), "restore", true);
        terminal.show(&progress);
        terminal.show(&progress);
        terminal.end();
        let text = String::from_utf8(terminal.out).expect("text");
        assert_eq!(text.matches("\r\x1b[2Ktokens: 0 of 10 restored").count(), 2);
        assert!(text.ends_with('\n'));
        let mut log = Reporter::new(Vec::new(), "restore", false);
        log.show(&progress);
        log.said -= EVERY;
        log.show(&progress);
        log.show(&progress);
        log.end();
        let text = String::from_utf8(log.out).expect("text");
        assert_eq!(text.lines().count(), 1, "{text:?}");
        assert!(
            text.starts_with("restore: tokens: 0 of 10 restored"),
            "{text}"
        );
        assert!(!text.contains('\u{1b}'));
    }
}
