//! How each of a campaign's logons is made, for the full record: where it
//! comes from (a foothold, the account's own desk), its logon type and
//! authentication package, and which fail.

use std::collections::BTreeSet;

use rand::Rng;

use super::{Kind, Planner};
use crate::record::{Auth, LogonKind, Means, Origin};

impl Planner<'_> {
    /// How each of a campaign's `events` (sorted) is made, and the
    /// computers it works from that are none of its accounts' own.
    /// Intruders work from a foothold (seven in ten; the rest from the
    /// stolen account's own workstation, as malware on it would), mostly
    /// over the network, now and then by remote desktop, often with NTLM
    /// (a stolen hash); a chain moves on from the computer it reached last.
    /// Benign cases log on as their accounts always do.
    pub(super) fn means<R: Rng>(
        &mut self,
        kind: Kind,
        events: &[(u32, u32, u32)],
        rng: &mut R,
    ) -> (Vec<Means>, Vec<u32>) {
        let failed = std::mem::take(&mut self.failed);
        let chosen = self.foothold.take();
        let mark = |mut m: Means, e: &(u32, u32, u32)| {
            m.failed = failed.contains(e);
            m
        };
        if kind.is_benign() {
            let means = events
                .iter()
                .map(|e| {
                    let m = match kind {
                        Kind::HelpDesk | Kind::DesktopSupport => {
                            Means::new(Origin::Home, LogonKind::RemoteInteractive, Auth::Kerberos)
                        }
                        Kind::NightlyScanner => {
                            // It lacks rights on some computers: a few
                            // of its logons fail every night.
                            let mut m = Means::new(Origin::Home, LogonKind::Network, Auth::Ntlm);
                            m.failed = rng.random_bool(0.04);
                            return m;
                        }
                        Kind::NewHire if self.homes.iter().any(|&(u, c)| (u, c) == (e.1, e.2)) => {
                            Means::new(Origin::Itself, LogonKind::Interactive, Auth::Kerberos)
                        }
                        Kind::RoamingAdmin if e.2 % 3 == 0 => {
                            Means::new(Origin::Home, LogonKind::RemoteInteractive, Auth::Kerberos)
                        }
                        _ => Means::new(Origin::Home, LogonKind::Network, Auth::Kerberos),
                    };
                    mark(m, e)
                })
                .collect();
            return (means, Vec::new());
        }
        let accounts: Vec<u32> = events
            .iter()
            .map(|e| e.1)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let start = events.first().map_or(0, |e| e.0);
        let single = accounts.len() == 1;
        let foothold = chosen.or_else(|| {
            if single && rng.random_bool(0.3) {
                None
            } else {
                self.pick_foothold(rng, start, &accounts)
            }
        });
        let origin = foothold.map_or(Origin::Home, Origin::Computer);
        let auth = if rng.random_bool(0.5) {
            Auth::Ntlm
        } else {
            Auth::Kerberos
        };
        let mut how_of: rustc_hash::FxHashMap<u32, Means> = Default::default();
        let mut last_reached = foothold;
        let means = events
            .iter()
            .map(|e| {
                let m = *how_of.entry(e.2).or_insert_with(|| {
                    let logon = if rng.random_bool(0.2) {
                        LogonKind::RemoteInteractive
                    } else {
                        LogonKind::Network
                    };
                    let m = match kind {
                        Kind::ServiceAtDesktop if rng.random_bool(0.5) => {
                            Means::new(Origin::Itself, LogonKind::Interactive, auth)
                        }
                        Kind::ServiceAtDesktop => {
                            Means::new(origin, LogonKind::RemoteInteractive, auth)
                        }
                        Kind::Chain => Means::new(
                            last_reached.map_or(Origin::Home, Origin::Computer),
                            logon,
                            auth,
                        ),
                        _ => Means::new(origin, logon, auth),
                    };
                    last_reached = Some(e.2);
                    m
                });
                mark(m, e)
            })
            .collect();
        (means, foothold.into_iter().collect())
    }
}
