//! Who is in the room, as the room tells it: up to `ROOM_MEMBER_LIST_MAX` members (a small room)
//! the whole list in `room:state` and one `member:join` / `member:leave` per change; past it (a
//! large room) `room:state` lists the first `ROOM_MEMBER_LIST_MAX` members by id with the total
//! count and a cursor, `members:get` pages the rest, and changes are coalesced into at most one
//! `members:diff` per [`MEMBERS_DIFF_MS`], driven by the room's alarm.
//!
//! Nothing here walks the whole member list for one join or leave: a page is a range of the
//! ordered map, the pending diff holds at most `ROOM_MEMBER_LIST_MAX` users, and the full list
//! is only sent when the room is small again (then it is at most that long).

use super::{ConnInfo, Effect, Room, Timer};
use crate::core::error::{Error, ErrorCode};
use crate::core::ids::{ConnId, UserId};
use crate::core::protocol::{self, Ref};
use crate::core::room::request::MembersGet;
use crate::core::time::Timestamp;
use serde::Serialize;
use std::collections::BTreeSet;
use std::ops::Bound;

/// Shortest time between two `members:diff` frames of a large room, in milliseconds.
pub const MEMBERS_DIFF_MS: u64 = 1000;

/// One member as the protocol lists it.
#[derive(Debug, Serialize)]
pub(super) struct Member<'a> {
    user: &'a UserId,
}

/// Member changes not yet announced (a large room, or one that just crossed the setting).
#[derive(Debug, Default)]
pub(super) struct MemberDiff {
    /// A change is waiting for the next `members:diff` (its timer is set).
    pending: bool,
    /// Users whose latest change is a join, or a leave; a user is in at most one of them.
    joins: BTreeSet<UserId>,
    leaves: BTreeSet<UserId>,
    /// More changes than the bound came in this interval: the diff carries only the count.
    truncated: bool,
    /// When the last diff was sent: the next one waits for `MEMBERS_DIFF_MS` after it.
    last_sent: Option<Timestamp>,
}

/// The members block of `room:state`.
pub(super) struct Listing<'a> {
    pub members: Vec<Member<'a>>,
    pub count: usize,
    /// The `after` for `members:get` when the list is partial.
    pub next: Option<&'a UserId>,
}

impl Room {
    /// The setting: the most members listed in `room:state` and announced one by one.
    fn list_max(&self) -> usize {
        self.config.limits.room_member_list_max.max(1)
    }

    /// Whether the room is past `ROOM_MEMBER_LIST_MAX` members (distinct users).
    pub fn is_large(&self) -> bool {
        self.members.len() > self.list_max()
    }

    /// Up to `limit` members after `after`, in id order, and whether more follow.
    fn page(&self, after: Option<&UserId>, limit: usize) -> (Vec<Member<'_>>, Option<&UserId>) {
        let start = match after {
            Some(after) => Bound::Excluded(after),
            None => Bound::Unbounded,
        };
        let mut users = self.members.range::<UserId, _>((start, Bound::Unbounded)).map(|(u, _)| u);
        let members: Vec<Member<'_>> = users.by_ref().take(limit).map(|user| Member { user }).collect();
        let next = match users.next() {
            Some(_) => members.last().map(|m| m.user),
            None => None,
        };
        (members, next)
    }

    /// What `room:state` says about members: everyone in a small room; in a large one the first
    /// `ROOM_MEMBER_LIST_MAX` by id and a cursor for the rest.
    pub(super) fn listing(&self) -> Listing<'_> {
        let (members, next) = self.page(None, self.list_max());
        Listing { members, count: self.members.len(), next }
    }

    /// `user` became a member (`joined`) or stopped being one. A small room that stays small
    /// announces it at once to all but `except`; otherwise it waits for the next diff.
    pub(super) fn member_changed(
        &mut self,
        user: &UserId,
        joined: bool,
        except: Option<ConnId>,
    ) -> Option<Effect> {
        let max = self.list_max();
        let now_count = self.members.len();
        let before = if joined { now_count.saturating_sub(1) } else { now_count + 1 };
        if !self.diff.pending && before <= max && now_count <= max {
            let event = if joined { "member:join" } else { "member:leave" };
            return Some(Effect::Announce { except, frame: protocol::event(event, &Member { user }) });
        }
        let diff = &mut self.diff;
        if !diff.truncated {
            let (add, remove) = if joined {
                (&mut diff.joins, &mut diff.leaves)
            } else {
                (&mut diff.leaves, &mut diff.joins)
            };
            remove.remove(user);
            add.insert(user.clone());
            if diff.joins.len() + diff.leaves.len() > max {
                diff.truncated = true;
                diff.joins.clear();
                diff.leaves.clear();
            }
        }
        if !diff.pending {
            diff.pending = true;
            // At once after a quiet interval (a past deadline fires on the next alarm), else
            // one interval after the previous diff.
            let due = match diff.last_sent {
                Some(last) => last.plus_millis(MEMBERS_DIFF_MS).max(self.clock),
                None => self.clock,
            };
            self.timers.set(Timer::MembersDiff, due);
        }
        None
    }

    /// The diff timer fired: one `members:diff` to every socket with what changed since the
    /// last one and the count; when the room is small again, with the whole list.
    pub(super) fn send_member_diff(&mut self, now: Timestamp) -> Option<Effect> {
        let diff = std::mem::take(&mut self.diff);
        self.diff.last_sent = Some(now);
        if !diff.pending {
            self.diff.last_sent = diff.last_sent;
            return None;
        }
        #[derive(Serialize)]
        struct Diff<'a> {
            joins: Vec<Member<'a>>,
            leaves: Vec<Member<'a>>,
            count: usize,
            #[serde(skip_serializing_if = "std::ops::Not::not")]
            truncated: bool,
            #[serde(skip_serializing_if = "Option::is_none")]
            members: Option<Vec<Member<'a>>>,
        }
        let small = !self.is_large();
        let frame = protocol::event(
            "members:diff",
            &Diff {
                joins: diff.joins.iter().map(|user| Member { user }).collect(),
                leaves: diff.leaves.iter().map(|user| Member { user }).collect(),
                count: self.members.len(),
                truncated: diff.truncated,
                // Small again: the complete list (at most the setting), replacing the client's.
                members: small.then(|| self.page(None, self.list_max()).0),
            },
        );
        Some(Effect::Broadcast { except: None, frame })
    }

    /// `members:get`: a page of members in id order after `after`.
    pub(super) fn members_get(
        &self,
        sender: &ConnInfo,
        reply_to: Option<Ref>,
        p: MembersGet,
    ) -> Result<Vec<Effect>, Error> {
        if reply_to.is_none() {
            return Err(Error::new(ErrorCode::BadRequest, "members:get needs a ref to reply to"));
        }
        let max = self.list_max();
        let limit = p.limit.map_or(max, |l| (l as usize).clamp(1, max));
        let (members, next) = self.page(p.after.as_ref(), limit);
        #[derive(Serialize)]
        struct Page<'a> {
            members: Vec<Member<'a>>,
            count: usize,
            #[serde(skip_serializing_if = "Option::is_none")]
            next: Option<&'a UserId>,
        }
        let page = Page { members, count: self.members.len(), next };
        Ok(reply_to
            .map(|r| Effect::Send { to: sender.conn.clone(), frame: protocol::reply_ok(&r, &page) })
            .into_iter()
            .collect())
    }
}
