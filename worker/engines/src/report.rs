//! The Markdown table of the figures, one row per engine.

use crate::EngineFigures;

const MIB: f64 = 1024.0 * 1024.0;

/// The table BENCHMARKS.md quotes.
pub(crate) fn table(figures: &[EngineFigures]) -> String {
    let mut out = String::from(
        "| engine | load tok/s | B/token allocated after load (apparent) | after 20% rotated | after 10% revoked | reopened | RSS after load MiB (peak) | read p50 / p99 µs | rotate tok/s | open ms (RSS MiB) |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for f in figures {
        let (l, o) = (&f.load, &f.open);
        out.push_str(&format!(
            "| {} | {:.0} | {:.0} ({:.0}) | {:.0} | {:.0} | {:.0} | {:.0} ({:.0}) | {:.1} / {:.1} | {:.0} | {:.0} ({:.0}) |\n",
            f.engine.name(),
            l.load_tokens_per_s,
            l.alloc_per_token_load,
            l.disk_per_token_load,
            l.disk_per_token_rotated,
            l.disk_per_token_revoked,
            o.disk_per_token_reopened,
            l.rss_after_load as f64 / MIB,
            l.rss_peak as f64 / MIB,
            l.read_p50_us,
            l.read_p99_us,
            l.rotate_tokens_per_s,
            o.open_ms,
            o.rss_after_open as f64 / MIB,
        ));
    }
    if let Some(f) = figures.first() {
        out.push_str(&format!(
            "\n{} tokens, {:.0} logical bytes (keys + values) per token.\n",
            f.load.tokens, f.load.logical_per_token
        ));
    }
    out
}
