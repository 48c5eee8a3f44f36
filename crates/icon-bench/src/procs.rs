//! CPU time and memory of ICON's processes, PostgreSQL and RabbitMQ, read from `/proc`.
//!
//! CPU is `utime + stime` of `/proc/PID/stat`, sampled when the clock starts and when the run
//! ends; a process that appeared in between counts whole (it started inside the window), one that
//! exited in between is lost (its time is not in `/proc` any more). Memory is read from
//! `/proc/PID/status` and summed per group: peak RSS is `VmHWM`, the peak over the process's
//! *lifetime*, not just this run; current RSS is `VmRSS`, what it holds at the reading, which is
//! what tells whether memory grows between two readings (a peak never comes down). PostgreSQL's
//! shared buffers are counted once per backend, so its sums overstate, and its group changes
//! size as backends come and go.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::time::Duration;

use serde::Serialize;

/// Which group a process belongs to, by its `comm` (cut to 15 bytes by the kernel).
pub fn group_of(comm: &str) -> Option<&'static str> {
    match comm {
        "icon-gateway" => Some("gateway"),
        c if c.starts_with("icon-checkout-w") => Some("worker"),
        "icon-notifier" => Some("notifier"),
        c if c.starts_with("icon-retailer-s") => Some("retailer-sim"),
        c if c.starts_with("postgres") => Some("postgres"),
        "beam.smp" => Some("rabbitmq"),
        _ => None,
    }
}

/// Order of the groups in the report.
const GROUPS: [&str; 7] = [
    "gateway",
    "worker",
    "notifier",
    "postgres",
    "rabbitmq",
    "retailer-sim",
    "icon-bench",
];

/// `(group, pid)` of every process to measure: the `--pids` list, or every process whose
/// name is known, plus this tool itself.
pub fn discover(explicit: Option<&[(String, u32)]>) -> Vec<(String, u32)> {
    let mut out: Vec<(String, u32)> = match explicit {
        Some(list) => list.to_vec(),
        None => fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter_map(|pid| {
                let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
                Some((group_of(comm.trim_end())?.to_string(), pid))
            })
            .collect(),
    };
    out.push(("icon-bench".to_string(), std::process::id()));
    out
}

/// `utime + stime` in clock ticks from the text of `/proc/PID/stat`. The name field may hold
/// spaces and parentheses, so fields are counted after the last `)`.
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name come field 3 (state) onwards; utime is field 14, stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// `VmHWM` (lifetime peak RSS) in kB from the text of `/proc/PID/status`.
pub fn parse_hwm_kb(status: &str) -> Option<u64> {
    status_kb(status, "VmHWM:")
}

/// `VmRSS` (current RSS) in kB from the text of `/proc/PID/status`.
pub fn parse_rss_kb(status: &str) -> Option<u64> {
    status_kb(status, "VmRSS:")
}

fn status_kb(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `(VmHWM, VmRSS)` of one process in kB; 0 for a process gone or a kernel thread.
fn memory_kb(pid: u32) -> (u64, u64) {
    match fs::read_to_string(format!("/proc/{pid}/status")) {
        Ok(s) => (parse_hwm_kb(&s).unwrap_or(0), parse_rss_kb(&s).unwrap_or(0)),
        Err(_) => (0, 0),
    }
}

/// CPU ticks of each process measured at one instant.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    ticks: HashMap<u32, (String, u64)>,
}

pub fn sample(procs: &[(String, u32)]) -> Sample {
    let ticks = procs
        .iter()
        .filter_map(|(group, pid)| {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            Some((*pid, (group.clone(), parse_stat_ticks(&stat)?)))
        })
        .collect();
    Sample { ticks }
}

/// Clock ticks per second. `sysconf(_SC_CLK_TCK)` without libc: ask `getconf` once; it is
/// 100 on every Linux we know of, which is the fallback.
pub fn clock_ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupUsage {
    pub group: String,
    pub processes: usize,
    pub cpu_ms: f64,
    /// CPU milliseconds per checkout called back in the window.
    pub cpu_ms_per_checkout: Option<f64>,
    /// Sum of the processes' lifetime peak RSS.
    pub peak_rss_mb: f64,
    /// Sum of the processes' current RSS at the end of the window.
    pub rss_mb: f64,
}

/// One group's current RSS at one reading.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupRss {
    pub group: String,
    pub processes: usize,
    pub rss_mb: f64,
}

/// Current RSS per group of `procs`, now, in report order. Processes gone since they were
/// found are left out.
pub fn rss_now(procs: &[(String, u32)]) -> Vec<GroupRss> {
    let mut groups: BTreeMap<String, (usize, u64)> = BTreeMap::new();
    for (group, pid) in procs {
        if let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) {
            let g = groups.entry(group.clone()).or_default();
            g.0 += 1;
            g.1 += parse_rss_kb(&status).unwrap_or(0);
        }
    }
    let mut out: Vec<GroupRss> = groups
        .into_iter()
        .map(|(group, (processes, kb))| GroupRss {
            group,
            processes,
            rss_mb: kb as f64 / 1024.0,
        })
        .collect();
    out.sort_by_key(|g| order(&g.group));
    out
}

/// Where `group` comes in the report.
pub fn order(group: &str) -> usize {
    GROUPS
        .iter()
        .position(|n| *n == group)
        .unwrap_or(GROUPS.len())
}

/// Per-group CPU between `start` and `end`, divided by `checkouts`; peak and current RSS read
/// now.
pub fn usage(start: &Sample, end: &Sample, checkouts: usize, ticks_per_s: u64) -> Vec<GroupUsage> {
    let mut groups: BTreeMap<String, (usize, u64, u64, u64)> = BTreeMap::new();
    for (pid, (group, t_end)) in &end.ticks {
        let t_start = start.ticks.get(pid).map_or(0, |(_, t)| *t);
        let (hwm, rss) = memory_kb(*pid);
        let g = groups.entry(group.clone()).or_default();
        g.0 += 1;
        g.1 += t_end.saturating_sub(t_start);
        g.2 += hwm;
        g.3 += rss;
    }
    let mut out: Vec<GroupUsage> = groups
        .into_iter()
        .map(|(group, (processes, ticks, hwm_kb, rss_kb))| {
            let cpu = Duration::from_secs_f64(ticks as f64 / ticks_per_s as f64);
            let cpu_ms = cpu.as_secs_f64() * 1000.0;
            GroupUsage {
                group,
                processes,
                cpu_ms,
                cpu_ms_per_checkout: (checkouts > 0).then(|| cpu_ms / checkouts as f64),
                peak_rss_mb: hwm_kb as f64 / 1024.0,
                rss_mb: rss_kb as f64 / 1024.0,
            }
        })
        .collect();
    out.sort_by_key(|g| order(&g.group));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_ticks_survive_spaces_and_parentheses_in_the_name() {
        let stat = "42 (icon (x) y) S 1 42 42 0 -1 4194560 100 0 0 0 250 31 0 0 20 0 9 0 5 0 0";
        assert_eq!(parse_stat_ticks(stat), Some(281));
        assert_eq!(parse_stat_ticks("garbage"), None);
    }

    #[test]
    fn hwm_is_read_in_kb() {
        let status = "Name:\tpostgres\nVmPeak:\t  9000 kB\nVmHWM:\t   12345 kB\nVmRSS:\t 100 kB\n";
        assert_eq!(parse_hwm_kb(status), Some(12345));
    }

    #[test]
    fn current_rss_is_read_apart_from_the_peak() {
        let status = "Name:\tpostgres\nVmHWM:\t   12345 kB\nVmRSS:\t 100 kB\n";
        assert_eq!(parse_rss_kb(status), Some(100));
        assert_eq!(parse_rss_kb("Name:\tkthreadd\n"), None);
    }

    #[test]
    fn this_process_has_a_current_rss_in_its_group() {
        let me = [("icon-bench".to_string(), std::process::id())];
        let rss = rss_now(&me);
        assert_eq!(rss.len(), 1);
        assert_eq!((rss[0].group.as_str(), rss[0].processes), ("icon-bench", 1));
        assert!(rss[0].rss_mb > 0.0);
    }

    #[test]
    fn names_map_to_groups_with_the_kernel_s_15_byte_cut() {
        assert_eq!(group_of("icon-checkout-w"), Some("worker"));
        assert_eq!(group_of("icon-gateway"), Some("gateway"));
        assert_eq!(group_of("postgres"), Some("postgres"));
        assert_eq!(group_of("beam.smp"), Some("rabbitmq"));
        assert_eq!(group_of("bash"), None);
    }
}
