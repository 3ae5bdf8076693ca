//! `mmt-tui`: the live on-call console of mmt, or with `--dump` a snapshot
//! printed for scripts. Glue: the feed (`conn`), the model (`state`), the
//! drawing (`view`), the key table (`input`) and the terminal guard (`term`)
//! meet in one `select!` loop that draws once per change.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod conn;
mod frames;
mod input;
mod state;
mod term;
mod timefmt;
mod view;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use crossterm::event::{Event as TermEvent, EventStream, KeyEvent};
use futures::StreamExt;
use mmt_shared::config::BrokerArgs;
use mmt_shared::time_fmt::now_millis;

use conn::{Ask, Feed};
use state::{Command, Msg, Screen, State};
use view::styles::Styles;

/// The live on-call console of mmt: token states, rates, queues and refused
/// requests, fed by the worker's events.
#[derive(Debug, Parser)]
#[command(name = "mmt-tui", version, about)]
struct Args {
    /// Broker connection.
    #[command(flatten)]
    broker: BrokerArgs,
    /// No colour (also when NO_COLOR is set); emphasis and text stay.
    #[arg(long)]
    no_color: bool,
    /// Print the current snapshot and exit.
    #[arg(long)]
    dump: bool,
    /// With --dump: print the snapshot as JSON.
    #[arg(long, requires = "dump")]
    json: bool,
    /// With --dump: seconds to wait for the worker's answer.
    #[arg(long, default_value_t = 10)]
    timeout_secs: u64,
    /// Draw every screen this many times off screen with the worker's live
    /// data, print the frame times as JSON and exit (for `mmt-bench`).
    #[arg(long, value_name = "FRAMES", conflicts_with = "dump")]
    frame_bench: Option<u32>,
    /// Write logs to this file (the console never logs to its terminal).
    #[arg(long, env = "MMT_TUI_LOG")]
    log_file: Option<PathBuf>,
}

/// How many feed messages are applied before the screen is drawn again.
const BATCH: usize = 1024;

fn init_logs(path: &PathBuf) -> anyhow::Result<()> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open the log file {}", path.display()))?;
    let filter = tracing_subscriber::EnvFilter::try_from_env("MMT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,lapin=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(Mutex::new(file))
        .init();
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let result = match &args.log_file {
        Some(path) => init_logs(path),
        None => Ok(()),
    };
    let result = match result {
        Ok(()) if args.dump => dump(&args).await,
        Ok(()) if args.frame_bench.is_some() => frame_bench(&args).await,
        Ok(()) => console(&args).await,
        Err(error) => Err(error),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("mmt-tui: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dump(args: &Args) -> anyhow::Result<()> {
    let namespace = &args.broker.namespace;
    let snapshot = conn::snapshot_once(
        &args.broker.broker()?,
        namespace,
        Duration::from_secs(args.timeout_secs),
    )
    .await?;
    let text = if args.json {
        serde_json::to_string_pretty(&snapshot)? + "\n"
    } else {
        view::dump::text(&snapshot, namespace.as_str())
    };
    let mut out = std::io::stdout().lock();
    let written = std::io::Write::write_all(&mut out, text.as_bytes())
        .and_then(|()| std::io::Write::flush(&mut out));
    match written {
        // `mmt-tui --dump | head`: a closed stdout is a normal end.
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        written => Ok(written?),
    }
}

async fn frame_bench(args: &Args) -> anyhow::Result<()> {
    let figures = frames::run(
        args.broker.broker()?,
        args.broker.namespace.clone(),
        args.frame_bench.unwrap_or(1),
        Duration::from_secs(args.timeout_secs),
    )
    .await?;
    println!("{figures}");
    Ok(())
}

fn colour_wanted(args: &Args) -> bool {
    !args.no_color && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

async fn console(args: &Args) -> anyhow::Result<()> {
    let namespace = args.broker.namespace.clone();
    let mut feed = conn::spawn(args.broker.broker()?, namespace.clone());
    let mut state = State::new(namespace.as_str(), now_millis());
    let styles = Styles::new(colour_wanted(args));
    let mut guard = term::TerminalGuard::enter().context("cannot set up the terminal")?;
    let mut keys = EventStream::new();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut dirty = true;
    loop {
        if dirty {
            let drawn = guard
                .terminal
                .draw(|frame| view::draw(frame, &state, styles))?;
            state.rows = drawn.area.height;
            dirty = false;
        }
        let commands = tokio::select! {
            biased;
            _ = terminate.recv() => vec![Command::Quit],
            key = keys.next() => match key {
                Some(Ok(TermEvent::Key(key))) => {
                    dirty = true;
                    on_key(&mut state, &key)
                }
                Some(Ok(TermEvent::Resize(..))) => {
                    dirty = true;
                    Vec::new()
                }
                Some(Ok(_)) => Vec::new(),
                Some(Err(error)) => return Err(error).context("cannot read the terminal"),
                None => vec![Command::Quit],
            },
            msg = feed.messages.recv() => {
                dirty = true;
                let Some(msg) = msg else {
                    anyhow::bail!("the feed stopped");
                };
                let now = now_millis();
                let mut commands = state.update(msg, now);
                for _ in 0..BATCH {
                    match feed.messages.try_recv() {
                        Ok(more) => commands.extend(state.update(more, now)),
                        Err(_) => break,
                    }
                }
                commands
            }
            _ = tick.tick() => {
                dirty = true;
                let now = now_millis();
                let mut commands = state.update(Msg::Dropped(feed.dropped.load(Ordering::Relaxed)), now);
                commands.extend(state.update(Msg::Tick, now));
                commands
            }
        };
        for command in commands {
            if let Command::Copy(text) = &command {
                copy(&mut guard, text);
            } else if !carry_out(&feed, command) {
                return Ok(());
            }
        }
    }
}

/// What a key does: editing the token filter, or the key table.
fn on_key(state: &mut State, key: &KeyEvent) -> Vec<Command> {
    if state.screen == Screen::Tokens && state.tokens.is_editing() {
        return match input::editing(key) {
            Some(input::Editing::Quit) => vec![Command::Quit],
            Some(input::Editing::Key(key)) => state.type_filter(key),
            None => Vec::new(),
        };
    }
    input::action(key, state.screen)
        .map(|action| state.act(action))
        .unwrap_or_default()
}

/// Puts `text` on the terminal's clipboard with OSC 52 (terminals that do
/// not support it ignore the sequence).
fn copy(guard: &mut term::TerminalGuard, text: &str) {
    use crossterm::ExecutableCommand as _;
    let clip = crossterm::clipboard::CopyToClipboard::to_clipboard_from(text);
    if let Err(error) = guard.terminal.backend_mut().execute(clip) {
        tracing::warn!(%error, "cannot write the clipboard sequence");
    }
}

/// Sends a command to the feed; false when the console must stop.
fn carry_out(feed: &Feed, command: Command) -> bool {
    let ask = match command {
        Command::Quit => return false,
        Command::Copy(_) => return true,
        Command::Snapshot => Ask::Snapshot,
        Command::Counts => Ask::Counts,
        Command::DeadLetters => Ask::DeadLetters,
        Command::Tokens(request) => Ask::Tokens(request),
    };
    feed.asks.send(ask).is_ok()
}
