//! The statistics and the control socket: `--stats`, `--dump`, `--watch`
//! answers, `--metrics-file` and the SIGUSR1 counters lines.
#![forbid(unsafe_code)]

use std::fmt;

use crate::control::{Answer, Request, Snapshot, Stats, StatsFormat};
use crate::counters::Sample;
use crate::info;
use crate::log::{Level, Limit};
use crate::sys::{monotonic_ms, IoErr};

use super::{realtime_s, Daemon, LOG_LIMIT_MS, METRICS_EVERY_MS, VERSION};

impl Daemon {
    /// Answers control socket client `i` (`hangup`: see [`Server::serve`]).
    pub(super) fn serve(&mut self, i: usize, hangup: bool) {
        let now = monotonic_ms();
        let stats = self.stats(now);
        let snapshot = Snapshot {
            map: self.core.map(),
            now_ms: now,
            time_s: u64::from(realtime_s()),
            pid: std::process::id(),
            version: VERSION,
            stats: &stats,
        };
        self.io.control.serve(i, &snapshot, &self.epoll, hangup);
    }

    /// Rewrites `--metrics-file`.
    pub(super) fn write_metrics(&mut self, now_ms: u64) {
        let stats = self.stats(now_ms);
        let Some(m) = &mut self.metrics else {
            return;
        };
        m.due_ms = now_ms + METRICS_EVERY_MS;
        let snapshot = Snapshot {
            map: self.core.map(),
            now_ms,
            time_s: u64::from(realtime_s()),
            pid: std::process::id(),
            version: VERSION,
            stats: &stats,
        };
        let chunk = &mut m.chunk;
        let written = m.file.write_with(|w| {
            let mut answer = Answer::new(Request::Stats(StatsFormat::Prometheus));
            while !answer.done() {
                chunk.clear();
                answer.fill(&snapshot, chunk);
                w.write_str(std::str::from_utf8(chunk.bytes()).map_err(|_| fmt::Error)?)?;
            }
            Ok(())
        });
        if let Err(e) = written {
            crate::log::limited(
                Limit::Status,
                LOG_LIMIT_MS,
                Level::Error,
                format_args!("writing {}: {}", m.path.display(), IoErr(&e)),
            );
        }
    }

    /// Every statistic, for `--stats` and `--metrics-file` (named in
    /// `crate::counters::TABLE`).
    pub fn stats(&self, now_ms: u64) -> Stats {
        self.with_sample(now_ms, |s| s.stats())
    }

    /// Logs the counters (SIGUSR1, and at exit).
    pub(super) fn log_counters(&self) {
        // The uptime is not logged.
        self.with_sample(self.started_ms, |s| {
            info!("counters: {}", s.first_line());
            info!("counters: {}", s.second_line());
            for (name, reason, value) in s.reasons() {
                info!("{name} {reason}: {value}");
            }
        });
    }

    /// Calls `f` with what the statistics are read from.
    fn with_sample<T>(&self, now_ms: u64, f: impl FnOnce(&Sample<'_>) -> T) -> T {
        let c = self.core.counters();
        let map = self.core.map();
        let hook = self.io.hook.as_ref();
        f(&Sample {
            core: &c,
            map: &map.stats(),
            setpe: self.io.kernel.runs(),
            hook: hook.map(|h| h.program.runs).unwrap_or_default(),
            watchers_dropped: self.io.control.watchers_dropped,
            nodes: map.len() as u64,
            interval_ms: self.core.interval_ms(),
            uptime_s: now_ms.saturating_sub(self.started_ms) / 1000,
        })
    }
}
