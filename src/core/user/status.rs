//! The user's status, as this object drives the presence state machine
//! ([`crate::core::presence`]): `presence:set`, activity, the transitions its timer brings, and
//! the one path every change takes ([`User::finish`]): stored once, announced on the user's own
//! devices at once, and pushed to watchers (`watchers.rs`).

use super::effect::{SavedPresence, UserEffect, UserWrite};
use super::watch::PresenceUpdate;
use super::{Timer, User};
use crate::core::error::{Error, ErrorCode};
use crate::core::presence::Status;
use crate::core::time::Timestamp;

/// Longest `presence:set` activity text, in characters.
pub const MAX_ACTIVITY_CHARS: usize = 128;

impl User {
    /// Ends every handler that may change the status. A status (or activity text) different
    /// from `before` is announced: on the user's own devices at once, to watchers through
    /// [`User::push_owed`] (`calls`: whether the caller's shell makes calls now). One
    /// `SavePresence` goes before everything else when anything saved changed, so what is stored
    /// and what is announced cannot drift apart: there is no other way to store a status.
    pub(super) fn finish(
        &mut self,
        before: &SavedPresence,
        mut effects: Vec<UserEffect>,
        now: Timestamp,
        calls: bool,
    ) -> Vec<UserEffect> {
        let (old, new) = (before.presence.current(), self.saved.presence.current());
        if (old.status, &old.activity) != (new.status, &new.activity) {
            self.saved.rev += 1;
            self.saved.unpushed = true;
            effects.extend(self.to_devices("presence:update", &self.update().entry()));
        }
        effects.extend(self.push_owed(now, calls));
        self.sync_presence_timer();
        if self.saved != *before {
            effects.insert(0, UserEffect::Write(UserWrite::SavePresence(self.saved.clone())));
        }
        effects
    }

    /// `presence:set` (socket or HTTP): the chosen status, checked.
    pub(super) fn choose_status(
        &mut self,
        status: Status,
        activity: Option<String>,
        now: Timestamp,
    ) -> Result<(), Error> {
        if activity.as_ref().is_some_and(|a| a.chars().count() > MAX_ACTIVITY_CHARS) {
            return Err(Error::new(
                ErrorCode::BadRequest,
                format!("activity must be at most {MAX_ACTIVITY_CHARS} characters"),
            ));
        }
        self.saved.presence.choose(status, activity, now);
        Ok(())
    }

    pub(super) fn update(&self) -> PresenceUpdate {
        PresenceUpdate::new(self.id.clone(), self.status(), self.saved.rev)
    }

    pub(super) fn sync_presence_timer(&mut self) {
        match self.saved.presence.deadline(&self.config.presence) {
            Some(at) => self.timers.set(Timer::Presence, at),
            None => self.timers.cancel(&Timer::Presence),
        }
    }
}
