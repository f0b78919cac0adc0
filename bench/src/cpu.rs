//! Where the cores went during a measured run: CPU time of this process (servers and load
//! generator) and of the local PostgreSQL server, per operation, from `/proc` (Linux).
//!
//! PostgreSQL's share is the CPU time of every live process named `postgres` plus what
//! they have reaped (the postmaster's `cutime`/`cstime` hold the backends that exited), so
//! backends opened and closed during the run are counted. A server on another machine is
//! not seen: its share then reads as unknown.

use std::time::Instant;

use anyhow::Context;

/// Clock ticks per second of `/proc/*/stat` times (`USER_HZ`, fixed by the kernel ABI).
const TICKS_PER_SEC: f64 = 100.0;

/// CPU seconds used so far, taken at one instant.
#[derive(Clone, Copy)]
pub(crate) struct Sample {
    at: Instant,
    own: f64,
    database: Option<f64>,
}

impl Sample {
    /// Now.
    pub(crate) fn take() -> anyhow::Result<Self> {
        let stat = std::fs::read_to_string("/proc/self/stat").context("/proc/self/stat (Linux)")?;
        let own = times(&stat)
            .context("/proc/self/stat: unexpected format")?
            .own;
        Ok(Self {
            at: Instant::now(),
            own,
            database: database_seconds(),
        })
    }

    /// What was used from `self` until now, for `ops` operations.
    pub(crate) fn until_now(&self, ops: usize) -> anyhow::Result<Use> {
        let end = Self::take()?;
        let ops = ops.max(1) as f64;
        let wall = end
            .at
            .duration_since(self.at)
            .as_secs_f64()
            .max(f64::EPSILON);
        let own = end.own - self.own;
        let database = end.database.zip(self.database).map(|(e, s)| e - s);
        Ok(Use {
            own_us: own * 1e6 / ops,
            own_cores: own / wall,
            database_us: database.map(|d| d * 1e6 / ops),
            database_cores: database.map(|d| d / wall),
        })
    }
}

/// CPU per operation over a run, and the cores it kept busy on average.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Use {
    /// Microseconds of this process per operation.
    pub(crate) own_us: f64,
    /// Cores this process kept busy.
    pub(crate) own_cores: f64,
    /// Microseconds of PostgreSQL per operation, when it runs here.
    pub(crate) database_us: Option<f64>,
    /// Cores PostgreSQL kept busy.
    pub(crate) database_cores: Option<f64>,
}

impl Use {
    /// `"CPU per write: PostgreSQL 150 us + this process 90 us = 240 us (1.20 + 0.72 cores busy)"`.
    pub(crate) fn describe(&self, op: &str) -> String {
        match (self.database_us, self.database_cores) {
            (Some(db), Some(db_cores)) => format!(
                "CPU per {op}: PostgreSQL {db:.0} us + this process {:.0} us = {:.0} us \
                 ({db_cores:.2} + {:.2} cores busy)",
                self.own_us,
                db + self.own_us,
                self.own_cores
            ),
            _ => format!(
                "CPU per {op}: this process {:.0} us ({:.2} cores busy); PostgreSQL not on this machine",
                self.own_us, self.own_cores
            ),
        }
    }
}

/// A process's own CPU seconds and those of the children it reaped.
struct Times {
    own: f64,
    reaped: f64,
}

/// Fields of `/proc/<pid>/stat` after the command name (which may hold spaces).
fn times(stat: &str) -> Option<Times> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field 3 (state) is fields[0]: utime 14, stime 15, cutime 16, cstime 17.
    let tick =
        |i: usize| -> Option<f64> { Some(fields.get(i)?.parse::<f64>().ok()? / TICKS_PER_SEC) };
    Some(Times {
        own: tick(11)? + tick(12)?,
        reaped: tick(13)? + tick(14)?,
    })
}

/// CPU seconds of the `postgres` processes of this machine, live and reaped; `None` when
/// there are none.
fn database_seconds() -> Option<f64> {
    let mut total = None;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        // Not a process, or one that ended since the listing.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if !stat.contains("(postgres)") {
            continue;
        }
        if let Some(t) = times(&stat) {
            *total.get_or_insert(0.0) += t.own + t.reaped;
        }
    }
    total
}
