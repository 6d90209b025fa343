//! A fleet worker's checkpoints also trade computer popularity with the
//! other workers ([`crate::state::HostShare`]): the shares of the shards
//! it holds go out, the other shards' come in and count from then on.

use std::io;

use super::Pipeline;
use crate::state::HostShare;

/// Where a fleet's workers publish and read each shard's host shares.
pub trait HostExchange {
    /// The shards this worker holds: shares are published one list per
    /// shard, in this order.
    fn shards(&self) -> usize;
    /// Which of them a user's events come from (`None`: none of them).
    fn shard_of(&self, user: &str) -> Option<usize>;
    /// Publishes this worker's shares and returns the latest shares of
    /// every shard it does not hold.
    fn exchange(&mut self, shares: Vec<Vec<HostShare>>) -> io::Result<Vec<HostShare>>;
}

impl<'o> Pipeline<'o> {
    /// Trades host shares at every checkpoint (and once now).
    pub fn share_hosts(&mut self, exchange: &'o mut dyn HostExchange) {
        self.host_exchange = Some(exchange);
        self.exchange_hosts();
    }

    /// Publishes this worker's shares and takes in the others'. A failed
    /// trade is logged and the others' last shares keep counting: the
    /// computer features are then staler, not wrong by more.
    pub(super) fn exchange_hosts(&mut self) {
        let Some(exchange) = self.host_exchange.as_deref_mut() else {
            return;
        };
        let started = std::time::Instant::now();
        let users = &self.users;
        let computers = &self.computers;
        let shares = self.state.host_shares(
            self.closed_through.max(0),
            exchange.shards(),
            &|user| exchange.shard_of(users.name(user)),
            &|computer| computers.name(computer).to_string(),
        );
        let published: usize = shares.iter().map(Vec::len).sum();
        match exchange.exchange(shares) {
            Ok(others) => {
                let computers = &mut self.computers;
                self.state
                    .set_shared_hosts(&others, |name| computers.intern(name.as_bytes()).0);
                tracing::debug!(
                    published,
                    received = others.len(),
                    ms = started.elapsed().as_millis() as u64,
                    "host shares traded"
                );
            }
            Err(error) => {
                tracing::warn!(%error, "cannot trade host shares with the fleet; the others' last ones keep counting");
            }
        }
    }
}
