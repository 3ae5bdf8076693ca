//! The worker process's CPU use and resident memory for `worker.stats`,
//! read from Linux `/proc` (absent elsewhere).

use std::time::Instant;

/// Linux reports process CPU time in clock ticks of `USER_HZ`, which the
/// kernel's ABI fixes at 100 for `/proc`.
pub const USER_HZ: f64 = 100.0;

/// The CPU time (in ticks) of a process from its `/proc/<pid>/stat`: utime
/// and stime, fields 14 and 15, counted after the command name's `)`.
pub fn cpu_ticks(stat: &str) -> Option<u64> {
    let rest = stat.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Resident memory in bytes from `/proc/self/status` (`VmRSS: N kB`).
fn rss_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Samples the process's CPU use between two readings.
#[derive(Debug, Default)]
pub struct Process {
    last: Option<(Instant, u64)>,
}

impl Process {
    /// CPU use since the last call, in percent of one core, and the
    /// resident memory now; `None` where `/proc` does not tell.
    pub fn sample(&mut self) -> (Option<f64>, Option<u64>) {
        let now = Instant::now();
        let ticks = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .as_deref()
            .and_then(cpu_ticks);
        let rss = std::fs::read_to_string("/proc/self/status")
            .ok()
            .as_deref()
            .and_then(rss_bytes);
        let cpu = match (self.last, ticks) {
            (Some((then, before)), Some(ticks)) => {
                let seconds = now.duration_since(then).as_secs_f64().max(0.001);
                Some(ticks.saturating_sub(before) as f64 / USER_HZ / seconds * 100.0)
            }
            _ => None,
        };
        self.last = ticks.map(|t| (now, t));
        (cpu, rss)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_fields_are_read_after_the_command_name() {
        let stat = "4242 (mmt worker) S 1 4242 4242 0 -1 4194560 500 0 0 0 250 50 0 0 20 0 9";
        assert_eq!(cpu_ticks(stat), Some(300));
        assert_eq!(rss_bytes("Name:\tx\nVmRSS:\t  2048 kB\n"), Some(2 << 20));
        assert_eq!(rss_bytes("Name:\tx\n"), None);
    }

    #[test]
    fn this_process_reports_memory_and_then_cpu() {
        let mut process = Process::default();
        let (cpu, rss) = process.sample();
        assert_eq!(cpu, None, "the first reading has no interval");
        assert!(rss.is_some_and(|r| r > 0));
        assert!(process.sample().0.is_some());
    }
}
