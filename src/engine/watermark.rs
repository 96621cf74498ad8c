//! Event-time watermark and processing-time idleness of one transform.
//!
//! The watermark is `max event time seen − allowed_lateness`. A window
//! `[start, end)` is complete, and is emitted, once the watermark reaches
//! `end`. The watermark never moves backwards.
//!
//! Idleness uses processing time (the `now_ms` the caller passes to
//! [`crate::engine::Engine::advance`]): when no selected sample arrived for
//! `idle_timeout`, every open window is emitted even though the watermark has
//! not reached its end (see `docs/engine.md`, "Idle sources").

/// Watermark state of one transform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watermark {
    lateness_ms: i64,
    max_event_ms: Option<i64>,
    idle_timeout_ms: Option<i64>,
    last_activity_ms: Option<i64>,
}

impl Watermark {
    /// A watermark with the given allowed lateness and optional idle timeout.
    pub fn new(lateness_ms: i64, idle_timeout_ms: Option<i64>) -> Self {
        Self {
            lateness_ms,
            max_event_ms: None,
            idle_timeout_ms,
            last_activity_ms: None,
        }
    }

    /// Records an event time.
    #[inline]
    pub fn observe(&mut self, ts: i64) {
        if self.max_event_ms.is_none_or(|m| ts > m) {
            self.max_event_ms = Some(ts);
        }
    }

    /// The latest event time seen.
    pub fn max_event_ms(&self) -> Option<i64> {
        self.max_event_ms
    }

    /// The current watermark, `None` before any sample.
    pub fn current(&self) -> Option<i64> {
        self.max_event_ms
            .map(|m| m.saturating_sub(self.lateness_ms))
    }

    /// Records input activity at processing time `now_ms` (when known).
    pub fn touch(&mut self, now_ms: Option<i64>) {
        if now_ms.is_some() {
            self.last_activity_ms = now_ms;
        }
    }

    /// True when the idle timeout elapsed since the last activity. The first
    /// call after activity without a known processing time starts the clock.
    pub fn idle(&mut self, now_ms: i64) -> bool {
        let Some(timeout) = self.idle_timeout_ms else {
            return false;
        };
        match self.last_activity_ms {
            None => {
                self.last_activity_ms = Some(now_ms);
                false
            }
            Some(last) => now_ms.saturating_sub(last) >= timeout,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermark_is_max_event_minus_lateness_and_monotonic() {
        let mut w = Watermark::new(10_000, None);
        assert_eq!(w.current(), None);
        w.observe(100_000);
        w.observe(50_000);
        assert_eq!(w.current(), Some(90_000));
        w.observe(i64::MIN);
        assert_eq!(w.current(), Some(90_000));
        assert_eq!(w.max_event_ms(), Some(100_000));
    }

    #[test]
    fn idleness_uses_processing_time() {
        let mut w = Watermark::new(0, Some(30_000));
        w.touch(None);
        assert!(!w.idle(1_000_000)); // starts the clock
        assert!(!w.idle(1_029_999));
        assert!(w.idle(1_030_000));
        w.touch(Some(1_030_000));
        assert!(!w.idle(1_040_000));
        let mut never = Watermark::new(0, None);
        assert!(!never.idle(i64::MAX));
    }
}
