//! Progress of long operator work (verifying a million-entry chain,
//! rebuilding a view): a bar with rate and ETA when stderr is a terminal,
//! and otherwise a plain line every few seconds ("verified 120000/1000000
//! entries, 40000/s"), which a log file or CI output can keep. Always on
//! stderr, so stdout keeps only the command's result.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Plain lines come at most this often.
const LINE_EVERY: Duration = Duration::from_secs(2);

/// One unit of long work (`verb` done on `total` `noun`s).
pub struct Progress {
    verb: String,
    noun: &'static str,
    started: Instant,
    bar: Option<ProgressBar>,
    last_line: Option<Instant>,
    done: u64,
    total: u64,
}

impl Progress {
    /// A bar on a terminal, plain lines elsewhere.
    pub fn new(verb: impl Into<String>, noun: &'static str) -> Self {
        let verb = verb.into();
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            let style =
                ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} {per_sec} ETA {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> ");
            bar.set_style(style);
            bar.set_message(verb.clone());
            bar
        });
        Self {
            verb,
            noun,
            started: Instant::now(),
            bar,
            last_line: None,
            done: 0,
            total: 0,
        }
    }

    /// `done` of `total` are finished.
    pub fn update(&mut self, done: u64, total: u64) {
        self.done = done;
        self.total = total;
        match &self.bar {
            Some(bar) => {
                bar.set_length(total);
                bar.set_position(done);
            }
            None => {
                let due = self
                    .last_line
                    .is_none_or(|last| last.elapsed() >= LINE_EVERY);
                if due {
                    self.line();
                }
            }
        }
    }

    /// The work ended (successfully or not): clear the bar, or print the
    /// last line.
    pub fn finish(mut self) {
        match self.bar.take() {
            Some(bar) => bar.finish_and_clear(),
            None if self.total > 0 => self.line(),
            None => {}
        }
    }

    fn line(&mut self) {
        let seconds = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = (self.done as f64 / seconds).round() as u64;
        eprintln!(
            "{} {}/{} {}, {rate}/s",
            self.verb, self.done, self.total, self.noun
        );
        self.last_line = Some(Instant::now());
    }
}
