//! Server-Sent Events responses the objects hold open (the room's and the user's event
//! streams): a queue the object owns and the response body that drains it.

use super::http;
use crate::core::error::Error;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use worker::{Response, ResponseBuilder};

/// What an event stream's response body and its object share. The object owns the queued
/// bytes: ending a stream frees them at once, whether or not its client ever reads again (a
/// client that stops reading would otherwise pin them for as long as it keeps the connection).
#[derive(Default)]
struct Feed {
    queue: VecDeque<Vec<u8>>,
    /// Bytes queued that the runtime has not taken yet (how far the client is behind).
    unread: usize,
    /// No more bytes will come: the body ends once the queue is empty.
    ended: bool,
    /// The body was dropped (the client went away).
    gone: bool,
    waker: Option<Waker>,
}

/// One open event stream, as its object holds it.
pub(crate) struct Stream {
    feed: Rc<RefCell<Feed>>,
}

/// The response body of an event stream.
pub(crate) struct StreamBody {
    feed: Rc<RefCell<Feed>>,
    /// Called once when the runtime drops the body (its client went away), so the object can
    /// notice at once rather than at its next write to the stream.
    on_gone: Option<Box<dyn FnOnce()>>,
}

impl futures::Stream for StreamBody {
    type Item = worker::Result<Vec<u8>>;

    fn poll_next(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let Ok(mut feed) = self.feed.try_borrow_mut() else {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        };
        if let Some(chunk) = feed.queue.pop_front() {
            feed.unread = feed.unread.saturating_sub(chunk.len());
            return Poll::Ready(Some(Ok(chunk)));
        }
        if feed.ended {
            return Poll::Ready(None);
        }
        feed.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for StreamBody {
    fn drop(&mut self) {
        let ended = match self.feed.try_borrow_mut() {
            Ok(mut feed) => {
                feed.gone = true;
                feed.queue.clear();
                feed.ended
            }
            Err(_) => false,
        };
        // A body the object ended itself needs no report.
        if let (Some(on_gone), false) = (self.on_gone.take(), ended) {
            on_gone();
        }
    }
}

impl Stream {
    /// A stream and the response body it feeds.
    pub(crate) fn new() -> (Stream, StreamBody) {
        let feed = Rc::new(RefCell::new(Feed::default()));
        (Stream { feed: Rc::clone(&feed) }, StreamBody { feed, on_gone: None })
    }

    /// A stream whose body calls `on_gone` when its client goes away first. `on_gone` runs
    /// inside the runtime's drop of the body: it must not borrow the object's state (spawn).
    pub(crate) fn watched(on_gone: impl FnOnce() + 'static) -> (Stream, StreamBody) {
        let (stream, mut body) = Stream::new();
        body.on_gone = Some(Box::new(on_gone));
        (stream, body)
    }

    /// Queues `bytes`; false when the client went away or the stream ended.
    pub(crate) fn push(&self, bytes: &[u8]) -> bool {
        let waker = {
            let Ok(mut feed) = self.feed.try_borrow_mut() else { return false };
            if feed.gone || feed.ended {
                return false;
            }
            feed.unread = feed.unread.saturating_add(bytes.len());
            feed.queue.push_back(bytes.to_vec());
            feed.waker.take()
        };
        // Woken after the borrow ends: the body borrows the feed when it is polled.
        if let Some(waker) = waker {
            waker.wake();
        }
        true
    }

    /// Bytes its client has not taken yet.
    pub(crate) fn unread(&self) -> usize {
        self.feed.try_borrow().map_or(0, |f| f.unread)
    }

    /// Whether its client went away.
    pub(crate) fn is_gone(&self) -> bool {
        self.feed.try_borrow().is_ok_and(|f| f.gone)
    }

    /// Ends the stream: what its client has not taken is dropped (it resumes from the last event
    /// id it received), then `last`, if any, is the final event.
    pub(crate) fn end(&self, last: Option<&[u8]>) {
        let waker = {
            let Ok(mut feed) = self.feed.try_borrow_mut() else { return };
            if feed.ended {
                return;
            }
            feed.queue.clear();
            feed.unread = 0;
            if let (Some(last), false) = (last, feed.gone) {
                feed.unread = last.len();
                feed.queue.push_back(last.to_vec());
            }
            feed.ended = true;
            feed.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl Drop for Stream {
    /// A stream the object forgets ends, and frees what it queued.
    fn drop(&mut self) {
        self.end(None);
    }
}

/// The `200 text/event-stream` response over `body` (the Worker adds the CORS headers).
pub(crate) fn response(body: StreamBody) -> Result<Response, Error> {
    ResponseBuilder::new()
        .with_header("content-type", "text/event-stream; charset=utf-8")
        .and_then(|r| r.with_header("cache-control", "no-cache"))
        .and_then(|r| r.from_stream(body))
        .map_err(http::internal)
}
