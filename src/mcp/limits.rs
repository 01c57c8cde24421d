//! Per-identity limits (`[limits.per_user]`): how many queries one user may have running at
//! once, and start per minute. Over either, a call is refused at once with what to do, never
//! queued; one team server stays fair under one user's runaway agent.
//!
//! Also the drain at shutdown: once draining, new calls are refused, and the server waits for
//! the running ones (their outcomes written) before it stops.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use crate::config::PerUser;

#[derive(Default)]
struct Usage {
    running: usize,
    window: Option<Instant>,
    started: usize,
}

/// The counters of every user, and of the server as a whole.
#[derive(Default)]
pub struct Limiter {
    per_user: PerUser,
    users: Mutex<HashMap<String, Usage>>,
    running: Arc<AtomicUsize>,
    draining: AtomicBool,
}

/// A call counted as running until dropped.
pub struct Running {
    limiter: Arc<Limiter>,
    user: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let mut users = self.limiter.users.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(u) = users.get_mut(&self.user) {
            u.running = u.running.saturating_sub(1);
        }
        self.limiter.running.fetch_sub(1, Ordering::AcqRel);
    }
}

const WINDOW: Duration = Duration::from_secs(60);

impl Limiter {
    pub fn new(per_user: PerUser) -> Limiter {
        Limiter {
            per_user,
            ..Limiter::default()
        }
    }

    /// Counts a call of `user` as running, or says why it may not start: `(rule, message)`.
    pub fn start(self: &Arc<Self>, user: &str) -> Result<Running, (&'static str, String)> {
        if self.draining.load(Ordering::Acquire) {
            return Err((
                "server_draining",
                "this sqlguard server is shutting down and takes no new calls: call again, and another replica will answer".into(),
            ));
        }
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        let u = users.entry(user.to_string()).or_default();
        if let Some(max) = self.per_user.concurrent {
            if u.running >= max {
                return Err(("per_user_concurrent", format!(
                    "{user} already has {} queries running, the most one user may have at once (limits.per_user.concurrent = {max}): wait for one to finish, then call again",
                    u.running
                )));
            }
        }
        if let Some(max) = self.per_user.per_minute {
            let now = Instant::now();
            if u.window.is_none_or(|w| now.duration_since(w) >= WINDOW) {
                u.window = Some(now);
                u.started = 0;
            }
            if u.started >= max {
                let wait = WINDOW
                    .saturating_sub(u.window.map_or(Duration::ZERO, |w| now.duration_since(w)));
                return Err(("per_user_rate", format!(
                    "{user} has started {max} queries this minute, the most one user may (limits.per_user.per_minute = {max}): call again in {} s",
                    wait.as_secs().max(1)
                )));
            }
            u.started += 1;
        }
        u.running += 1;
        self.running.fetch_add(1, Ordering::AcqRel);
        Ok(Running {
            limiter: self.clone(),
            user: user.to_string(),
        })
    }

    /// Calls running now, on every user.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Acquire)
    }

    /// Refuses new calls from now on and waits (up to `grace`) for the running ones; returns
    /// how many were still running when it gave up.
    pub async fn drain(&self, grace: Duration) -> usize {
        self.draining.store(true, Ordering::Release);
        let until = Instant::now() + grace;
        while self.running() > 0 && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.running()
    }
}
