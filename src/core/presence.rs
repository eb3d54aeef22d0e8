//! User status presence — `online | away | busy | offline` with `lastSeen` — as a pure state
//! machine on a virtual clock, which the user object (`core::user`) drives.
//!
//! Rules: the first socket makes the user `online` (a chosen `busy` or `offline` stays); any
//! accepted frame from any of the user's sockets is activity, which brings an `away` user back; no activity for
//! `away_ms` makes them `away`, for `offline_ms` `offline`; when the last socket closes they go
//! `offline` after `grace_ms`, so a page reload does not flap. A chosen `busy` is kept through
//! inactivity; a chosen `offline` (invisible) is kept until the user chooses again. Every
//! transition is decided at a deadline the caller turns into the object's alarm.

use crate::core::time::Timestamp;
use serde::{Deserialize, Serialize};

/// A user's status as others see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Connected and active.
    Online,
    /// Connected, inactive for a while (or chose to look away).
    Away,
    /// Chose not to be disturbed; kept through inactivity.
    Busy,
    /// No socket for longer than the grace period, inactive too long, or chose to look offline.
    Offline,
}

/// Durations, from `[vars]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresenceTimes {
    /// No activity this long → `away` (`PRESENCE_AWAY_MS`, default 5 min).
    pub away_ms: u64,
    /// No activity this long → `offline` (`PRESENCE_OFFLINE_MS`, default 10 min).
    pub offline_ms: u64,
    /// After the last socket closes → `offline` (`PRESENCE_GRACE_MS`, default 30 s).
    pub grace_ms: u64,
}

impl Default for PresenceTimes {
    fn default() -> Self {
        PresenceTimes { away_ms: 5 * 60_000, offline_ms: 10 * 60_000, grace_ms: 30_000 }
    }
}

/// What watchers are told when the status changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The new status.
    pub status: Status,
    /// Last activity, ms since the epoch.
    #[serde(rename = "lastSeen")]
    pub last_seen: Timestamp,
    /// Free text the user set with the status ("in a meeting").
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub activity: Option<String>,
}

/// One user's presence; the persisted part is all of it but `sockets`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    status: Status,
    /// A status the user chose that inactivity must not override (`busy`, `offline`).
    chosen: Option<Status>,
    activity: Option<String>,
    last_seen: Timestamp,
    /// When the last socket closed, while the grace period runs.
    left_at: Option<Timestamp>,
    #[serde(skip)]
    sockets: usize,
}

impl Presence {
    /// A user never seen before: offline.
    pub fn new() -> Presence {
        Presence {
            status: Status::Offline,
            chosen: None,
            activity: None,
            last_seen: Timestamp(0),
            left_at: None,
            sockets: 0,
        }
    }

    /// The current status, `lastSeen` and activity.
    pub fn current(&self) -> Change {
        Change { status: self.status, last_seen: self.last_seen, activity: self.activity.clone() }
    }

    /// When the last socket closed, while the grace period runs.
    pub fn left_at(&self) -> Option<Timestamp> {
        self.left_at
    }

    /// Re-counts sockets that survived hibernation (no transition). None left while the user
    /// still shows as present means they went away unseen (a close that found the object
    /// evicted, a restart): the grace period starts now, as if the last one just closed, or
    /// nothing would ever take the user offline.
    pub fn restore_sockets(&mut self, sockets: usize, now: Timestamp) {
        self.sockets = sockets;
        if sockets == 0 && self.left_at.is_none() && self.status != Status::Offline {
            self.left_at = Some(now);
        }
    }

    /// A socket opened.
    pub fn connect(&mut self, now: Timestamp) -> Option<Change> {
        self.sockets += 1;
        self.left_at = None;
        self.last_seen = now;
        self.settle(self.chosen.unwrap_or(Status::Online))
    }

    /// A socket closed; the last one starts the grace period.
    pub fn disconnect(&mut self, now: Timestamp) -> Option<Change> {
        self.sockets = self.sockets.saturating_sub(1);
        if self.sockets == 0 {
            self.left_at = Some(now);
        }
        None
    }

    /// A frame arrived on one of the user's sockets.
    pub fn activity(&mut self, now: Timestamp) -> Option<Change> {
        self.last_seen = self.last_seen.max(now);
        match self.chosen {
            Some(_) => None,
            None => self.settle(Status::Online),
        }
    }

    /// `presence:set`: the user chooses a status (and optional activity text).
    pub fn choose(&mut self, status: Status, activity: Option<String>, now: Timestamp) -> Option<Change> {
        self.last_seen = self.last_seen.max(now);
        self.chosen = matches!(status, Status::Busy | Status::Offline).then_some(status);
        let activity_changed = self.activity != activity;
        self.activity = activity;
        let change = self.settle(status);
        if change.is_none() && activity_changed {
            return Some(self.current());
        }
        change
    }

    /// The next moment a transition may happen: the object's alarm for presence.
    pub fn deadline(&self, times: &PresenceTimes) -> Option<Timestamp> {
        if let Some(left) = self.left_at {
            return (self.status != Status::Offline).then(|| left.plus_millis(times.grace_ms));
        }
        if self.sockets == 0 || self.chosen.is_some() {
            return None;
        }
        match self.status {
            Status::Online => Some(self.last_seen.plus_millis(times.away_ms)),
            Status::Away => Some(self.last_seen.plus_millis(times.offline_ms)),
            _ => None,
        }
    }

    /// The alarm fired: apply whatever transition is due at `now`.
    pub fn on_alarm(&mut self, now: Timestamp, times: &PresenceTimes) -> Option<Change> {
        if let Some(left) = self.left_at {
            if now >= left.plus_millis(times.grace_ms) && self.sockets == 0 {
                self.left_at = None;
                self.chosen = self.chosen.filter(|c| *c == Status::Busy);
                return self.settle(Status::Offline);
            }
            return None;
        }
        if self.sockets == 0 || self.chosen.is_some() {
            return None;
        }
        let idle = now.as_millis().saturating_sub(self.last_seen.as_millis());
        if idle >= times.offline_ms {
            self.settle(Status::Offline)
        } else if idle >= times.away_ms {
            self.settle(Status::Away)
        } else {
            None
        }
    }

    fn settle(&mut self, status: Status) -> Option<Change> {
        if self.status == status {
            return None;
        }
        self.status = status;
        Some(self.current())
    }
}

impl Default for Presence {
    fn default() -> Self {
        Presence::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: PresenceTimes = PresenceTimes { away_ms: 300_000, offline_ms: 600_000, grace_ms: 30_000 };

    fn at(ms: u64) -> Timestamp {
        Timestamp(1_000_000 + ms)
    }

    /// Fires the alarm at every deadline up to `until`, collecting the statuses it announced.
    fn run(p: &mut Presence, until: Timestamp) -> Vec<(Status, Timestamp)> {
        let mut seen = Vec::new();
        while let Some(d) = p.deadline(&T).filter(|d| *d <= until) {
            if let Some(c) = p.on_alarm(d, &T) {
                seen.push((c.status, d));
            } else {
                break;
            }
        }
        seen
    }

    #[test]
    fn online_then_away_then_offline_without_activity() {
        let mut p = Presence::new();
        assert_eq!(p.connect(at(0)).map(|c| c.status), Some(Status::Online));
        assert_eq!(p.deadline(&T), Some(at(300_000)));
        assert_eq!(
            run(&mut p, at(1_000_000)),
            vec![(Status::Away, at(300_000)), (Status::Offline, at(600_000))]
        );
        assert_eq!(p.current().last_seen, at(0), "lastSeen is the last activity, not the transition");
    }

    #[test]
    fn activity_postpones_away_and_brings_an_away_user_back() {
        let mut p = Presence::new();
        p.connect(at(0));
        assert_eq!(p.activity(at(200_000)), None, "already online");
        assert_eq!(p.deadline(&T), Some(at(500_000)));
        assert_eq!(run(&mut p, at(500_000)), vec![(Status::Away, at(500_000))]);
        assert_eq!(p.activity(at(510_000)).map(|c| c.status), Some(Status::Online));
    }

    #[test]
    fn a_reload_within_the_grace_period_does_not_flap() {
        let mut p = Presence::new();
        p.connect(at(0));
        assert_eq!(p.disconnect(at(1_000)), None);
        assert_eq!(p.deadline(&T), Some(at(31_000)));
        assert_eq!(p.connect(at(3_000)), None, "still online: nobody is told anything");
        assert_eq!(p.deadline(&T), Some(at(303_000)));
        p.disconnect(at(10_000));
        assert_eq!(run(&mut p, at(100_000)), vec![(Status::Offline, at(40_000))]);
        assert_eq!(p.deadline(&T), None);
    }

    #[test]
    fn sockets_gone_unseen_start_the_grace_period_on_restore() {
        let mut p = Presence::new();
        p.connect(at(0));
        // Evicted with a socket open; rebuilt at 100 s with none left and no close seen.
        let mut restored = p.clone();
        restored.restore_sockets(0, at(100_000));
        assert_eq!(restored.deadline(&T), Some(at(130_000)));
        assert_eq!(run(&mut restored, at(200_000)), vec![(Status::Offline, at(130_000))]);
        // With a survivor nothing changes; an offline user stays as it is.
        let mut kept = p.clone();
        kept.restore_sockets(1, at(100_000));
        assert_eq!(kept, p);
        let mut gone = Presence::new();
        gone.restore_sockets(0, at(100_000));
        assert_eq!(gone, Presence::new());
    }

    #[test]
    fn busy_is_kept_through_inactivity_and_reconnects() {
        let mut p = Presence::new();
        p.connect(at(0));
        assert_eq!(p.choose(Status::Busy, Some("focus".into()), at(1)).map(|c| c.status), Some(Status::Busy));
        assert_eq!(p.deadline(&T), None, "no away or offline while busy");
        assert_eq!(p.activity(at(5)), None);
        p.disconnect(at(10));
        assert_eq!(run(&mut p, at(100_000)), vec![(Status::Offline, at(30_010))]);
        assert_eq!(
            p.connect(at(200_000)).map(|c| c.status),
            Some(Status::Busy),
            "busy survives going offline"
        );
        assert_eq!(p.current().activity.as_deref(), Some("focus"));
        assert_eq!(p.choose(Status::Online, None, at(200_001)).map(|c| c.status), Some(Status::Online));
        assert_eq!(p.deadline(&T), Some(at(200_001 + 300_000)));
    }

    #[test]
    fn appearing_offline_and_changing_only_the_activity() {
        let mut p = Presence::new();
        p.connect(at(0));
        assert_eq!(p.choose(Status::Offline, None, at(1)).map(|c| c.status), Some(Status::Offline));
        assert_eq!(p.activity(at(2)), None, "invisible users stay offline while active");
        let c = p.choose(Status::Offline, Some("reading".into()), at(3));
        assert_eq!(c.and_then(|c| c.activity).as_deref(), Some("reading"), "a new activity is news");
        assert_eq!(p.choose(Status::Offline, Some("reading".into()), at(4)), None);
    }

    #[test]
    fn wire_form() {
        let c = Change { status: Status::Away, last_seen: Timestamp(5), activity: None };
        assert_eq!(serde_json::to_string(&c).unwrap(), r#"{"status":"away","lastSeen":5}"#);
        assert!(serde_json::from_str::<Status>("\"busy\"").is_ok());
        assert!(serde_json::from_str::<Status>("\"sleeping\"").is_err());
    }
}
