//! The user object's side of the notification inbox: `POST /notify` (store, then tell every
//! device), a page of the inbox (socket or HTTP), marking read (socket or HTTP), and the `notification:count`
//! frame every device gets when the unread count changes. The inbox's rules — ids, duplicates,
//! retention, the counts — are `inbox.rs`; reads go through its [`Inbox`].

use super::effect::{UserEffect, UserWrite};
use super::inbox::{Inbox, NewNotification, ReadRequest};
use super::request::NotificationList;
use super::User;
use crate::core::error::Error;
use crate::core::time::Timestamp;
use serde::Serialize;
use serde_json::{json, Value};

/// The answer to `POST /notify` for this user.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NotifyAck {
    /// The notification's id.
    pub id: u64,
    /// Unread notifications now.
    pub unread: u64,
    /// `true` when the idempotency key was seen before: nothing was delivered again.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

impl User {
    /// `POST /notify`: stores the notification and tells every device.
    pub fn notify(
        &mut self,
        content: NewNotification,
        key: Option<String>,
        now: Timestamp,
        inbox: &dyn Inbox,
    ) -> Result<(NotifyAck, Vec<UserEffect>), Error> {
        content.validate(self.config.limits.max_text_chars)?;
        let (stored, writes) = self.inbox.store(content, key, now, inbox)?;
        let ack =
            NotifyAck { id: stored.notification.id, unread: self.unread(), duplicate: stored.duplicate };
        let mut effects: Vec<UserEffect> =
            writes.into_iter().map(|x| UserEffect::Write(UserWrite::Inbox(x))).collect();
        if !stored.duplicate {
            effects.extend(self.to_devices("notification:new", &stored.notification));
            effects.extend(self.count_frame());
        }
        Ok((ack, effects))
    }

    /// A page of the inbox, newest first, with the unread count: `notification:list`'s reply
    /// and `GET /notifications`' answer.
    pub(super) fn page(&self, page: &NotificationList, inbox: &dyn Inbox) -> Result<Value, Error> {
        let notifications = self.inbox.page(page.before, page.limit, inbox)?;
        Ok(json!({ "notifications": notifications, "unread": self.unread() }))
    }

    /// Marks notifications read, answering the unread count (`notification:read`, `POST /read`).
    pub(super) fn read(
        &mut self,
        request: &ReadRequest,
        inbox: &dyn Inbox,
    ) -> Result<(Value, Vec<UserEffect>), Error> {
        let effects = self.mark_read(request, inbox)?;
        Ok((json!({ "unread": self.unread() }), effects))
    }

    /// Marks notifications read; every device gets the new count when it changed.
    pub fn mark_read(&mut self, request: &ReadRequest, inbox: &dyn Inbox) -> Result<Vec<UserEffect>, Error> {
        let writes = self.inbox.mark_read(request, inbox)?;
        let changed = !writes.is_empty();
        let mut effects: Vec<UserEffect> =
            writes.into_iter().map(|x| UserEffect::Write(UserWrite::Inbox(x))).collect();
        if changed {
            effects.extend(self.count_frame());
        }
        Ok(effects)
    }

    fn count_frame(&self) -> Vec<UserEffect> {
        self.to_devices("notification:count", &json!({ "unread": self.unread() }))
    }
}
