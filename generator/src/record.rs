//! The full LANL record: besides who logged on where and when, the account
//! and computer the logon came from, its logon type and authentication
//! package, and whether it succeeded. `gen --record full` writes
//! `time,src_user@domain,dst_user@domain,src_computer,dst_computer,auth_type,logon_type,orientation,success|fail`
//! lines, as the LANL 2015 set's `auth.txt` has them.
//!
//! How a background logon is made depends on the account and the computer,
//! and stays the same for the pair (a person RDPs to the same server each
//! time): at their own workstation (the first non-hub computer they used,
//! on their first day) they log on at the console; elsewhere mostly over the network from that
//! workstation, now and then by remote desktop from it or at that
//! computer's console; round-the-clock service-like accounts log on as a
//! service or batch job on the computer itself, and accounts without a
//! workstation of their own over the network on the computer itself (as
//! many of LANL's logons name the destination as their source). People mistype passwords:
//! an interactive logon fails first now and then, in the same second.
//! Campaigns say how their logons are made ([`Means`]) in
//! [`crate::campaigns`].

use std::fmt;
use std::str::FromStr;

use crate::DAY;
use crate::model::{Graph, Rhythm};

/// Which record `gen` writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Record {
    /// `time,user,computer`: successful logons only.
    #[default]
    Lanl,
    /// The nine-field LANL 2015 record, failures included.
    Full,
}

impl Record {
    pub fn as_str(self) -> &'static str {
        match self {
            Record::Lanl => "lanl",
            Record::Full => "full",
        }
    }
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Record {
    type Err = String;
    fn from_str(s: &str) -> Result<Record, String> {
        match s {
            "lanl" => Ok(Record::Lanl),
            "full" => Ok(Record::Full),
            _ => Err(format!("unknown record `{s}` (records: lanl, full)")),
        }
    }
}

/// The domain every account of the generated organisation is in.
pub const DOMAIN: &str = "DOM1";

/// Where a logon came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Origin {
    /// The account's own workstation.
    Home,
    /// This computer.
    Computer(u32),
    /// The computer logged on to (at its console, or a service on it).
    Itself,
}

/// A Windows logon type, by its LANL name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogonKind {
    Interactive,
    Network,
    Batch,
    Service,
    RemoteInteractive,
}

impl LogonKind {
    fn as_str(self) -> &'static str {
        match self {
            LogonKind::Interactive => "Interactive",
            LogonKind::Network => "Network",
            LogonKind::Batch => "Batch",
            LogonKind::Service => "Service",
            LogonKind::RemoteInteractive => "RemoteInteractive",
        }
    }

    /// Whether a person types a password for it.
    fn is_typed(self) -> bool {
        matches!(self, LogonKind::Interactive | LogonKind::RemoteInteractive)
    }
}

/// An authentication package, by its LANL name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Auth {
    Kerberos,
    Ntlm,
    Negotiate,
}

impl Auth {
    fn as_str(self) -> &'static str {
        match self {
            Auth::Kerberos => "Kerberos",
            Auth::Ntlm => "NTLM",
            Auth::Negotiate => "Negotiate",
        }
    }
}

/// How a logon was made: what the full record says beyond who, where and
/// when.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Means {
    pub origin: Origin,
    pub logon: LogonKind,
    pub auth: Auth,
    pub failed: bool,
}

impl Means {
    pub const fn new(origin: Origin, logon: LogonKind, auth: Auth) -> Means {
        Means {
            origin,
            logon,
            auth,
            failed: false,
        }
    }
}

/// Share of typed (interactive) logons that fail once first: a mistyped
/// password.
pub const TYPO_SHARE: f64 = 0.03;

/// Each account's own workstation: the first computer it used that is not
/// a hub, if it used it on its first day.
pub struct Homes(Vec<Option<u32>>);

impl Homes {
    pub fn of(graph: &Graph, users: u32, extra: &[(u32, u32)]) -> Homes {
        let mut homes: Vec<Option<u32>> = graph
            .pairs
            .iter()
            .map(|p| {
                let mut order: Vec<(u32, u32)> = p
                    .first_use
                    .iter()
                    .zip(&p.computers)
                    .filter(|&(_, &c)| c >= graph.hubs)
                    .map(|(&t, &c)| (t, c))
                    .collect();
                order.sort_unstable();
                // A workstation is one used from the account's first day;
                // an account without one logs on over the network.
                let first = p.first_use.iter().min().copied().unwrap_or(0);
                order
                    .first()
                    .filter(|&&(t, _)| t < first + DAY)
                    .map(|&(_, c)| c)
            })
            .collect();
        homes.resize(users.max(graph.users) as usize, None);
        for &(user, computer) in extra {
            homes[user as usize] = Some(computer);
        }
        Homes(homes)
    }

    pub fn get(&self, user: u32) -> Option<u32> {
        self.0.get(user as usize).copied().flatten()
    }
}

/// How `user` usually logs on to `computer` in the background activity:
/// the same for the pair every time (drawn from a hash of the pair).
pub fn background(graph: &Graph, homes: &Homes, seed: u64, user: u32, computer: u32) -> Means {
    let h = mix(seed ^ (u64::from(user) << 32) ^ u64::from(computer));
    let pick = h % 100;
    let auth = match (h >> 8) % 100 {
        0..80 => Auth::Kerberos,
        80..92 => Auth::Ntlm,
        _ => Auth::Negotiate,
    };
    let steady = graph
        .rhythms
        .get(user as usize)
        .is_some_and(|&r| r == Rhythm::Steady);
    if steady {
        let logon = if pick < 35 {
            LogonKind::Batch
        } else {
            LogonKind::Service
        };
        return Means::new(Origin::Itself, logon, Auth::Negotiate);
    }
    let Some(home) = homes.get(user) else {
        return Means::new(Origin::Itself, LogonKind::Network, auth);
    };
    if home == computer {
        return Means::new(Origin::Itself, LogonKind::Interactive, auth);
    }
    if computer < graph.hubs {
        return Means::new(Origin::Home, LogonKind::Network, auth);
    }
    match pick {
        0..88 => Means::new(Origin::Home, LogonKind::Network, auth),
        88..96 => Means::new(Origin::Home, LogonKind::RemoteInteractive, auth),
        _ => Means::new(Origin::Itself, LogonKind::Interactive, auth),
    }
}

/// Whether this logon is one a person types a password for, and so may
/// fail first.
pub fn may_mistype(means: &Means) -> bool {
    means.logon.is_typed() && !means.failed
}

/// Writes one full record line.
pub fn write_line(
    buf: &mut Vec<u8>,
    time: &[u8],
    user: &[u8],
    source: &[u8],
    computer: &[u8],
    means: &Means,
) {
    buf.extend_from_slice(time);
    buf.push(b',');
    for _ in 0..2 {
        buf.extend_from_slice(user);
        buf.push(b'@');
        buf.extend_from_slice(DOMAIN.as_bytes());
        buf.push(b',');
    }
    buf.extend_from_slice(source);
    buf.push(b',');
    buf.extend_from_slice(computer);
    buf.push(b',');
    buf.extend_from_slice(means.auth.as_str().as_bytes());
    buf.push(b',');
    buf.extend_from_slice(means.logon.as_str().as_bytes());
    buf.extend_from_slice(b",LogOn,");
    buf.extend_from_slice(if means.failed { b"Fail" } else { b"Success" });
    buf.push(b'\n');
}

/// SplitMix64's finaliser: a well-spread hash of a number.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}
