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
    terminal: bool,
    /// Drawn from the first update on (a bar of unknown length would show
    /// as full).
    bar: Option<ProgressBar>,
    last_line: Option<Instant>,
    /// What the last plain line said.
    printed: Option<u64>,
    done: u64,
    total: u64,
}

impl Progress {
    /// A bar on a terminal, plain lines elsewhere.
    pub fn new(verb: impl Into<String>, noun: &'static str) -> Self {
        Self {
            verb: verb.into(),
            noun,
            started: Instant::now(),
            terminal: std::io::stderr().is_terminal(),
            bar: None,
            last_line: None,
            printed: None,
            done: 0,
            total: 0,
        }
    }

    /// `done` of `total` are finished.
    pub fn update(&mut self, done: u64, total: u64) {
        self.done = done;
        self.total = total;
        if self.terminal {
            let bar = self
                .bar
                .get_or_insert_with(|| new_bar(&self.verb, self.noun));
            bar.set_length(total);
            bar.set_position(done);
            return;
        }
        let due = self
            .last_line
            .is_none_or(|last| last.elapsed() >= LINE_EVERY);
        if due {
            self.line();
        }
    }

    /// The work ended (successfully or not): clear the bar, or print the
    /// last line unless it was just printed.
    pub fn finish(mut self) {
        match self.bar.take() {
            Some(bar) => bar.finish_and_clear(),
            None if self.total > 0 && self.printed != Some(self.done) => self.line(),
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
        self.printed = Some(self.done);
    }
}

/// `verified [=====>    ] 120000/1000000 entries 40000/s ETA 22s`.
fn new_bar(verb: &str, noun: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    let template = format!("{{msg}} [{{bar:40}}] {{pos}}/{{len}} {noun} {{rate}} ETA {{eta}}");
    let style = ProgressStyle::with_template(&template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key(
            "rate",
            |state: &indicatif::ProgressState, out: &mut dyn std::fmt::Write| {
                let _ = write!(out, "{:.0}/s", state.per_sec());
            },
        )
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(verb.to_string());
    bar
}
