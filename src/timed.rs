//! Commands with a deadline after them: pause with an automatic unpause, log out with an
//! automatic log-in (Yeastar's `max_threshold_for_pause_time` and
//! `max_threshold_for_logout_time`). The command runs through [`Commands`] as any other; the
//! deadline is kept by [`Deadlines`], which fires it, persisted across restarts. Any front end
//! may offer them; today Yeastar's does.

use crate::access::{Principal, User};
use crate::command::{Command, CommandError, Commands};
use crate::deadlines::{Deadlines, Due, Which};
use crate::hub::Hub;

/// The parts a timed command needs, borrowed for one request.
pub struct Timed<'a> {
    pub commands: &'a Commands,
    pub hub: &'a Hub,
    pub deadlines: &'a Deadlines,
}

impl Timed<'_> {
    /// Runs one command for `who` on `agent`'s server.
    async fn run(
        &self,
        who: &Principal,
        agent: &User,
        command: Command,
    ) -> Result<(), CommandError> {
        self.commands
            .execute(who, &agent.server, command)
            .await
            .map(|_| ())
    }

    /// The state's sequence number now: changes after it are news to a deadline set now.
    fn seq(&self) -> u64 {
        self.hub.read(|s| s.seq)
    }

    /// The queues `interface` is a member of on `server` (only those it is a dynamic member of
    /// with `dynamic_only`).
    pub fn member_queues(&self, server: &str, interface: &str, dynamic_only: bool) -> Vec<String> {
        self.hub.read(|s| {
            s.servers.get(server).map_or_else(Vec::new, |srv| {
                srv.queues
                    .values()
                    .filter(|q| {
                        q.members
                            .get(interface)
                            .is_some_and(|m| !dynamic_only || !m.membership.is_static())
                    })
                    .map(|q| q.name.to_string())
                    .collect()
            })
        })
    }

    /// Pauses or unpauses `agent` in `queues` (`None`: every queue it is a member of); a pause
    /// with `unpause_after` seconds sets the unpause deadline of each, anything else clears it.
    pub async fn pause(
        &self,
        who: &Principal,
        agent: &User,
        queues: Option<Vec<String>>,
        paused: bool,
        reason: &str,
        unpause_after: u64,
    ) -> Result<(), CommandError> {
        let command = |queue| Command::Pause {
            queue,
            interface: agent.interface.clone(),
            paused,
            reason: if paused {
                reason.to_owned()
            } else {
                String::new()
            },
        };
        let queues = match queues {
            Some(qs) => {
                for q in &qs {
                    self.run(who, agent, command(Some(q.clone()))).await?;
                }
                qs
            }
            None => {
                self.run(who, agent, command(None)).await?;
                self.member_queues(&agent.server, &agent.interface, false)
            }
        };
        let seq = self.seq();
        let (server, iface) = (&agent.server, &agent.interface);
        for q in &queues {
            if paused && unpause_after > 0 {
                self.deadlines
                    .set(server, q, iface, Due::Unpause, unpause_after, seq);
            } else {
                self.deadlines.cancel(server, q, iface, Which::Pause);
            }
        }
        Ok(())
    }

    /// Logs `agent` in to `queue`, paused with `paused`'s reason, unpaused after
    /// `unpause_after` seconds (0: never); a pending relogin there is dropped.
    pub async fn login(
        &self,
        who: &Principal,
        agent: &User,
        queue: &str,
        paused: Option<String>,
        unpause_after: u64,
    ) -> Result<(), CommandError> {
        let (server, iface) = (agent.server.as_str(), agent.interface.as_str());
        let pause = paused.is_some();
        self.run(who, agent, Command::login(agent, queue, None, paused))
            .await?;
        self.deadlines.cancel(server, queue, iface, Which::Logout);
        if pause && unpause_after > 0 {
            self.deadlines.set(
                server,
                queue,
                iface,
                Due::Unpause,
                unpause_after,
                self.seq(),
            );
        }
        Ok(())
    }

    /// Logs `agent` out of `queue`, and back in after `relogin_after` seconds (0: never) as the
    /// member was: name, state interface and penalty. A pending unpause there is dropped.
    pub async fn logout(
        &self,
        who: &Principal,
        agent: &User,
        queue: &str,
        relogin_after: u64,
    ) -> Result<(), CommandError> {
        let (server, iface) = (agent.server.as_str(), agent.interface.as_str());
        let member = self
            .hub
            .read(|s| s.queue(server, queue)?.members.get(iface).cloned());
        let relogin = Due::Relogin {
            member_name: member
                .as_ref()
                .map_or(agent.display_name.clone(), |m| m.name.to_string()),
            state_interface: member.as_ref().map_or(agent.state_interface.clone(), |m| {
                m.state_interface.to_string()
            }),
            penalty: member.as_ref().map_or(0, |m| m.penalty),
        };
        let command = Command::Logout {
            queue: queue.to_owned(),
            interface: iface.to_owned(),
        };
        self.run(who, agent, command).await?;
        self.deadlines.cancel(server, queue, iface, Which::Pause);
        if relogin_after > 0 {
            self.deadlines
                .set(server, queue, iface, relogin, relogin_after, self.seq());
        }
        Ok(())
    }
}
