//! The bench's figures: per-run values, their medians and spread, the goals
//! of issue #4, a table for people and one JSON object for machines.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Map, Value, json};

use super::BenchConfig;
use super::goals::{GOALS, Goal};

/// The concurrency the goals are stated at.
pub const HEADLINE_CONCURRENCY: usize = 4;

/// The figures of one run, by name.
#[derive(Clone, Debug, Default)]
pub struct RunFigures(BTreeMap<String, f64>);

impl RunFigures {
    /// Sets a figure.
    pub fn set(&mut self, name: &str, value: f64) {
        self.0.insert(name.to_owned(), value);
    }

    /// A figure, if it was measured.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.0.get(name).copied()
    }
}

/// The `p`-th quantile (0..=1) of sorted values, nearest rank; NaN when empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// One figure over the runs.
#[derive(Clone, Debug)]
pub struct Spread {
    /// The median of the runs.
    pub median: f64,
    /// The smallest run.
    pub min: f64,
    /// The largest run.
    pub max: f64,
    /// Every run, in order.
    pub runs: Vec<f64>,
}

impl Spread {
    fn of(runs: Vec<f64>) -> Self {
        let mut sorted = runs.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = match n {
            0 => f64::NAN,
            _ if n % 2 == 1 => sorted[n / 2],
            _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        };
        Self {
            median,
            min: sorted.first().copied().unwrap_or(f64::NAN),
            max: sorted.last().copied().unwrap_or(f64::NAN),
            runs,
        }
    }
}

/// The machine the bench ran on.
#[derive(Clone, Debug)]
pub struct Machine {
    cpus: usize,
    cpu_model: Option<String>,
    mem_total_mb: Option<f64>,
    load_before: Option<String>,
    load_after: Option<String>,
}

fn load_average() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some(
        text.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    )
}

impl Machine {
    /// Reads the CPU, memory and load average (before the run).
    pub fn read() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        Self {
            cpus: std::thread::available_parallelism().map_or(0, usize::from),
            cpu_model: cpuinfo
                .lines()
                .find_map(|l| l.strip_prefix("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, model)| model.trim().to_owned()),
            mem_total_mb: meminfo
                .lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|l| l.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
                .map(|kib| (kib / 1024.0).round()),
            load_before: load_average(),
            load_after: None,
        }
    }

    /// Reads the load average after the run.
    pub fn finish(mut self) -> Self {
        self.load_after = load_average();
        self
    }
}

/// How the console's frame time is measured.
pub const CONSOLE_NOTE: &str = "console_frame_ms_*: p99 of `mmt-tui --frame-bench 200` on its heaviest screen, drawn at 200x60 into ratatui's TestBackend with the worker's live snapshot and first token page (layout, widgets and buffer diff; not the terminal's own output)";

/// The outcome of a bench run.
#[derive(Clone, Debug)]
pub struct Report {
    /// Every measured figure over the runs.
    pub figures: BTreeMap<String, Spread>,
    /// The goals, evaluated on the medians.
    pub goals: Vec<Goal>,
    machine: Machine,
    quick: bool,
    messages: usize,
    runs: usize,
    prefetch: u16,
    concurrencies: Vec<usize>,
    small_tokens: usize,
    scale_tokens: usize,
    footprint_tokens: usize,
    resolve_secs: f64,
    refresh: RefreshConfig,
    /// Purge: tokens in the store, revoked per purge, the bound in seconds.
    purge: (usize, usize, u64),
    /// Rewrap: tokens in the store, the worker's `--rewrap-per-sec`.
    rewrap: (usize, u32),
    notes: Vec<String>,
    /// `--store-url` (password hidden), its worker counts and concurrencies.
    shared: Option<(String, Vec<usize>, Vec<usize>)>,
}

/// The refresh phase's sizes, for the JSON object and the table.
#[derive(Clone, Debug)]
struct RefreshConfig {
    tokens: usize,
    concurrencies: Vec<usize>,
    lapse_tokens: usize,
    lapse_concurrency: usize,
    compression: u64,
    provider_latency_ms: f64,
}

impl Report {
    /// Medians and spreads of `runs`, and the goals.
    pub fn new(
        config: &BenchConfig,
        machine: Machine,
        runs: &[RunFigures],
        mut notes: Vec<String>,
    ) -> Self {
        let mut by_name: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for run in runs {
            let mut run = run.clone();
            if let (Some(large), Some(small)) =
                (run.get("resolve_1m_p99_ms"), run.get("resolve_1k_p99_ms"))
            {
                run.set("resolve_p99_ratio_1m", large / small);
            }
            for (name, value) in run.0 {
                by_name.entry(name).or_default().push(value);
            }
        }
        let figures: BTreeMap<String, Spread> = by_name
            .into_iter()
            .map(|(name, values)| (name, Spread::of(values)))
            .collect();
        let goals = GOALS
            .iter()
            .map(|&(text, figure, target, bound)| Goal {
                text,
                figure,
                target,
                bound,
                value: figures.get(figure).map(|s| s.median),
            })
            .collect();
        if config.store_url.is_none() {
            notes.push(CONSOLE_NOTE.to_owned());
        }
        if config.quick {
            notes.push(format!(
                "quick run: the *_1m figures are at {} tokens, and the figures only show that the harness works",
                config.scale_tokens
            ));
        }
        Self {
            figures,
            goals,
            machine,
            quick: config.quick,
            messages: config.messages,
            runs: config.runs,
            prefetch: config.prefetch,
            concurrencies: config.concurrencies.clone(),
            small_tokens: config.small_tokens,
            scale_tokens: config.scale_tokens,
            footprint_tokens: config.footprint_tokens,
            resolve_secs: config.resolve_time.as_secs_f64(),
            refresh: RefreshConfig {
                tokens: config.refresh_tokens,
                concurrencies: config.refresh_concurrencies.clone(),
                lapse_tokens: config.lapse_tokens,
                lapse_concurrency: config.lapse_concurrency,
                compression: config.compression,
                provider_latency_ms: config.provider_latency.as_secs_f64() * 1000.0,
            },
            purge: (
                config.purge_tokens,
                config.purge_revocations,
                config.purge_within.as_secs(),
            ),
            rewrap: (config.rewrap_tokens, config.rewrap_per_sec),
            notes,
            shared: config.store_url.as_deref().map(|url| {
                (
                    mmt_worker::store::postgres::redact(url),
                    config.workers.clone(),
                    config.shared_concurrencies.clone(),
                )
            }),
        }
    }

    fn median(&self, name: &str) -> Option<f64> {
        self.figures.get(name).map(|s| s.median)
    }

    /// One JSON object: every figure's median at the top level (and
    /// then `spread`, `goals`,
    /// `config`, `machine` and `notes`.
    pub fn to_json(&self) -> Value {
        let mut object = Map::new();
        for (name, spread) in &self.figures {
            object.insert(name.clone(), number(spread.median));
        }
        let spread: Map<String, Value> = self
            .figures
            .iter()
            .map(|(name, s)| {
                (
                    name.clone(),
                    json!({
                        "median": number(s.median),
                        "min": number(s.min),
                        "max": number(s.max),
                        "runs": s.runs.iter().map(|v| number(*v)).collect::<Vec<_>>(),
                    }),
                )
            })
            .collect();
        object.insert("spread".into(), Value::Object(spread));
        let goals: Vec<Value> = self
            .goals
            .iter()
            .map(|g| {
                json!({
                    "goal": g.text,
                    "figure": g.figure,
                    "target": g.target,
                    "value": g.value.map_or(Value::Null, number),
                    "met": g.met(),
                    "margin": g.margin().map_or(Value::Null, number),
                })
            })
            .collect();
        object.insert("goals".into(), Value::Array(goals));
        object.insert(
            "config".into(),
            json!({
                "quick": self.quick,
                "messages": self.messages,
                "runs": self.runs,
                "prefetch": self.prefetch,
                "concurrencies": self.concurrencies,
                "headline_concurrency": HEADLINE_CONCURRENCY,
                "resolve_window_s": self.resolve_secs,
                "small_tokens": self.small_tokens,
                "scale_tokens": self.scale_tokens,
                "footprint_tokens": self.footprint_tokens,
                "refresh_tokens": self.refresh.tokens,
                "refresh_concurrencies": self.refresh.concurrencies,
                "lapse_tokens": self.refresh.lapse_tokens,
                "lapse_concurrency": self.refresh.lapse_concurrency,
                "compression": self.refresh.compression,
                "provider_latency_ms": self.refresh.provider_latency_ms,
                "purge_tokens": self.purge.0,
                "purge_revocations": self.purge.1,
                "purge_within_s": self.purge.2,
                "rewrap_tokens": self.rewrap.0,
                "rewrap_per_sec": self.rewrap.1,
                "rewrap_page": super::rewrap::PAGE,
                "store_url": self.shared.as_ref().map(|(url, _, _)| url),
                "workers": self.shared.as_ref().map(|(_, workers, _)| workers),
                "shared_concurrencies": self.shared.as_ref().map(|(_, _, c)| c),
            }),
        );
        object.insert(
            "machine".into(),
            json!({
                "cpus": self.machine.cpus,
                "cpu_model": self.machine.cpu_model,
                "mem_total_mb": self.machine.mem_total_mb,
                "load_average_before": self.machine.load_before,
                "load_average_after": self.machine.load_after,
            }),
        );
        object.insert("notes".into(), json!(self.notes));
        Value::Object(object)
    }

    fn cell(&self, name: &str, decimals: usize) -> String {
        match self.figures.get(name) {
            Some(s) if self.runs > 1 => format!(
                "{:.*} ({:.*}-{:.*})",
                decimals, s.median, decimals, s.min, decimals, s.max
            ),
            Some(s) => format!("{:.*}", decimals, s.median),
            None => "-".to_owned(),
        }
    }

    /// The table for people.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let spread = if self.runs > 1 {
            format!("median (min-max) of {} runs", self.runs)
        } else {
            "1 run".to_owned()
        };
        let _ = writeln!(
            out,
            "mmt-bench{}: {spread}; {} cpus, {}; load average {} -> {}",
            if self.quick { " --quick" } else { "" },
            self.machine.cpus,
            self.machine.cpu_model.as_deref().unwrap_or("unknown CPU"),
            self.machine.load_before.as_deref().unwrap_or("?"),
            self.machine.load_after.as_deref().unwrap_or("?"),
        );
        if self.shared.is_some() {
            self.shared_table(&mut out);
            for note in &self.notes {
                let _ = writeln!(out, "\nNote: {note}");
            }
            return out;
        }
        let _ = writeln!(
            out,
            "\nIngest: {} integration.connected messages drained from a backlog, prefetch {}",
            self.messages, self.prefetch
        );
        let _ = writeln!(
            out,
            "  {:<8} {:>26} {:>26} {:>20}",
            "queue", "ceiling msg/s", "worker msg/s", "ratio"
        );
        for (label, prefix) in [("quorum", ""), ("classic", "classic_")] {
            let _ = writeln!(
                out,
                "  {:<8} {:>26} {:>26} {:>20}",
                label,
                self.cell(&format!("{prefix}ceiling_msgs_per_s"), 0),
                self.cell(&format!("{prefix}ingest_msgs_per_s"), 0),
                self.cell(&format!("{prefix}ingest_ratio"), 2),
            );
        }
        for (label, prefix) in [("quorum", ""), ("classic", "classic_")] {
            let _ = writeln!(
                out,
                "  {label}: bench process CPU per message (us), ceiling {}, worker {}",
                self.cell(&format!("{prefix}ceiling_cpu_us_per_msg"), 0),
                self.cell(&format!("{prefix}ingest_cpu_us_per_msg"), 0),
            );
        }
        let _ = writeln!(
            out,
            "\nResolve: closed loop, {:.0} s per level, {} tokens; latencies in ms",
            self.resolve_secs, self.small_tokens
        );
        let _ = writeln!(
            out,
            "  {:>4} {:<7} {:>22} {:>20} {:>20} {:>20}",
            "conc", "", "msg/s", "p50", "p95", "p99"
        );
        for c in &self.concurrencies {
            for (label, prefix) in [("worker", "resolve"), ("echo", "echo")] {
                let _ = writeln!(
                    out,
                    "  {:>4} {:<7} {:>22} {:>20} {:>20} {:>20}",
                    c,
                    label,
                    self.cell(&format!("{prefix}_c{c}_msgs_per_s"), 0),
                    self.cell(&format!("{prefix}_c{c}_p50_ms"), 2),
                    self.cell(&format!("{prefix}_c{c}_p95_ms"), 2),
                    self.cell(&format!("{prefix}_c{c}_p99_ms"), 2),
                );
            }
        }
        let _ = writeln!(
            out,
            "  at concurrency {HEADLINE_CONCURRENCY}: throughput {} of the echo, p99 {} of the echo's",
            self.cell("resolve_throughput_ratio", 2),
            self.cell("resolve_p99_ratio", 2),
        );
        let _ = writeln!(
            out,
            "  strict mode (--clients) at concurrency {HEADLINE_CONCURRENCY}: {} msg/s, p99 {} ms; throughput {} of open mode, p99 {} of open mode's",
            self.cell("strict_resolve_msgs_per_s", 0),
            self.cell("strict_resolve_p99_ms", 2),
            self.cell("strict_throughput_ratio", 2),
            self.cell("strict_p99_ratio", 2),
        );
        let _ = writeln!(
            out,
            "\nScale: worker as a child process over a directly loaded store; resolve at concurrency {HEADLINE_CONCURRENCY}"
        );
        let _ = writeln!(
            out,
            "  {:<10} {:>20} {:>20} {:>20} {:>20} {:>20} {:>20} {:>22}",
            "tokens",
            "start ms",
            "cold start ms",
            "RSS MB",
            "peak RSS MB",
            "disk MB",
            "p99 ms",
            "msg/s"
        );
        for (point, tokens) in [("1k", self.small_tokens), ("1m", self.scale_tokens)] {
            let _ = writeln!(
                out,
                "  {:<10} {:>20} {:>20} {:>20} {:>20} {:>20} {:>20} {:>22}",
                tokens,
                self.cell(&format!("start_ms_{point}"), 0),
                self.cell(&format!("cold_start_ms_{point}"), 0),
                self.cell(&format!("rss_mb_{point}"), 0),
                self.cell(&format!("rss_peak_mb_{point}"), 0),
                self.cell(&format!("disk_mb_{point}"), 0),
                self.cell(&format!("resolve_{point}_p99_ms"), 2),
                self.cell(&format!("resolve_{point}_msgs_per_s"), 0),
            );
        }
        let _ = writeln!(
            out,
            "  first start after the load (the engine replays the journal the load left; page cache dropped first with --drop-caches): {} ms (small) / {} ms (large)",
            self.cell("first_start_ms_1k", 0),
            self.cell("first_start_ms_1m", 0),
        );
        let _ = writeln!(
            out,
            "  p99 ratio large/small {}; direct load {} tokens/s; console frame p99 {} ms (small) / {} ms (large)",
            self.cell("resolve_p99_ratio_1m", 2),
            self.cell("preload_tokens_per_s", 0),
            self.cell("console_frame_ms_1k", 2),
            self.cell("console_frame_ms_1m", 2),
        );
        let _ = writeln!(
            out,
            "  console token search (filter + sort) {} ms warm, {} ms first; sort of every token {} ms warm, {} ms first (large); RSS after the searches {} MB",
            self.cell("console_search_ms_1m", 0),
            self.cell("console_search_first_ms_1m", 0),
            self.cell("console_sort_ms_1m", 0),
            self.cell("console_sort_first_ms_1m", 0),
            self.cell("rss_after_search_mb_1m", 0),
        );
        let _ = writeln!(
            out,
            "  through the broker: {} connects drained by a worker child at {} msg/s: RSS {} MB (peak {}), disk {} bytes per token (a direct load of as many: {})",
            self.footprint_tokens,
            self.cell("broker_msgs_per_s", 0),
            self.cell("broker_rss_mb", 0),
            self.cell("broker_rss_peak_mb", 0),
            self.cell("broker_disk_bytes_per_token", 0),
            self.cell("broker_direct_disk_bytes_per_token", 0),
        );
        self.refresh_table(&mut out);
        self.purge_table(&mut out);
        self.rewrap_table(&mut out, "rewrap", "the embedded store");
        let _ = writeln!(out, "\nGoals (on the medians):");
        for goal in &self.goals {
            let verdict = match (goal.met(), goal.margin()) {
                (Some(true), Some(m)) => format!("met, {:.0}% inside", m * 100.0),
                (Some(false), Some(m)) => format!("MISSED by {:.0}%", -m * 100.0),
                (Some(true), None) => "met".to_owned(),
                (Some(false), None) => "MISSED".to_owned(),
                _ => "not measured".to_owned(),
            };
            let value = self
                .median(goal.figure)
                .map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"));
            let _ = writeln!(out, "  {:<66} {:>10}  {verdict}", goal.text, value);
        }
        for note in &self.notes {
            let _ = writeln!(out, "\nNote: {note}");
        }
        out
    }
}

impl Report {
    /// The `--store-url` figures: each engine's rate and CPU per message.
    fn shared_table(&self, out: &mut String) {
        let Some((_, workers, concurrencies)) = &self.shared else {
            return;
        };
        let mut engines = vec!["embedded".to_owned()];
        engines.extend(workers.iter().map(|n| format!("pg{n}")));
        let header = |out: &mut String, first: &str| {
            let _ = writeln!(
                out,
                "  {:<9} {:>22} {:>16} {:>16} {:>16} {:>16} {:>16} {:>16} {:>12}",
                first,
                "msg/s",
                "worker us/msg",
                "pg us/msg",
                "pg db us/msg",
                "broker us/msg",
                "bench us/msg",
                "p99 ms",
                "busy cores",
            );
        };
        let row = |out: &mut String, label: &str, prefix: &str| {
            let _ = writeln!(
                out,
                "  {:<9} {:>22} {:>16} {:>16} {:>16} {:>16} {:>16} {:>16} {:>12}",
                label,
                self.cell(&format!("{prefix}_msgs_per_s"), 0),
                self.cell(&format!("{prefix}_worker_cpu_us_per_msg"), 0),
                self.cell(&format!("{prefix}_pg_cpu_us_per_msg"), 0),
                self.cell(&format!("{prefix}_pgdb_cpu_us_per_msg"), 0),
                self.cell(&format!("{prefix}_broker_cpu_us_per_msg"), 0),
                self.cell(&format!("{prefix}_bench_cpu_us_per_msg"), 0),
                self.cell(&format!("{prefix}_p99_ms"), 2),
                self.cell(&format!("{prefix}_machine_busy_cores"), 2),
            );
        };
        let measured = |prefix: &str| self.figures.keys().any(|name| name.starts_with(prefix));
        if measured("shared_ingest_") {
            let _ = writeln!(
                out,
                "\nIngest on worker children: {} integration.connected messages drained from a backlog, prefetch {}, each over an empty store",
                self.messages, self.prefetch
            );
            header(out, "engine");
            row(out, "ceiling", "shared_ingest_ceiling");
            for engine in &engines {
                row(out, engine, &format!("shared_ingest_{engine}"));
            }
            for engine in engines.iter().filter(|e| e.starts_with("pg")) {
                let _ = writeln!(
                    out,
                    "  {engine}: per message over the whole drain: {} commits, {} rollbacks, {} rows written",
                    self.cell(&format!("shared_ingest_{engine}_commits_per_msg"), 2),
                    self.cell(&format!("shared_ingest_{engine}_rollbacks_per_msg"), 2),
                    self.cell(&format!("shared_ingest_{engine}_rows_written_per_msg"), 1),
                );
            }
        }
        for c in concurrencies.iter().filter(|_| measured("shared_resolve_")) {
            let _ = writeln!(
                out,
                "\nResolve on worker children, closed loop at concurrency {c}, {:.0} s, {} tokens",
                self.resolve_secs, self.small_tokens
            );
            header(out, "engine");
            for engine in &engines {
                row(out, engine, &format!("shared_resolve_{engine}_c{c}"));
            }
        }
        if self.figures.contains_key("takeover_max_ms") {
            let _ = writeln!(
                out,
                "\nTakeover: 2 workers on PostgreSQL, resolve at concurrency {HEADLINE_CONCURRENCY}, one killed with SIGKILL: longest resolve {} ms (p99 {} ms, {} msg/s); both alive, just before: longest {} ms (p99 {} ms)",
                self.cell("takeover_max_ms", 0),
                self.cell("takeover_p99_ms", 2),
                self.cell("takeover_msgs_per_s", 0),
                self.cell("takeover_before_max_ms", 0),
                self.cell("takeover_before_p99_ms", 2),
            );
        }
        if measured("pg_rewrap_") {
            self.rewrap_table(out, "pg_rewrap", "PostgreSQL, one worker child");
        }
        if self.figures.contains_key("pg_bytes_per_token") {
            let _ = writeln!(
                out,
                "\nFootprint in PostgreSQL: {} tokens loaded directly at {} tokens/s: {} bytes per token (tables with their indexes and TOAST)",
                self.cell("pg_footprint_tokens", 0),
                self.cell("pg_load_tokens_per_s", 0),
                self.cell("pg_bytes_per_token", 0),
            );
        }
        let _ = writeln!(
            out,
            "\nCPU per message between the window's ends: worker children, PostgreSQL (postmaster and all its processes; \"pg db\": the measurement's own backends), the broker (beam.smp), the bench process; busy cores: the whole machine's, everyone's"
        );
    }

    fn purge_table(&self, out: &mut String) {
        let (tokens, revoked, within) = self.purge;
        let _ = writeln!(
            out,
            "\nPurge (physical deletion): worker child over {tokens} tokens, --purge-within-secs {within}, {revoked} revocations per purge"
        );
        let _ = writeln!(
            out,
            "  gone from every file {} ms after the first revocation (seen in worker.stats; the worker's own lag {} ms); the purge took {} ms, CPU {} s; on disk {} MB before, {} MB after",
            self.cell("purge_gone_ms", 0),
            self.cell("purge_lag_ms", 0),
            self.cell("purge_took_ms", 0),
            self.cell("purge_cpu_s", 2),
            self.cell("purge_disk_mb_before", 1),
            self.cell("purge_disk_mb_after", 1),
        );
        let _ = writeln!(
            out,
            "  resolve at concurrency {HEADLINE_CONCURRENCY}: without a purge p99 {} ms, max {} ms, {} msg/s; over a purge p99 {} ms, max {} ms, {} msg/s",
            self.cell("purge_resolve_idle_p99_ms", 2),
            self.cell("purge_resolve_idle_max_ms", 1),
            self.cell("purge_resolve_idle_msgs_per_s", 0),
            self.cell("purge_resolve_during_p99_ms", 2),
            self.cell("purge_resolve_during_max_ms", 1),
            self.cell("purge_resolve_during_msgs_per_s", 0),
        );
    }

    /// The rewrap figures `<prefix>_*` (key rotation) on `engine`.
    fn rewrap_table(&self, out: &mut String, prefix: &str, engine: &str) {
        let (tokens, per_sec) = self.rewrap;
        let cell = |name: &str, decimals| self.cell(&format!("{prefix}_{name}"), decimals);
        let _ = writeln!(
            out,
            "\nKey rotation (rewrap) on {engine}: {tokens} tokens, every data key wrapped again under a new key"
        );
        let _ = writeln!(
            out,
            "  in process, unbounded (pages of {}, each flushed): {} data keys/s; adopting the new key ring {} ms",
            super::rewrap::PAGE,
            cell("per_s", 0),
            cell("adopt_ms", 1),
        );
        let _ = writeln!(
            out,
            "  worker child at --rewrap-per-sec {per_sec} (the bound alone: {:.1} s): SIGHUP to every data key under the new key in worker.stats {} s (idle), {} s (under resolve); CPU {} s (idle pass)",
            tokens as f64 / f64::from(per_sec.max(1)),
            cell("pass_s", 1),
            cell("pass_during_s", 1),
            cell("cpu_s", 2),
        );
        let _ = writeln!(
            out,
            "  resolve at concurrency {HEADLINE_CONCURRENCY}: without a pass p50 {} ms, p99 {} ms, max {} ms, {} msg/s; during a pass p50 {} ms, p99 {} ms, max {} ms, {} msg/s; failed resolves {} (must be 0)",
            cell("resolve_idle_p50_ms", 2),
            cell("resolve_idle_p99_ms", 2),
            cell("resolve_idle_max_ms", 1),
            cell("resolve_idle_msgs_per_s", 0),
            cell("resolve_during_p50_ms", 2),
            cell("resolve_during_p99_ms", 2),
            cell("resolve_during_max_ms", 1),
            cell("resolve_during_msgs_per_s", 0),
            cell("resolve_failed", 0),
        );
    }

    fn refresh_table(&self, out: &mut String) {
        let r = &self.refresh;
        let _ = writeln!(
            out,
            "\nRefresh engine: worker child against the local token server ({:.0} ms per answer)",
            r.provider_latency_ms
        );
        let _ = writeln!(
            out,
            "  {:<26} {:>22} {:>22} {:>22}",
            "backlog", "refreshes/s", "CPU us/refresh", "peak in flight"
        );
        for c in &r.concurrencies {
            let _ = writeln!(
                out,
                "  {:<26} {:>22} {:>22} {:>22}",
                format!("{} due, concurrency {c}", r.tokens),
                self.cell(&format!("refresh_c{c}_per_s"), 0),
                self.cell(&format!("refresh_c{c}_cpu_us"), 0),
                self.cell(&format!("refresh_c{c}_peak_in_flight"), 0),
            );
        }
        let _ = writeln!(
            out,
            "  lapses at {} tokens, hour compressed {}x, concurrency {}: {} (late events {}, not refreshed in the store {}); needed {} refreshes/s",
            r.lapse_tokens,
            r.compression,
            r.lapse_concurrency,
            self.cell("refresh_lapses", 0),
            self.cell("refresh_lapse_late", 0),
            self.cell("refresh_lapse_unrefreshed", 0),
            self.cell("refresh_lapse_needed_per_s", 0),
        );
        let _ = writeln!(
            out,
            "  margin before expiresAt: min {} ms, median {} ms; CPU {} us/refresh; peak in flight {}",
            self.cell("refresh_lapse_min_margin_ms", 0),
            self.cell("refresh_lapse_p50_margin_ms", 0),
            self.cell("refresh_lapse_cpu_us", 0),
            self.cell("refresh_lapse_peak_in_flight", 0),
        );
        let _ = writeln!(
            out,
            "  refresh-token reuses {}; errors {}",
            self.cell("refresh_reuses", 0),
            self.cell("refresh_errors", 0),
        );
    }
}

fn number(value: f64) -> Value {
    serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number)
}
