//! Results: a minimal JSON value (no serde needed for a flat report) and the human-readable
//! lines shared by every workload (CPU and memory use, who was the bottleneck, errors).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::stats::{LatencySummary, Usage};

/// A JSON value.
#[derive(Clone, Debug, PartialEq)]
pub enum J {
    Null,
    Bool(bool),
    Int(i64),
    Num(f64),
    Str(String),
    Obj(Vec<(String, J)>),
}

impl J {
    pub fn obj<K: Into<String>>(fields: impl IntoIterator<Item = (K, J)>) -> J {
        J::Obj(fields.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    pub fn opt_num(v: Option<f64>) -> J {
        v.map_or(J::Null, J::Num)
    }

    pub fn write(&self, out: &mut String) {
        match self {
            J::Null => out.push_str("null"),
            J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            J::Int(i) => {
                let _ = write!(out, "{i}");
            }
            J::Num(x) if x.is_finite() => {
                // Enough digits for any measurement here, no float noise.
                let s = format!("{x:.6}");
                let s = s.trim_end_matches('0').trim_end_matches('.');
                out.push_str(if s == "-0" { "0" } else { s });
            }
            J::Num(_) => out.push_str("null"),
            J::Str(s) => write_str(s, out),
            J::Obj(fields) => {
                out.push('{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_str(k, out);
                    out.push(':');
                    v.write(out);
                }
                out.push('}');
            }
        }
    }

    pub fn to_json(&self) -> String {
        let mut s = String::new();
        self.write(&mut s);
        s
    }
}

fn write_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Error counts by kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Errors(pub BTreeMap<String, u64>);

impl Errors {
    pub fn add(&mut self, kind: impl Into<String>) {
        *self.0.entry(kind.into()).or_default() += 1;
    }

    pub fn add_n(&mut self, kind: impl Into<String>, n: u64) {
        if n > 0 {
            *self.0.entry(kind.into()).or_default() += n;
        }
    }

    pub fn merge(&mut self, other: &Errors) {
        for (k, v) in &other.0 {
            *self.0.entry(k.clone()).or_default() += v;
        }
    }

    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    pub fn json(&self) -> J {
        J::Obj(
            self.0
                .iter()
                .map(|(k, v)| (k.clone(), J::Int(*v as i64)))
                .collect(),
        )
    }

    pub fn human(&self) -> String {
        if self.0.is_empty() {
            return "errors: none".into();
        }
        let parts: Vec<String> = self.0.iter().map(|(k, v)| format!("{k} ×{v}")).collect();
        format!("errors: {} ({})", self.total(), parts.join(", "))
    }
}

pub fn latency_json(s: &LatencySummary) -> J {
    J::obj([
        ("count", J::Int(s.count as i64)),
        ("p50_us", J::Num(s.p50_us)),
        ("p99_us", J::Num(s.p99_us)),
        ("p999_us", J::Num(s.p999_us)),
        ("max_us", J::Num(s.max_us)),
        ("mean_us", J::Num(s.mean_us)),
    ])
}

pub fn latency_human(what: &str, s: &LatencySummary) -> String {
    let f = |us: f64| {
        if us >= 10_000.0 {
            format!("{:.1} ms", us / 1000.0)
        } else {
            format!("{us:.0} µs")
        }
    };
    format!(
        "{what}: p50 {}  p99 {}  p99.9 {}  max {}  (n={})",
        f(s.p50_us),
        f(s.p99_us),
        f(s.p999_us),
        f(s.max_us),
        s.count
    )
}

pub fn usage_json(u: &Usage) -> J {
    J::obj([
        ("wall_s", J::Num(u.wall_secs)),
        ("server_cpu_s", J::opt_num(u.server_cpu_secs)),
        ("server_cores", J::opt_num(u.server_cores())),
        (
            "server_rss_start_kib",
            u.server_rss_start_kib.map_or(J::Null, |v| J::Int(v as i64)),
        ),
        (
            "server_rss_end_kib",
            u.server_rss_end_kib.map_or(J::Null, |v| J::Int(v as i64)),
        ),
        ("generator_cpu_s", J::opt_num(u.generator_cpu_secs)),
        ("generator_cores", J::opt_num(u.generator_cores())),
        ("machine_busy", J::opt_num(u.machine_busy)),
        ("loadavg_1m", J::opt_num(u.loadavg)),
    ])
}

/// Human lines about CPU and memory, with a verdict on what limited the run.
pub fn usage_human(u: &Usage, cores: usize) -> Vec<String> {
    let mut out = Vec::new();
    if let (Some(cpu), Some(c)) = (u.server_cpu_secs, u.server_cores()) {
        let mut l = format!("server CPU {cpu:.2} s ({:.0}% of one core)", c * 100.0);
        if let (Some(a), Some(b)) = (u.server_rss_start_kib, u.server_rss_end_kib) {
            let _ = write!(
                l,
                ", RSS {:.1} → {:.1} MiB",
                a as f64 / 1024.0,
                b as f64 / 1024.0
            );
        }
        out.push(l);
    } else {
        out.push("server CPU/RSS: not measured (give --server-pid)".into());
    }
    if let Some(g) = u.generator_cores() {
        let mut l = format!("generator CPU {:.0}% of one core", g * 100.0);
        if let Some(m) = u.machine_busy {
            let _ = write!(l, "; machine {:.0}% busy on {cores} cores", m * 100.0);
        }
        if let Some(la) = u.loadavg {
            let _ = write!(l, ", load average {la:.1}");
        }
        out.push(l);
        if u.machine_busy.is_some_and(|m| m >= 0.9) {
            let server = u.server_cores().unwrap_or(0.0);
            out.push(format!(
                "note: the machine's CPU was saturated; server and generator share it \
                 (server {:.0}%, generator {:.0}% of one core): the result is a floor, not the \
                 server's ceiling",
                server * 100.0,
                g * 100.0
            ));
        }
    }
    out
}

/// One workload's result: JSON fields and human lines.
pub struct Report {
    pub fields: Vec<(String, J)>,
    pub lines: Vec<String>,
    /// Errors counted (the run is a failure for `--strict` if this is not zero).
    pub error_count: u64,
}

impl Report {
    pub fn new(workload: &str, label: &str) -> Report {
        Report {
            fields: vec![
                ("workload".into(), J::Str(workload.into())),
                ("label".into(), J::Str(label.into())),
            ],
            lines: vec![format!("== {workload} ({label}) ==")],
            error_count: 0,
        }
    }

    /// Record the run's errors: a human line, a JSON field, and the count.
    pub fn errors(&mut self, e: &Errors) {
        self.line(e.human());
        self.field("errors", e.json());
        self.error_count += e.total();
    }

    pub fn field(&mut self, k: &str, v: J) {
        self.fields.push((k.into(), v));
    }

    pub fn line(&mut self, l: impl Into<String>) {
        self.lines.push(l.into());
    }

    pub fn json(&self) -> String {
        J::Obj(self.fields.clone()).to_json()
    }

    pub fn human(&self) -> String {
        self.lines.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_encoding() {
        let j = J::obj([
            ("a", J::Int(-3)),
            ("b", J::Num(1.5)),
            ("c", J::Num(2.0)),
            ("d", J::Str("q\"\\\n\u{1}é".into())),
            ("e", J::Null),
            ("f", J::Num(f64::NAN)),
            ("g", J::obj([("x", J::Bool(true))])),
            ("h", J::Num(0.000_000_1)),
        ]);
        assert_eq!(
            j.to_json(),
            r#"{"a":-3,"b":1.5,"c":2,"d":"q\"\\\n\u0001é","e":null,"f":null,"g":{"x":true},"h":0}"#
        );
    }

    #[test]
    fn errors_count_by_kind() {
        let mut e = Errors::default();
        assert_eq!(e.human(), "errors: none");
        e.add("timeout bind");
        e.add("timeout bind");
        let mut other = Errors::default();
        other.add("stream-error conflict");
        other.add_n("missing messages", 0);
        e.merge(&other);
        assert_eq!(e.total(), 3);
        assert_eq!(
            e.human(),
            "errors: 3 (stream-error conflict ×1, timeout bind ×2)"
        );
        assert_eq!(
            e.json().to_json(),
            r#"{"stream-error conflict":1,"timeout bind":2}"#
        );
    }

    #[test]
    fn saturation_is_called_out() {
        let u = Usage {
            wall_secs: 10.0,
            server_cpu_secs: Some(9.0),
            server_rss_start_kib: Some(1024),
            server_rss_end_kib: Some(2048),
            generator_cpu_secs: Some(10.5),
            machine_busy: Some(0.98),
            loadavg: Some(6.5),
        };
        let l = usage_human(&u, 2);
        assert_eq!(
            l[0],
            "server CPU 9.00 s (90% of one core), RSS 1.0 → 2.0 MiB"
        );
        assert_eq!(
            l[1],
            "generator CPU 105% of one core; machine 98% busy on 2 cores, load average 6.5"
        );
        assert!(l[2].contains("saturated"));
        let idle = Usage {
            machine_busy: Some(0.3),
            ..u
        };
        assert_eq!(usage_human(&idle, 2).len(), 2);
    }
}
