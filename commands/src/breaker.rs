//! One circuit breaker type for every outbound service (the PLC directory, relays' requestCrawl,
//! DID and handle resolution hosts): after `threshold` consecutive failures it opens and calls
//! fail fast for `open_for` (doubling per further failure up to `max_open` when backoff is on);
//! then ONE call goes through as the half-open probe — its success closes the breaker, its
//! failure opens it again. Every change of state is logged with the service's name.
//!
//! Knows nothing about HTTP: the caller says what counts as a failure (a refused connection, a
//! timeout, a 5xx — not a 4xx, which is the service answering).

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a half-open probe may stay unanswered before another call may probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

/// A call refused because the breaker is open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{service} is unavailable: {failures} consecutive failures; next attempt in {} s", retry_in.as_secs().max(1))]
pub struct Open {
    pub service: String,
    pub failures: u32,
    pub retry_in: Duration,
}

#[derive(Debug, Default)]
struct Inner {
    failures: u32,
    open_until: Option<Instant>,
    probe_started: Option<Instant>,
}

#[derive(Debug)]
pub struct Breaker {
    service: String,
    threshold: u32,
    open_for: Duration,
    max_open: Duration,
    inner: Mutex<Inner>,
}

impl Breaker {
    /// Opens after `threshold` consecutive failures, for `open_for` each time.
    pub fn new(service: impl Into<String>, threshold: u32, open_for: Duration) -> Breaker {
        Breaker { service: service.into(), threshold: threshold.max(1), open_for, max_open: open_for, inner: Mutex::default() }
    }

    /// Each failure past the threshold doubles the open time, up to `max_open`.
    pub fn with_backoff(mut self, max_open: Duration) -> Breaker {
        self.max_open = max_open.max(self.open_for);
        self
    }

    pub fn service(&self) -> &str {
        &self.service
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn state(&self) -> BreakerState {
        let i = self.lock();
        match i.open_until {
            None => BreakerState::Closed,
            Some(until) if Instant::now() < until => BreakerState::Open,
            Some(_) => BreakerState::HalfOpen,
        }
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.lock().failures
    }

    /// May a call go out now? Closed: yes. Open: no. Past the open time: the first caller is
    /// the probe; others are refused until it answers (or [`PROBE_TIMEOUT`] passes).
    pub fn admit(&self) -> Result<(), Open> {
        let now = Instant::now();
        let mut i = self.lock();
        let Some(until) = i.open_until else { return Ok(()) };
        if now < until {
            return Err(Open { service: self.service.clone(), failures: i.failures, retry_in: until - now });
        }
        if i.probe_started.is_some_and(|at| now.duration_since(at) < PROBE_TIMEOUT) {
            return Err(Open { service: self.service.clone(), failures: i.failures, retry_in: Duration::from_secs(1) });
        }
        i.probe_started = Some(now);
        tracing::info!(service = %self.service, failures = i.failures, "circuit half-open: probing");
        Ok(())
    }

    pub fn success(&self) {
        let mut i = self.lock();
        if i.open_until.is_some() {
            tracing::info!(service = %self.service, "circuit closed: the service answers again");
        }
        *i = Inner::default();
    }

    pub fn failure(&self, why: &str) {
        let mut i = self.lock();
        i.failures = i.failures.saturating_add(1);
        i.probe_started = None;
        if i.failures < self.threshold {
            tracing::debug!(service = %self.service, failures = i.failures, %why, "outbound call failed");
            return;
        }
        let doublings = (i.failures - self.threshold).min(20);
        let open = self.open_for.saturating_mul(1 << doublings).min(self.max_open);
        i.open_until = Some(Instant::now() + open);
        tracing::warn!(service = %self.service, failures = i.failures, open_secs = open.as_secs(), %why, "circuit open: calls fail fast");
    }

    /// Runs `call` through the breaker: refused while open; its outcome recorded, `is_failure`
    /// telling service failures from answers.
    pub async fn call<T, E, F>(&self, call: F, is_failure: impl Fn(&Result<T, E>) -> Option<String>) -> Result<Result<T, E>, Open>
    where
        F: std::future::Future<Output = Result<T, E>>,
    {
        self.admit()?;
        let out = call.await;
        match is_failure(&out) {
            Some(why) => self.failure(&why),
            None => self.success(),
        }
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn opens_probes_and_closes() {
        let b = Breaker::new("plc", 5, Duration::from_millis(60));
        for _ in 0..4 {
            b.admit().unwrap();
            b.failure("refused");
        }
        assert_eq!(b.state(), BreakerState::Closed, "4 failures are not enough");
        b.admit().unwrap();
        b.failure("refused");
        assert_eq!(b.state(), BreakerState::Open);
        let open = b.admit().unwrap_err();
        assert_eq!(open.failures, 5);
        assert!(open.to_string().starts_with("plc is unavailable: 5 consecutive failures"), "{open}");
        std::thread::sleep(Duration::from_millis(70));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        b.admit().unwrap();
        assert!(b.admit().is_err(), "one probe at a time");
        b.failure("still down");
        assert_eq!(b.state(), BreakerState::Open, "a failed probe opens it again");
        std::thread::sleep(Duration::from_millis(70));
        b.admit().unwrap();
        b.success();
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.failures(), 0);
        b.admit().unwrap();
        b.admit().unwrap();
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let b = Breaker::new("relay", 1, Duration::from_secs(10)).with_backoff(Duration::from_secs(25));
        b.failure("x");
        assert!(b.admit().unwrap_err().retry_in <= Duration::from_secs(10));
        b.failure("x");
        let r = b.admit().unwrap_err().retry_in;
        assert!(r > Duration::from_secs(10) && r <= Duration::from_secs(20), "{r:?}");
        b.failure("x");
        let r = b.admit().unwrap_err().retry_in;
        assert!(r > Duration::from_secs(20) && r <= Duration::from_secs(25), "{r:?}");
    }

    #[tokio::test]
    async fn call_records_outcomes() {
        let b = Breaker::new("svc", 2, Duration::from_secs(60));
        let fails = |r: &Result<u32, u32>| r.as_ref().err().filter(|e| **e >= 500).map(|e| e.to_string());
        assert_eq!(b.call(async { Err::<u32, u32>(404) }, fails).await, Ok(Err(404)), "an answer, not a failure");
        assert_eq!(b.failures(), 0);
        let _ = b.call(async { Err::<u32, u32>(503) }, fails).await;
        let _ = b.call(async { Err::<u32, u32>(503) }, fails).await;
        assert!(b.call(async { Ok::<u32, u32>(1) }, fails).await.is_err(), "open: fails fast without calling");
    }
}
