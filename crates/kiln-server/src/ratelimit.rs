//! Per-credential token buckets. A throttled request is refused before it runs
//! (the SDK retries 429s, POSTs included, so nothing may have happened).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use kiln_core::{Error, ErrorCode};

pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    /// `rate` requests per second sustained, `burst` at once; `rate <= 0` disables.
    pub fn new(rate: f64, burst: f64) -> Self {
        Self {
            rate,
            burst: burst.max(1.0),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from `key`'s bucket, or says how long to wait.
    pub fn check(&self, key: &str) -> Result<(), Error> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = match self.buckets.lock() {
            Ok(b) => b,
            Err(_) => return Ok(()),
        };
        let (tokens, last) = match buckets.get_mut(key) {
            Some(bucket) => bucket,
            None => buckets.entry(key.to_string()).or_insert((self.burst, now)),
        };
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.rate).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            return Ok(());
        }
        let wait = ((1.0 - *tokens) / self.rate).ceil().max(1.0) as u64;
        let mut err = Error::new(
            ErrorCode::RequestLimitExceeded,
            format!(
                "Rate limit exceeded: at most {} requests per second per token.",
                self.rate
            ),
        );
        err.retry_after_secs = Some(wait);
        Err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_past_the_burst_then_recovers() {
        let limiter = RateLimiter::new(1000.0, 3.0);
        assert!((0..3).all(|_| limiter.check("t").is_ok()));
        let err = limiter.check("t").err();
        assert_eq!(
            err.as_ref().map(|e| e.code),
            Some(ErrorCode::RequestLimitExceeded)
        );
        assert_eq!(err.and_then(|e| e.retry_after_secs), Some(1));
        assert!(limiter.check("other").is_ok(), "buckets are per credential");
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert!(limiter.check("t").is_ok());
    }

    #[test]
    fn zero_rate_disables() {
        let limiter = RateLimiter::new(0.0, 0.0);
        assert!((0..1000).all(|_| limiter.check("t").is_ok()));
    }
}
