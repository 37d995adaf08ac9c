//! Answers a window gives at most once, whichever way it goes away (a button, closing it, the
//! deadline, the agent closing it): the toolkit-free part of the consent dialog and of the
//! technician's message window, shared by the GTK (`ui/`) and Windows (`win/`) windows.

use crate::ipc::Ipc;
use crate::msg::{Msg, Post};
use std::cell::Cell;
use tether_protocol::consent::LocalRequest;

/// Makes sure a request is answered exactly once, whichever way the dialog goes away.
pub struct Decision {
    pub id: String,
    ipc: Ipc,
    post: Post,
    made: Cell<bool>,
}

impl Decision {
    pub fn new(id: String, ipc: Ipc, post: Post) -> Self {
        Decision {
            id,
            ipc,
            post,
            made: Cell::new(false),
        }
    }

    /// Sends `req` (if any) unless a decision was already made; true if this call decided.
    pub fn make(&self, req: Option<LocalRequest>) -> bool {
        if self.made.replace(true) {
            return false;
        }
        if let Some(req) = req {
            self.ipc.send(req);
        }
        self.post.send(Msg::ConsentClosed(self.id.clone()));
        true
    }

    /// Whether the request was answered (or closed elsewhere).
    pub fn is_made(&self) -> bool {
        self.made.get()
    }

    /// Closed elsewhere (the agent answered it, or it timed out): nothing more is sent.
    pub fn forget(&self) {
        self.made.set(true);
    }

    pub fn deny(&self) -> bool {
        self.make(Some(LocalRequest::Deny {
            id: self.id.clone(),
        }))
    }
}

/// Makes sure a message is answered at most once, whichever way the window goes away.
pub struct Answer {
    pub id: String,
    ipc: Ipc,
    post: Post,
    done: Cell<bool>,
}

impl Answer {
    pub fn new(id: String, ipc: Ipc, post: Post) -> Self {
        Answer {
            id,
            ipc,
            post,
            done: Cell::new(false),
        }
    }

    /// Replies with `text` (empty: no reply) unless already answered or closed; true if this
    /// call answered.
    pub fn reply(&self, text: String) -> bool {
        if self.done.replace(true) {
            return false;
        }
        self.ipc.send(LocalRequest::Reply {
            id: self.id.clone(),
            text,
        });
        self.post.send(Msg::MessageWindowClosed(self.id.clone()));
        true
    }

    /// Whether the message was answered (or closed elsewhere).
    pub fn is_done(&self) -> bool {
        self.done.get()
    }

    /// Closed elsewhere (the agent closed it): nothing more is sent.
    pub fn forget(&self) {
        self.done.set(true);
    }

    /// Gone without answering (the agent closed the message, or its time ran out).
    pub fn drop_silently(&self) {
        if !self.done.replace(true) {
            self.post.send(Msg::MessageWindowClosed(self.id.clone()));
        }
    }
}
