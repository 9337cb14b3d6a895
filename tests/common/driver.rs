//! The tests' own AMI connection (user `driver`): places calls, changes device states, and asks
//! Asterisk for the truth with QueueStatus. Built on the crate's public codec.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use queuebridge::ami::demux::{Demux, Reply, Routed};
use queuebridge::ami::{AmiCodec, Frame, Message};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

use super::asterisk::SECRET;

pub struct Driver {
    io: Framed<TcpStream, AmiCodec>,
    demux: Demux,
    next: u64,
}

impl Driver {
    pub async fn connect(port: u16) -> Self {
        Self::connect_within(port, Duration::from_secs(30)).await
    }

    /// Like [`Driver::connect`], waiting up to `boot` for Asterisk to be fully booted (40,000
    /// queues take it minutes).
    pub async fn connect_within(port: u16, boot: Duration) -> Self {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect AMI");
        let mut d = Driver {
            io: Framed::new(stream, AmiCodec::default()),
            demux: Demux::default(),
            next: 0,
        };
        // System events until FullyBooted (sent at login once Asterisk is up): the AMI port
        // opens before every module (func_devstate …) is loaded.
        let login = Message::action("Login")
            .with("Username", "driver")
            .with("Secret", SECRET)
            .with("Events", "system");
        let r = d.send(login).await;
        assert!(r.is_success(), "driver login: {:?}", r.response);
        let booted = async {
            loop {
                match d.io.next().await {
                    Some(Ok(Frame::Message(m))) if m.event_name() == Some("FullyBooted") => break,
                    Some(Ok(_)) => {}
                    other => panic!("driver connection ended: {other:?}"),
                }
            }
        };
        tokio::time::timeout(boot, booted)
            .await
            .expect("Asterisk fully booted");
        let r = d
            .send(Message::action("Events").with("EventMask", "off"))
            .await;
        assert!(r.is_success(), "events off: {:?}", r.response);
        d
    }

    /// Sends an action and returns its whole reply.
    pub async fn send(&mut self, mut action: Message) -> Reply {
        self.next += 1;
        let id = format!("drv{}", self.next);
        action.push("ActionID", &id);
        self.io.send(&action).await.expect("send action");
        let fut = async {
            loop {
                match self.io.next().await {
                    Some(Ok(Frame::Message(m))) => {
                        if let Routed::Reply { action_id, reply } = self.demux.push(m) {
                            if action_id == id {
                                return reply;
                            }
                        }
                    }
                    Some(Ok(_)) => {}
                    other => panic!("driver connection ended: {other:?}"),
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(15), fut)
            .await
            .expect("driver action timed out")
    }

    /// Runs a CLI command.
    pub async fn command(&mut self, cmd: &str) -> Reply {
        self.send(Message::action("Command").with("Command", cmd))
            .await
    }

    /// Sets a `Custom:` device state (`NOT_INUSE`, `INUSE`, `UNAVAILABLE` …).
    pub async fn devstate(&mut self, device: &str, state: &str) {
        let r = self
            .send(
                Message::action("Setvar")
                    .with("Variable", &format!("DEVICE_STATE(Custom:{device})"))
                    .with("Value", state),
            )
            .await;
        assert!(r.is_success(), "devstate: {:?}", r.response);
    }

    /// How an agent behaves when rung (see asterisk-conf/extensions.conf).
    pub async fn agent_mode(&mut self, agent: &str, mode: Option<&str>) {
        let cmd = match mode {
            Some(m) => format!("database put qb mode_{agent} {m}"),
            None => format!("database del qb mode_{agent}"),
        };
        self.command(&cmd).await;
    }

    /// Places a caller into `queue`: `patience` seconds of talk after answer, `ring_timeout`
    /// seconds before the caller gives up waiting (abandon), optional priority.
    pub async fn call(
        &mut self,
        queue: &str,
        cid: (&str, &str),
        patience: u32,
        ring_timeout: u32,
        prio: Option<i64>,
    ) {
        let prio = prio.map(|p| p.to_string());
        let vars: Vec<(&str, &str)> = prio.iter().map(|p| ("PRIO", p.as_str())).collect();
        self.call_with(queue, cid, patience, ring_timeout, &vars)
            .await
    }

    /// Like [`Driver::call`], with inherited channel variables for the callers context
    /// (`PRIO`, `QTIMEOUT`, `PRIVATE`; see asterisk-conf/extensions.conf).
    pub async fn call_with(
        &mut self,
        queue: &str,
        cid: (&str, &str),
        patience: u32,
        ring_timeout: u32,
        vars: &[(&str, &str)],
    ) {
        let mut a = Message::action("Originate")
            .with("Channel", &format!("Local/{queue}@callers"))
            .with("Application", "Wait")
            .with("Data", &patience.to_string())
            .with("Async", "true")
            .with("Timeout", &(ring_timeout * 1000).to_string())
            .with("CallerID", &format!("\"{}\" <{}>", cid.1, cid.0));
        for (name, value) in vars {
            a.push("Variable", &format!("_{name}={value}"));
        }
        let r = self.send(a).await;
        assert!(r.is_success(), "originate: {:?}", r.response);
    }

    /// Asterisk's own QueueStatus for one queue.
    pub async fn queue_status(&mut self, queue: &str) -> Vec<Message> {
        let r = self
            .send(Message::action("QueueStatus").with("Queue", queue))
            .await;
        assert!(r.is_success(), "QueueStatus: {:?}", r.response);
        r.items
    }

    /// The QueueMember item of `interface` in Asterisk's QueueStatus of `queue`.
    pub async fn member(&mut self, queue: &str, interface: &str) -> Option<Message> {
        self.queue_status(queue)
            .await
            .into_iter()
            .find(|m| m.event_name() == Some("QueueMember") && m.get("Location") == Some(interface))
    }
}
