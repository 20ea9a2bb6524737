//! What `copy` shows while it runs: a bar per step and one for the whole run on a terminal;
//! without one (CI, `nohup`, a log file), plain lines when a step starts or ends and every
//! [`PLAIN_EVERY`] meanwhile. Both say rows/s as a whole number, an ETA only for what is
//! running (a step that has not started is "waiting", not "ETA 0s"), and an overall ETA.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a plain line is printed when stderr is not a terminal.
pub const PLAIN_EVERY: Duration = Duration::from_secs(10);

/// How the run is shown: bars on a terminal, plain lines otherwise, or nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Bars,
    Lines,
    Hidden,
}

impl Mode {
    /// Bars when stderr is a terminal, plain lines when it is not; nothing when not wanted.
    pub fn detect(wanted: bool) -> Self {
        use std::io::IsTerminal as _;
        match (wanted, std::io::stderr().is_terminal()) {
            (false, _) => Mode::Hidden,
            (true, true) => Mode::Bars,
            (true, false) => Mode::Lines,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    Running { since: Instant, from: u64 },
    Done { seconds: u64 },
}

#[derive(Debug)]
struct Step {
    name: &'static str,
    bar: ProgressBar,
    state: State,
}

/// The progress of one copy run.
#[derive(Debug, Clone)]
pub struct Progress {
    mode: Mode,
    started: Instant,
    /// Rows already done when the run started (a resumed run).
    resumed_from: Arc<Mutex<u64>>,
    overall: ProgressBar,
    steps: Arc<Mutex<Vec<Step>>>,
    multi: Arc<MultiProgress>,
}

fn style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix:>22} [{bar:30}] {pos}/{len} rows {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
}

impl Progress {
    pub fn new(mode: Mode) -> Self {
        let multi = if mode == Mode::Bars {
            MultiProgress::new()
        } else {
            MultiProgress::with_draw_target(ProgressDrawTarget::hidden())
        };
        let overall = multi.add(ProgressBar::new(0));
        overall.set_style(style());
        overall.set_prefix("all steps");
        Self {
            mode,
            started: Instant::now(),
            resumed_from: Arc::new(Mutex::new(0)),
            overall,
            steps: Arc::new(Mutex::new(Vec::new())),
            multi: Arc::new(multi),
        }
    }

    /// A bar for a step of `total` rows, `done` of them by an earlier run.
    pub fn step(&self, name: &'static str, total: u64, done: u64) -> ProgressBar {
        let bar = self.multi.add(ProgressBar::new(total));
        bar.set_style(style());
        bar.set_prefix(name);
        bar.set_position(done);
        bar.set_message("waiting");
        self.overall.inc_length(total);
        self.overall.inc(done);
        if let Ok(mut from) = self.resumed_from.lock() {
            *from += done;
        }
        if let Ok(mut steps) = self.steps.lock() {
            steps.push(Step {
                name,
                bar: bar.clone(),
                state: State::Waiting,
            });
        }
        bar
    }

    fn with_step(&self, name: &str, change: impl FnOnce(&mut Step)) {
        if let Ok(mut steps) = self.steps.lock()
            && let Some(step) = steps.iter_mut().find(|s| s.name == name)
        {
            change(step);
        }
    }

    pub fn started(&self, name: &str) {
        let mut line = None;
        self.with_step(name, |step| {
            step.state = State::Running {
                since: Instant::now(),
                from: step.bar.position(),
            };
            line = Some(format!("copy: {name} started"));
        });
        self.plain(line);
    }

    pub fn finished(&self, name: &str) {
        let mut line = None;
        self.with_step(name, |step| {
            let seconds = match step.state {
                State::Running { since, .. } => since.elapsed().as_secs(),
                _ => 0,
            };
            step.state = State::Done { seconds };
            step.bar
                .set_message(format!("done in {}", duration(seconds)));
            step.bar.finish();
            line = Some(format!(
                "copy: {name} done, {} rows in {}",
                step.bar.position(),
                duration(seconds)
            ));
        });
        self.plain(line);
    }

    /// Rows moved on by a step's batch.
    pub fn inc(&self, bar: &ProgressBar, rows: u64) {
        bar.inc(rows);
        self.overall.inc(rows);
    }

    fn plain(&self, line: Option<String>) {
        if let (Mode::Lines, Some(line)) = (self.mode, line) {
            eprintln!("{line}");
        }
    }

    /// Refreshes the messages (ETA, rows/s) and answers the plain status line.
    pub fn tick(&self) -> String {
        let from = self.resumed_from.lock().map(|f| *f).unwrap_or(0);
        let (pos, len) = (self.overall.position(), self.overall.length().unwrap_or(0));
        let overall = eta(
            pos.saturating_sub(from),
            len.saturating_sub(pos),
            self.started,
        );
        self.overall.set_message(overall.clone());
        let mut running = Vec::new();
        let mut waiting = Vec::new();
        if let Ok(steps) = self.steps.lock() {
            for step in steps.iter() {
                match step.state {
                    State::Waiting => waiting.push(step.name),
                    State::Running { since, from } => {
                        let (done, total) = (step.bar.position(), step.bar.length().unwrap_or(0));
                        let message =
                            eta(done.saturating_sub(from), total.saturating_sub(done), since);
                        step.bar.set_message(message);
                        running.push(format!("{} {}%", step.name, percent(done, total)));
                    }
                    State::Done { .. } => {}
                }
            }
        }
        let mut line = format!(
            "copy {}: {pos} of {len} rows ({}%), {overall}",
            duration(self.started.elapsed().as_secs()),
            percent(pos, len)
        );
        if !running.is_empty() {
            line.push_str(&format!("; running: {}", running.join(", ")));
        }
        if !waiting.is_empty() {
            line.push_str(&format!("; waiting: {}", waiting.join(", ")));
        }
        line
    }

    /// Ticks every second (printing a plain line every [`PLAIN_EVERY`]) until dropped.
    pub fn ticker(&self) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut last_line = Instant::now();
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let line = this.tick();
                if this.mode == Mode::Lines && last_line.elapsed() >= PLAIN_EVERY {
                    eprintln!("{line}");
                    last_line = Instant::now();
                }
            }
        })
    }

    /// Says something (a phase of the run) on whichever output is in use.
    pub fn say(&self, line: &str) {
        match self.mode {
            Mode::Bars => {
                let _ = self.multi.println(line);
            }
            Mode::Lines => eprintln!("{line}"),
            Mode::Hidden => {}
        }
    }

    /// A bar of its own (not counted in the run's rows), e.g. the build after the load.
    pub fn extra(&self, name: &str, total: u64) -> ProgressBar {
        let bar = self.multi.add(ProgressBar::new(total));
        bar.set_style(
            ProgressStyle::with_template("{prefix:>22} [{bar:30}] {pos}/{len} built {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_prefix(name.to_owned());
        bar
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn finish(&self) {
        self.overall.finish();
    }
}

/// `N rows/s, ETA 1m 05s` from `moved` rows since `since` and `left` to go; "starting" before
/// any row moved (no ETA is better than a wrong one).
fn eta(moved: u64, left: u64, since: Instant) -> String {
    let seconds = since.elapsed().as_secs_f64();
    if moved == 0 || seconds <= 0.0 {
        return "starting".into();
    }
    let rate = moved as f64 / seconds;
    format!(
        "{} rows/s, ETA {}",
        rate.round() as u64,
        duration((left as f64 / rate).ceil() as u64)
    )
}

fn percent(done: u64, total: u64) -> u64 {
    (done * 100).checked_div(total).unwrap_or(100)
}

/// `42s`, `3m 05s`, `1h 02m`.
pub fn duration(seconds: u64) -> String {
    match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m {:02}s", s / 60, s % 60),
        s => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_not_started_wait_and_rates_are_whole_numbers() {
        let progress = Progress::new(Mode::Hidden);
        let users = progress.step("users", 1000, 0);
        let _ledger = progress.step("transactions", 9000, 0);
        progress.started("users");
        std::thread::sleep(Duration::from_millis(1100));
        progress.inc(&users, 500);
        let line = progress.tick();
        assert!(
            line.contains("500 of 10000 rows (5%)"),
            "overall rows: {line}"
        );
        assert!(line.contains("running: users 50%"), "running steps: {line}");
        assert!(
            line.contains("waiting: transactions"),
            "not started is waiting: {line}"
        );
        assert!(!line.contains("ETA 0s"), "{line}");
        let rate: String = line
            .split(" rows/s")
            .next()
            .unwrap()
            .rsplit(' ')
            .next()
            .unwrap()
            .to_owned();
        assert!(
            rate.parse::<u64>().is_ok(),
            "rows/s without decimals: {rate:?} in {line}"
        );
        assert!(line.contains("ETA "), "an overall ETA: {line}");
        progress.finished("users");
        assert!(!progress.tick().contains("users 50%"));
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(duration(42), "42s");
        assert_eq!(duration(185), "3m 05s");
        assert_eq!(duration(3720), "1h 02m");
    }
}
