//! Measurement: latency histograms and percentiles, the fixed-rate pacer, and CPU/RSS samples
//! of the server process, the generator itself and the machine, read from `/proc`.

use std::time::Duration;

use hdrhistogram::Histogram;

/// Linux reports process times in USER_HZ ticks, 100 per second on every architecture
/// `/proc` exposes them to user space.
const TICKS_PER_SEC: f64 = 100.0;

/// Latencies in nanoseconds, 1 µs to 100 s at three significant digits.
pub struct Latency {
    h: Histogram<u64>,
}

/// Percentiles of a [`Latency`], in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LatencySummary {
    pub count: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
}

impl Default for Latency {
    fn default() -> Self {
        Latency::new()
    }
}

impl Latency {
    pub fn new() -> Self {
        // Bounds and precision are constants that hdrhistogram accepts.
        let h = Histogram::new_with_bounds(1_000, 100_000_000_000, 3).expect("valid bounds");
        Latency { h }
    }

    /// Record one latency; values outside the range are clamped into it.
    pub fn record_ns(&mut self, ns: u64) {
        self.h.saturating_record(ns.max(1_000));
    }

    pub fn merge(&mut self, other: &Latency) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.h.add(&other.h);
    }

    #[cfg(test)]
    pub fn count(&self) -> u64 {
        self.h.len()
    }

    pub fn summary(&self) -> LatencySummary {
        if self.h.is_empty() {
            return LatencySummary::default();
        }
        let us = |ns: u64| ns as f64 / 1_000.0;
        LatencySummary {
            count: self.h.len(),
            p50_us: us(self.h.value_at_quantile(0.50)),
            p99_us: us(self.h.value_at_quantile(0.99)),
            p999_us: us(self.h.value_at_quantile(0.999)),
            max_us: us(self.h.max()),
            mean_us: self.h.mean() / 1_000.0,
        }
    }
}

/// Open-loop pacing at a fixed rate: message `k` is due at `offset + k * interval`, whatever
/// happened before, so a stalled server does not lower the offered load (no coordinated
/// omission on the sending side).
#[derive(Clone, Debug)]
pub struct Pacer {
    interval_ns: u64,
    offset_ns: u64,
    sent: u64,
}

impl Pacer {
    /// `rate` messages per second, the first one due `offset` after the start.
    pub fn new(rate: f64, offset: Duration) -> Pacer {
        let interval_ns = if rate > 0.0 {
            (1e9 / rate).round().max(1.0) as u64
        } else {
            u64::MAX
        };
        Pacer {
            interval_ns,
            offset_ns: offset.as_nanos() as u64,
            sent: 0,
        }
    }

    /// When (nanoseconds since the start) the next message is due.
    pub fn next_due_ns(&self) -> u64 {
        self.offset_ns
            .saturating_add(self.sent.saturating_mul(self.interval_ns))
    }

    /// How many messages are due at `now_ns` (since the start) and not yet taken; marks them
    /// taken.
    pub fn take_due(&mut self, now_ns: u64) -> u64 {
        if now_ns < self.offset_ns {
            return 0;
        }
        let due_total = (now_ns - self.offset_ns) / self.interval_ns + 1;
        let n = due_total.saturating_sub(self.sent);
        self.sent += n;
        n
    }

    #[cfg(test)]
    pub fn sent(&self) -> u64 {
        self.sent
    }
}

/// A process's cumulative CPU time (user + system, all threads) from `/proc/PID/stat`.
/// The command name may contain spaces and parentheses, so fields are counted after the
/// last `)`.
pub fn parse_stat_cpu_secs(stat: &str) -> Option<f64> {
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    // After ")": state(3) ppid(4) ... utime(14) stime(15): indices 11 and 12 here.
    let mut f = rest.split_whitespace().skip(11);
    let utime: u64 = f.next()?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some((utime + stime) as f64 / TICKS_PER_SEC)
}

/// Resident set size in KiB (`VmRSS:`) from `/proc/PID/status`.
pub fn parse_status_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Machine-wide (busy, total) jiffies from the first line of `/proc/stat`.
pub fn parse_machine_jiffies(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().next()?;
    let mut f = line.split_whitespace();
    if f.next()? != "cpu" {
        return None;
    }
    let v: Vec<u64> = f.map(|x| x.parse().ok()).collect::<Option<_>>()?;
    if v.len() < 4 {
        return None;
    }
    let total: u64 = v.iter().take(8).sum();
    // idle (3) and iowait (4) are not busy.
    let idle = v[3] + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// One reading of a process's CPU time and memory.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcSample {
    pub cpu_secs: f64,
    pub rss_kib: u64,
}

/// Read `/proc/<pid>/{stat,status}` (`pid` may be `"self"`).
pub fn sample_process(pid: &str) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(ProcSample {
        cpu_secs: parse_stat_cpu_secs(&stat)?,
        rss_kib: parse_status_rss_kib(&status)?,
    })
}

/// The 1-minute load average from `/proc/loadavg` (other processes competing for the cores
/// show here).
pub fn parse_loadavg(s: &str) -> Option<f64> {
    s.split_whitespace().next()?.parse().ok()
}

/// The 1-minute load average now.
pub fn sample_loadavg() -> Option<f64> {
    parse_loadavg(&std::fs::read_to_string("/proc/loadavg").ok()?)
}

/// Machine-wide busy/total jiffies now.
pub fn sample_machine() -> Option<(u64, u64)> {
    parse_machine_jiffies(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// Everything sampled at the start and end of a measurement window.
#[derive(Clone, Copy, Debug, Default)]
pub struct Snapshot {
    pub server: Option<ProcSample>,
    pub generator: Option<ProcSample>,
    pub machine: Option<(u64, u64)>,
    pub loadavg: Option<f64>,
}

impl Snapshot {
    pub fn take(server_pid: Option<u32>) -> Snapshot {
        Snapshot {
            server: server_pid.and_then(|p| sample_process(&p.to_string())),
            generator: sample_process("self"),
            machine: sample_machine(),
            loadavg: sample_loadavg(),
        }
    }
}

/// The difference between two snapshots over `wall` seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Usage {
    pub wall_secs: f64,
    pub server_cpu_secs: Option<f64>,
    pub server_rss_start_kib: Option<u64>,
    pub server_rss_end_kib: Option<u64>,
    pub generator_cpu_secs: Option<f64>,
    /// Share of all cores busy on the machine (0..1).
    pub machine_busy: Option<f64>,
    /// 1-minute load average at the end.
    pub loadavg: Option<f64>,
}

impl Usage {
    pub fn between(a: &Snapshot, b: &Snapshot, wall_secs: f64) -> Usage {
        let cpu = |x: Option<ProcSample>, y: Option<ProcSample>| {
            Some((y?.cpu_secs - x?.cpu_secs).max(0.0))
        };
        let machine_busy = match (a.machine, b.machine) {
            (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => {
                Some((b1.saturating_sub(b0)) as f64 / (t1 - t0) as f64)
            }
            _ => None,
        };
        Usage {
            wall_secs,
            server_cpu_secs: cpu(a.server, b.server),
            server_rss_start_kib: a.server.map(|s| s.rss_kib),
            server_rss_end_kib: b.server.map(|s| s.rss_kib),
            generator_cpu_secs: cpu(a.generator, b.generator),
            machine_busy,
            loadavg: b.loadavg,
        }
    }

    /// Generator CPU as a share of one core (1.0 = one core fully busy).
    pub fn generator_cores(&self) -> Option<f64> {
        Some(self.generator_cpu_secs? / self.wall_secs.max(1e-9))
    }

    /// Server CPU as a share of one core.
    pub fn server_cores(&self) -> Option<f64> {
        Some(self.server_cpu_secs? / self.wall_secs.max(1e-9))
    }

    /// RSS growth in KiB (negative if the server shrank).
    pub fn rss_delta_kib(&self) -> Option<i64> {
        Some(self.server_rss_end_kib? as i64 - self.server_rss_start_kib? as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let mut h = Latency::new();
        for us in 1..=1000u64 {
            h.record_ns(us * 1_000);
        }
        let s = h.summary();
        assert_eq!(s.count, 1000);
        // Three significant digits: within 0.1 %.
        assert!((s.p50_us - 500.0).abs() <= 1.0, "{s:?}");
        assert!((s.p99_us - 990.0).abs() <= 1.0, "{s:?}");
        assert!((s.p999_us - 999.0).abs() <= 1.0, "{s:?}");
        assert!((s.max_us - 1000.0).abs() <= 1.0, "{s:?}");
        assert!((s.mean_us - 500.5).abs() <= 1.0, "{s:?}");

        let mut other = Latency::new();
        other.record_ns(50_000_000); // one 50 ms outlier
        h.merge(&other);
        let s = h.summary();
        assert_eq!(s.count, 1001);
        assert!((s.max_us - 50_000.0).abs() <= 50.0, "{s:?}");
        assert!(s.p99_us < 1001.0);

        // Out-of-range values are clamped, not lost.
        let mut h = Latency::new();
        h.record_ns(0);
        h.record_ns(u64::MAX);
        assert_eq!(h.count(), 2);
        assert_eq!(Latency::new().summary(), LatencySummary::default());
    }

    #[test]
    fn pacer_is_open_loop() {
        // 1000/s: one message per ms, first at 0.
        let mut p = Pacer::new(1000.0, Duration::ZERO);
        assert_eq!(p.next_due_ns(), 0);
        assert_eq!(p.take_due(0), 1);
        assert_eq!(p.take_due(500_000), 0);
        assert_eq!(p.next_due_ns(), 1_000_000);
        assert_eq!(p.take_due(1_000_000), 1);
        // A 10 ms stall: everything that fell due meanwhile is due now, nothing is skipped.
        assert_eq!(p.take_due(11_500_000), 10);
        assert_eq!(p.sent(), 12);
        assert_eq!(p.next_due_ns(), 12_000_000);

        // With an offset, nothing is due before it.
        let mut p = Pacer::new(100.0, Duration::from_millis(3));
        assert_eq!(p.take_due(2_999_999), 0);
        assert_eq!(p.take_due(3_000_000), 1);
        assert_eq!(p.take_due(1_003_000_000), 100);

        // Over one second at 2000/s exactly 2000 are due (plus the one at t=0).
        let mut p = Pacer::new(2000.0, Duration::ZERO);
        let mut n = 0;
        for ms in 0..1000u64 {
            n += p.take_due(ms * 1_000_000 + 999_999);
        }
        assert_eq!(n, 2000);
        assert_eq!(Pacer::new(0.0, Duration::ZERO).take_due(u64::MAX / 2), 1);
    }

    #[test]
    fn parses_proc_stat() {
        // A command name with spaces and a parenthesis, as beam.smp threads can have.
        let stat = "4242 (my (odd) proc) S 1 4242 4242 0 -1 4194560 1234 0 0 0 \
                    250 130 0 0 20 0 12 0 99999 1234567890 5000 18446744073709551615";
        assert_eq!(parse_stat_cpu_secs(stat), Some(3.8));
        assert_eq!(parse_stat_cpu_secs("garbage"), None);
        assert_eq!(parse_stat_cpu_secs("1 (x) S 1 2"), None);
    }

    #[test]
    fn parses_proc_status() {
        let status =
            "Name:\tprosody\nVmPeak:\t  200000 kB\nVmRSS:\t   51234 kB\nRssAnon:\t 40000 kB\n";
        assert_eq!(parse_status_rss_kib(status), Some(51234));
        assert_eq!(parse_status_rss_kib("Name:\tx\n"), None);
    }

    #[test]
    fn parses_machine_stat_and_usage() {
        let a = "cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 2 3 4\n";
        let b = "cpu  200 0 200 800 100 0 0 0 0 0\n";
        assert_eq!(parse_machine_jiffies(a), Some((200, 1000)));
        assert_eq!(parse_machine_jiffies(b), Some((400, 1300)));
        assert_eq!(parse_machine_jiffies("intr 1 2 3"), None);
        assert_eq!(parse_loadavg("7.06 5.65 4.28 3/612 30210\n"), Some(7.06));
        assert_eq!(parse_loadavg(""), None);
        let s0 = Snapshot {
            server: Some(ProcSample {
                cpu_secs: 1.0,
                rss_kib: 10_000,
            }),
            generator: Some(ProcSample {
                cpu_secs: 0.5,
                rss_kib: 1,
            }),
            machine: parse_machine_jiffies(a),
            loadavg: None,
        };
        let s1 = Snapshot {
            server: Some(ProcSample {
                cpu_secs: 3.0,
                rss_kib: 30_480,
            }),
            generator: Some(ProcSample {
                cpu_secs: 1.4,
                rss_kib: 1,
            }),
            machine: parse_machine_jiffies(b),
            loadavg: Some(6.5),
        };
        let u = Usage::between(&s0, &s1, 2.0);
        assert_eq!(u.server_cpu_secs, Some(2.0));
        assert_eq!(u.server_cores(), Some(1.0));
        assert!((u.generator_cores().unwrap() - 0.45).abs() < 1e-9);
        assert_eq!(u.rss_delta_kib(), Some(20_480));
        assert_eq!(u.loadavg, Some(6.5));
        assert!((u.machine_busy.unwrap() - 200.0 / 300.0).abs() < 1e-9);
        // No server pid: no server numbers, the rest still works.
        let u = Usage::between(&Snapshot::default(), &s1, 1.0);
        assert_eq!(u.server_cpu_secs, None);
        assert_eq!(u.rss_delta_kib(), None);
    }

    #[test]
    fn reads_own_process() {
        let s = sample_process("self").expect("/proc/self is readable on Linux");
        assert!(s.rss_kib > 0);
        assert!(s.cpu_secs >= 0.0);
    }
}
