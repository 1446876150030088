//! Progress of long CLI jobs (`replay`, `verify`, `backup`, `restore`): a bar with rate and ETA when stderr
//! is a terminal (`indicatif`), otherwise a plain line at most twice a second, which the caller
//! writes where it writes its other output (logs, pipes and tests read those).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

const PLAIN_EVERY: Duration = Duration::from_millis(500);

pub struct Progress {
    label: String,
    unit: &'static str,
    bar: Option<ProgressBar>,
    started: Instant,
    last_line: Option<Instant>,
}

impl Progress {
    /// `label`: the job (`replay`, `backup: blobs`); `unit`: what is counted (`events`, `blobs`).
    pub fn new(label: impl Into<String>, unit: &'static str, total: u64) -> Progress {
        let label = label.into();
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            let template = format!("{label}: {{bar:40}} {{human_pos}}/{{human_len}} {unit} ({{per_sec}}, ETA {{eta}})");
            if let Ok(style) = ProgressStyle::with_template(&template) {
                bar.set_style(style);
            }
            bar
        });
        Progress { label, unit, bar, started: Instant::now(), last_line: None }
    }

    /// A job without a count (e.g. `verify`): a spinner with the elapsed time on a terminal,
    /// nothing otherwise (the job prints its own lines).
    pub fn spinner(label: impl Into<String>) -> Progress {
        let label = label.into();
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new_spinner();
            if let Ok(style) = ProgressStyle::with_template(&format!("{label}: {{spinner}} {{msg}} ({{elapsed}})")) {
                bar.set_style(style);
            }
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Progress { label, unit: "", bar, started: Instant::now(), last_line: None }
    }

    /// A message beside the spinner or bar (terminal only).
    pub fn message(&self, msg: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(msg.to_owned());
        }
    }

    /// Records progress; returns a plain line to print when there is no bar and it is time.
    pub fn update(&mut self, done: u64, total: u64) -> Option<String> {
        if let Some(bar) = &self.bar {
            bar.set_length(total);
            bar.set_position(done);
            return None;
        }
        let now = Instant::now();
        if self.last_line.is_some_and(|t| now.duration_since(t) < PLAIN_EVERY) {
            return None;
        }
        self.last_line = Some(now);
        let secs = self.started.elapsed().as_secs_f64();
        let rate = if secs > 0.0 { (done as f64 / secs) as u64 } else { done };
        Some(format!(
            "{}: {}/{} {} ({} {}/s)",
            self.label,
            crate::cli::ops::thousands(done),
            crate::cli::ops::thousands(total),
            self.unit,
            crate::cli::ops::thousands(rate),
            self.unit
        ))
    }

    /// Clears the bar (the caller prints its summary line).
    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}
