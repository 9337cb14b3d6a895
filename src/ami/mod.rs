//! The Asterisk Manager Interface: wire codec, message and event types, and the client.
//!
//! * [`message`] — one message as an ordered multimap of headers;
//! * [`codec`] — framing and the tokio-util `Decoder`/`Encoder`; [`parse`] holds the message grammar;
//! * [`event`] — typed queue events borrowed from a message;
//! * [`input`] — what the client hands the state task (events, snapshots, link changes);
//! * [`demux`] — routes replies and list items (`EventList`) to the action that asked for them;
//! * [`client`] — one resilient connection per Asterisk server: login, actions, keepalive,
//!   reconnect and resync.

pub mod client;
pub mod codec;
pub mod demux;
pub mod event;
pub mod input;
pub mod message;
pub(crate) mod parse;

pub use codec::{AmiCodec, Frame, Skip, DEFAULT_MAX_FRAME};
pub use event::Event;
pub use message::{Kind, Message};
