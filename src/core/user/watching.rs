//! Whom this user watches: `presence:subscribe` and `presence:unsubscribe` (over a socket or
//! HTTP), the answers of the watched users' objects ([`User::watched`], [`User::resumed`]), the
//! status changes they push ([`User::presence_pushed`]), pausing every subscription once the last
//! device has been gone for the grace period, and the token's watch policy, whose narrowing drops
//! what it no longer allows. A subscription is on its way until its answer lands; an unsubscribe
//! or a narrower token meanwhile undoes it then. Who watches this user is `watchers.rs`.

use super::effect::{PendingReply, UserCall, UserEffect, UserWrite};
use super::watch::{PresenceUpdate, PushAnswer, WatchPolicy};
use super::User;
use crate::core::auth;
use crate::core::config::Config;
use crate::core::error::{Error, ErrorCode};
use crate::core::ids::{ConnId, UserId};
use crate::core::protocol::{self, Ref};
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// A `presence:subscribe` whose watched users have not answered yet.
#[derive(Debug, Default)]
pub(super) struct Subscribing {
    /// Watch calls in flight that name this user.
    calls: u32,
    /// `false` once an unsubscribe or a narrower token cancelled it: its answers are undone.
    pub(super) wanted: bool,
}

impl User {
    /// `presence:unsubscribe` (socket or HTTP): the users that were watched or on their way (a
    /// subscription still in flight is cancelled too; its answer is undone), and the effects.
    pub(super) fn unwatch(&mut self, users: Vec<UserId>) -> (Vec<UserId>, Vec<UserEffect>) {
        let users: Vec<UserId> = users
            .into_iter()
            .filter(|u| {
                let cancelled = self.subscribing.get_mut(u).filter(|s| s.wanted).map(|s| s.wanted = false);
                self.watching.remove(u).is_some() || cancelled.is_some()
            })
            .collect();
        let mut effects: Vec<UserEffect> =
            users.iter().cloned().map(|x| UserEffect::Write(UserWrite::RemoveWatching(x))).collect();
        if !users.is_empty() {
            effects.push(UserEffect::Call(UserCall::Unwatch(users.clone())));
        }
        (users, effects)
    }

    pub(super) fn subscribe(
        &mut self,
        conn: &ConnId,
        reply_to: Option<Ref>,
        users: Vec<UserId>,
    ) -> Result<Vec<UserEffect>, Error> {
        let wanted = self.plan_subscribe(users)?;
        let reply = PendingReply { conn: conn.clone(), reply_to };
        if wanted.is_empty() {
            return Ok(self.watched(reply, Vec::new()));
        }
        Ok(vec![UserEffect::Call(UserCall::Watch { users: wanted, active: true, reply: Some(reply) })])
    }

    /// The checks of a subscribe (rights, the watch limit), and the subscriptions it puts on
    /// their way; returns the users whose objects are to be asked.
    pub(super) fn plan_subscribe(&mut self, users: Vec<UserId>) -> Result<Vec<UserId>, Error> {
        let max = self.config.limits.presence_max_watch;
        // Repeats count once, in the order given; a set keeps a long list of repeats (a 64 KiB
        // body holds thousands of ids) from costing a quadratic scan.
        let mut seen = BTreeSet::new();
        let wanted: Vec<UserId> =
            users.into_iter().filter(|u| *u != self.id && seen.insert(u.clone())).collect();
        if let Some(denied) = wanted.iter().find(|u| !self.policy.allows(u)) {
            return Err(Error::new(ErrorCode::Forbidden, format!("this token may not watch {denied}")));
        }
        // Subscriptions still in flight count: their answers have not landed in `watching` yet.
        let new = wanted.iter().filter(|u| !self.watches(u)).count();
        if self.watch_count().saturating_add(new) > max {
            return Err(Error::new(ErrorCode::TooLarge, format!("a user may watch at most {max} users")));
        }
        for user in &wanted {
            let pending = self.subscribing.entry(user.clone()).or_default();
            pending.calls = pending.calls.saturating_add(1);
            pending.wanted = true;
        }
        Ok(wanted)
    }

    /// Whether `user` is watched or a subscription to them is on its way.
    fn watches(&self, user: &UserId) -> bool {
        self.watching.contains_key(user) || self.subscribing.get(user).is_some_and(|s| s.wanted)
    }

    /// Users watched, counting the subscriptions on their way.
    fn watch_count(&self) -> usize {
        let pending =
            self.subscribing.iter().filter(|(u, s)| s.wanted && !self.watching.contains_key(*u)).count();
        self.watching.len() + pending
    }

    /// The watched users' objects answered a subscribe's [`UserCall::Watch`]: rights and wishes
    /// are checked again, since an unsubscribe or a narrower token may have come in meanwhile.
    /// What is still wanted and allowed is remembered; the rest is undone at the watched
    /// user's object and listed in `failed`. The socket that asked gets its reply.
    pub fn watched(
        &mut self,
        reply: PendingReply,
        results: Vec<(UserId, Result<PresenceUpdate, Error>)>,
    ) -> Vec<UserEffect> {
        let (data, mut effects, undo) = self.settle_subscribe(results);
        if let PendingReply { conn, reply_to: Some(r) } = reply {
            effects.push(UserEffect::Send { to: conn, frame: protocol::reply_ok(&r, &data) });
        }
        if !undo.is_empty() {
            effects.push(UserEffect::Call(UserCall::Unwatch(undo)));
        }
        effects
    }

    /// What a subscribe's answers settle: the reply's data (`{"presence", "failed"?}`), the
    /// writes, and the users whose subscription is to be undone at their object.
    pub(super) fn settle_subscribe(
        &mut self,
        results: Vec<(UserId, Result<PresenceUpdate, Error>)>,
    ) -> (Value, Vec<UserEffect>, Vec<UserId>) {
        let mut effects = Vec::new();
        let mut presence = Vec::new();
        let mut failed = Vec::new();
        let mut undo = Vec::new();
        for (user, result) in results {
            let wanted = match self.subscribing.get_mut(&user) {
                Some(pending) => {
                    pending.calls = pending.calls.saturating_sub(1);
                    let wanted = pending.wanted;
                    if pending.calls == 0 {
                        self.subscribing.remove(&user);
                    }
                    Some(wanted)
                }
                None => None,
            };
            let refusal = match wanted {
                // The object lost its memory (a failed write) while the call was out.
                None => {
                    Some(Error::new(ErrorCode::Internal, "the subscription was interrupted; subscribe again"))
                }
                Some(_) if !self.policy.allows(&user) => {
                    Some(Error::new(ErrorCode::Forbidden, format!("the newest token may not watch {user}")))
                }
                Some(false) => {
                    Some(Error::new(ErrorCode::Conflict, "unsubscribed before the subscription completed"))
                }
                Some(true) => None,
            };
            match (result, refusal) {
                (Ok(update), None) => {
                    // A push may have landed first with a newer revision: keep the newest.
                    if self.watching.get(&user).is_none_or(|rev| *rev < update.rev) {
                        self.watching.insert(user.clone(), update.rev);
                        effects.push(UserEffect::Write(UserWrite::SaveWatching { user, rev: update.rev }));
                    }
                    presence.push(update);
                }
                (Ok(_), Some(error)) => {
                    failed.push(json!({ "user": user, "error": error }));
                    undo.push(user);
                }
                (Err(error), _) => failed.push(json!({ "user": user, "error": error })),
            }
        }
        let presence: Vec<_> = presence.iter().map(PresenceUpdate::entry).collect();
        let mut data = json!({ "presence": presence });
        if let (false, Some(object)) = (failed.is_empty(), data.as_object_mut()) {
            object.insert("failed".into(), Value::Array(failed));
        }
        (data, effects, undo)
    }

    /// Answers to a resume or pause ([`UserCall::Watch`] without a reply): statuses that
    /// changed meanwhile go to every socket. A user no longer watched (unsubscribed or dropped
    /// by a newer token while the call was out) is not watched again: the call is undone.
    pub fn resumed(&mut self, results: Vec<(UserId, Result<PresenceUpdate, Error>)>) -> Vec<UserEffect> {
        let mut effects = Vec::new();
        let mut undo = Vec::new();
        for (user, result) in results {
            let Ok(update) = result else { continue };
            match self.watching.get_mut(&user) {
                Some(rev) if *rev < update.rev => {
                    *rev = update.rev;
                    effects.push(UserEffect::Write(UserWrite::SaveWatching { user, rev: update.rev }));
                    effects.extend(self.to_devices("presence:update", &update.entry()));
                }
                Some(_) => {}
                // A subscribe on its way settles it when its own answer lands.
                None if self.subscribing.get(&user).is_some_and(|s| s.wanted) => {}
                None => undo.push(user),
            }
        }
        if !undo.is_empty() {
            effects.push(UserEffect::Call(UserCall::Unwatch(undo)));
        }
        effects
    }

    /// `POST /presence`: a watched user's status changed.
    pub fn presence_pushed(&mut self, update: PresenceUpdate) -> (PushAnswer, Vec<UserEffect>) {
        let active = !self.saved.paused;
        let Some(known) = self.watching.get_mut(&update.user) else {
            return (PushAnswer { watching: false, active }, Vec::new());
        };
        let mut effects = Vec::new();
        if update.rev > *known {
            *known = update.rev;
            effects.push(UserEffect::Write(UserWrite::SaveWatching {
                user: update.user.clone(),
                rev: update.rev,
            }));
            effects.extend(self.to_devices("presence:update", &update.entry()));
        }
        (PushAnswer { watching: true, active }, effects)
    }

    /// Adopts the newest token's policy and drops subscriptions it no longer allows.
    pub(super) fn set_policy(&mut self, policy: WatchPolicy) -> Vec<UserEffect> {
        if policy == self.policy {
            return Vec::new();
        }
        let dropped: Vec<UserId> = self.watching.keys().filter(|u| !policy.allows(u)).cloned().collect();
        // Subscriptions in flight to users the new token does not allow are undone when they land.
        for (_, pending) in self.subscribing.iter_mut().filter(|(u, _)| !policy.allows(u)) {
            pending.wanted = false;
        }
        self.policy = policy.clone();
        let mut effects = vec![UserEffect::Write(UserWrite::SavePolicy(policy))];
        for user in &dropped {
            self.watching.remove(user);
            effects.push(UserEffect::Write(UserWrite::RemoveWatching(user.clone())));
        }
        if !dropped.is_empty() {
            effects.push(UserEffect::Call(UserCall::Unwatch(dropped)));
        }
        effects
    }

    /// The grace period ended with no device back: pause every subscription (the watched users'
    /// objects stop pushing until a device returns and `arrive` resumes them).
    pub(super) fn pause_subscriptions(&mut self) -> Option<UserEffect> {
        if self.has_devices() || self.saved.paused {
            return None;
        }
        self.saved.paused = true;
        (!self.watching.is_empty()).then(|| {
            let users = self.watching.keys().cloned().collect();
            UserEffect::Call(UserCall::Watch { users, active: false, reply: None })
        })
    }
}

/// Who the holder of `identity` may watch.
pub fn policy_of(identity: &auth::Identity, config: &Config) -> WatchPolicy {
    WatchPolicy {
        friends: identity.friends.as_ref().map(|f| f.iter().cloned().collect()),
        caps: identity.caps_or(&config.default_caps).clone(),
    }
}
