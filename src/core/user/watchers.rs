//! Who watches this user: their objects ask to start, pause or stop (`POST /watch`,
//! `POST /unwatch`), and get this user's status changes pushed (`POST /presence`), at most once
//! per [`PUSH_WINDOW_MS`]. Their answers say whether they still watch and still have a socket;
//! the ones that stopped are forgotten, the ones without a socket paused. What the messages are
//! and who may watch whom is `watch.rs`; this user's own subscriptions are `watching.rs`.

use super::effect::{UserCall, UserEffect, UserWrite};
use super::watch::{PresenceUpdate, PushAnswer, WatchRequest};
use super::{Timer, User};
use crate::core::error::{Error, ErrorCode};
use crate::core::ids::UserId;
use crate::core::time::Timestamp;

/// Watchers are pushed a user's status at most once per window: changes inside it are
/// coalesced and the latest goes out when it ends.
pub const PUSH_WINDOW_MS: u64 = 1000;

impl User {
    /// Pushes an owed change to the active watchers, at most once per [`PUSH_WINDOW_MS`]: inside
    /// the window it waits for the window's end (the `Push` timer), and then carries the
    /// latest status, so a flapping user costs each watcher one call per window.
    pub(super) fn push_owed(&mut self, now: Timestamp, calls: bool) -> Option<UserEffect> {
        if !self.saved.unpushed {
            return None;
        }
        let to: Vec<UserId> =
            self.watchers.iter().filter(|(_, active)| **active).map(|(u, _)| u.clone()).collect();
        if to.is_empty() {
            // Paused watchers get the current status when they resume.
            self.saved.unpushed = false;
            self.timers.cancel(&Timer::Push);
            return None;
        }
        let due = self.last_push.map_or(now, |at| at.plus_millis(PUSH_WINDOW_MS));
        if now < due || !calls {
            self.timers.set(Timer::Push, due.max(now));
            return None;
        }
        self.saved.unpushed = false;
        self.last_push = Some(now);
        self.timers.cancel(&Timer::Push);
        Some(UserEffect::Call(UserCall::Push { to, update: self.update() }))
    }

    /// Watchers answered a [`UserCall::Push`]: forget the ones that stopped watching, pause
    /// the ones without a socket. Failed pushes change nothing (the next change retries).
    pub fn pushed(&mut self, answers: Vec<(UserId, Result<PushAnswer, Error>)>) -> Vec<UserEffect> {
        let mut effects = Vec::new();
        for (watcher, answer) in answers {
            match answer {
                Ok(PushAnswer { watching: false, .. }) if self.watchers.remove(&watcher).is_some() => {
                    effects.push(UserEffect::Write(UserWrite::RemoveWatcher(watcher)));
                }
                Ok(PushAnswer { active: false, .. }) => {
                    if let Some(active) = self.watchers.get_mut(&watcher).filter(|a| **a) {
                        *active = false;
                        effects.push(UserEffect::Write(UserWrite::SaveWatcher { watcher, active: false }));
                    }
                }
                _ => {}
            }
        }
        effects
    }

    /// `POST /watch`: another user starts, resumes or pauses watching this one.
    pub fn watch_requested(
        &mut self,
        request: WatchRequest,
    ) -> Result<(PresenceUpdate, Vec<UserEffect>), Error> {
        let max = self.config.limits.presence_max_watch;
        if !self.watchers.contains_key(&request.watcher) && self.watchers.len() >= max {
            return Err(Error::new(
                ErrorCode::TooManyConnections,
                format!("{} already has the most watchers allowed ({max})", self.id),
            ));
        }
        let mut effects = Vec::new();
        if self.watchers.insert(request.watcher.clone(), request.active) != Some(request.active) {
            effects.push(UserEffect::Write(UserWrite::SaveWatcher {
                watcher: request.watcher,
                active: request.active,
            }));
        }
        Ok((self.update(), effects))
    }

    /// `POST /unwatch`.
    pub fn unwatch_requested(&mut self, watcher: &UserId) -> Vec<UserEffect> {
        match self.watchers.remove(watcher) {
            Some(_) => vec![UserEffect::Write(UserWrite::RemoveWatcher(watcher.clone()))],
            None => Vec::new(),
        }
    }
}
