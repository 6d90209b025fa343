//! What a richer record says about a logon beyond who, where and when: the
//! source computer and account it came from, the logon type, the
//! authentication package, and whether it succeeded (with the reason when
//! it failed). Every field is optional: a LANL `time,user,computer` line has
//! none of them, and a missing field stays missing rather than guessed.
//!
//! Codes follow Windows and OCSF where those agree: [`LogonType`] is the
//! Windows logon type number, which OCSF's `logon_type_id` uses too;
//! [`Outcome`] is OCSF's `status_id`. [`AuthPackage`] and
//! [`FailureReason`] are small sets of our own, mapped from each format's
//! values in `docs/formats.md`.

use serde::{Deserialize, Serialize};

use crate::names::{Interner, NameId};

/// The Windows logon type (`LogonType` of events 4624/4625; OCSF
/// `logon_type_id`). 0 when the record does not say.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub struct LogonType(pub u8);

impl LogonType {
    pub const UNKNOWN: LogonType = LogonType(0);
    /// OCSF only: the system itself.
    pub const SYSTEM: LogonType = LogonType(1);
    pub const INTERACTIVE: LogonType = LogonType(2);
    pub const NETWORK: LogonType = LogonType(3);
    pub const BATCH: LogonType = LogonType(4);
    pub const SERVICE: LogonType = LogonType(5);
    pub const UNLOCK: LogonType = LogonType(7);
    pub const NETWORK_CLEARTEXT: LogonType = LogonType(8);
    pub const NEW_CREDENTIALS: LogonType = LogonType(9);
    pub const REMOTE_INTERACTIVE: LogonType = LogonType(10);
    pub const CACHED_INTERACTIVE: LogonType = LogonType(11);
    pub const CACHED_REMOTE_INTERACTIVE: LogonType = LogonType(12);
    pub const CACHED_UNLOCK: LogonType = LogonType(13);
    /// OCSF's "other".
    pub const OTHER: LogonType = LogonType(99);

    /// Every named type, with the name the tables and the JSON form use.
    const NAMES: [(LogonType, &'static str); 14] = [
        (LogonType::UNKNOWN, "unknown"),
        (LogonType::SYSTEM, "system"),
        (LogonType::INTERACTIVE, "interactive"),
        (LogonType::NETWORK, "network"),
        (LogonType::BATCH, "batch"),
        (LogonType::SERVICE, "service"),
        (LogonType::UNLOCK, "unlock"),
        (LogonType::NETWORK_CLEARTEXT, "network_cleartext"),
        (LogonType::NEW_CREDENTIALS, "new_credentials"),
        (LogonType::REMOTE_INTERACTIVE, "remote_interactive"),
        (LogonType::CACHED_INTERACTIVE, "cached_interactive"),
        (
            LogonType::CACHED_REMOTE_INTERACTIVE,
            "cached_remote_interactive",
        ),
        (LogonType::CACHED_UNLOCK, "cached_unlock"),
        (LogonType::OTHER, "other"),
    ];

    /// A Windows or OCSF logon type number; one neither defines is `OTHER`.
    pub fn from_number(number: u64) -> LogonType {
        match u8::try_from(number) {
            Ok(n) if Self::NAMES.iter().any(|(t, _)| t.0 == n) => LogonType(n),
            _ => LogonType::OTHER,
        }
    }

    /// By the name [`LogonType::name`] gives, or (LANL's `logon_type`
    /// column) by Windows' own: `Interactive`, `Network`, `Batch`,
    /// `Service`, `Unlock`, `NetworkCleartext`, `NewCredentials`,
    /// `RemoteInteractive`, `CachedInteractive`; a number as text too.
    /// LANL's `?` is unknown.
    pub fn from_name(name: &str) -> Option<LogonType> {
        if name == "?" || name.is_empty() {
            return Some(LogonType::UNKNOWN);
        }
        if let Ok(number) = name.parse::<u64>() {
            return Some(LogonType::from_number(number));
        }
        let wanted = name.bytes().filter(|&b| b != b'_');
        let found = Self::NAMES.iter().find(|(_, known)| {
            known
                .bytes()
                .filter(|&b| b != b'_')
                .map(|b| b.to_ascii_lowercase())
                .eq(wanted.clone().map(|b| b.to_ascii_lowercase()))
        });
        found.map(|&(t, _)| t)
    }

    pub fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(t, _)| *t == self)
            .map_or("other", |(_, name)| name)
    }

    pub fn is_known(self) -> bool {
        self != LogonType::UNKNOWN
    }
}

/// The authentication package or protocol. `Unknown` when not said.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum AuthPackage {
    #[default]
    Unknown = 0,
    /// NTLM, and Windows' `MICROSOFT_AUTHENTICATION_PACKAGE_V1_0` (MSV1_0),
    /// the package that carries it.
    Ntlm = 1,
    Kerberos = 2,
    /// Windows' `Negotiate`: Kerberos when it can, NTLM when not.
    Negotiate = 3,
    /// Anything else named (Digest, SAML, OAuth, RADIUS, ...).
    Other = 4,
}

impl AuthPackage {
    /// From a package or protocol name as Windows, LANL or OCSF write it
    /// (case does not matter; `?` and empty are unknown).
    pub fn from_name(name: &str) -> AuthPackage {
        let lower = name.trim().to_ascii_lowercase();
        match lower.as_str() {
            "" | "?" | "-" | "unknown" => AuthPackage::Unknown,
            "ntlm"
            | "ntlm v1"
            | "ntlm v2"
            | "ntlmv1"
            | "ntlmv2"
            | "ntlm v2 (ntlmv2)"
            | "microsoft_authentication_package_v1_0"
            | "msv1_0" => AuthPackage::Ntlm,
            "kerberos" => AuthPackage::Kerberos,
            "negotiate" => AuthPackage::Negotiate,
            _ => AuthPackage::Other,
        }
    }

    /// From OCSF's `auth_protocol_id` (1 NTLM, 2 Kerberos, 0 unknown).
    pub fn from_ocsf(id: u64) -> AuthPackage {
        match id {
            0 => AuthPackage::Unknown,
            1 => AuthPackage::Ntlm,
            2 => AuthPackage::Kerberos,
            _ => AuthPackage::Other,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            AuthPackage::Unknown => "unknown",
            AuthPackage::Ntlm => "ntlm",
            AuthPackage::Kerberos => "kerberos",
            AuthPackage::Negotiate => "negotiate",
            AuthPackage::Other => "other",
        }
    }
}

/// Whether the logon succeeded (OCSF `status_id`: 0 unknown, 1 success, 2
/// failure). A record that does not say is taken as it always was: a logon
/// that happened, but `Unknown`, not `Success`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum Outcome {
    #[default]
    Unknown = 0,
    Success = 1,
    Failure = 2,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Unknown => "unknown",
            Outcome::Success => "success",
            Outcome::Failure => "failure",
        }
    }

    /// `success`/`failure` (ECS `event.outcome`, LANL `Success`/`Fail`,
    /// OCSF `status`), any case; anything else unknown.
    pub fn from_name(name: &str) -> Outcome {
        let lower = name.trim().to_ascii_lowercase();
        match lower.as_str() {
            "success" | "succeeded" | "ok" => Outcome::Success,
            "failure" | "fail" | "failed" => Outcome::Failure,
            _ => Outcome::Unknown,
        }
    }
}

/// Why a logon failed, when the record says (Windows event 4625's
/// `SubStatus`, or `Status` when that is all there is; OCSF
/// `status_code`/`status_detail`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum FailureReason {
    /// Not a failure, or not said why.
    #[default]
    Unknown = 0,
    /// Wrong password for an account that exists (0xC000006A).
    BadPassword = 1,
    /// No such account (0xC0000064): what guessing names looks like.
    NoSuchUser = 2,
    /// Locked out (0xC0000234).
    Locked = 3,
    /// Disabled (0xC0000072) or expired account (0xC0000193).
    Disabled = 4,
    /// The password has expired or must change (0xC0000071, 0xC0000224).
    PasswordExpired = 5,
    /// Outside allowed hours or workstations, or the logon type is not
    /// granted (0xC000006F, 0xC0000070, 0xC000015B).
    Restricted = 6,
    /// Any other reason given.
    Other = 7,
}

impl FailureReason {
    /// From an NTSTATUS code as Windows writes it (`0xC000006A`, any case).
    pub fn from_ntstatus(code: &str) -> FailureReason {
        let digits = code
            .trim()
            .trim_start_matches("0x")
            .trim_start_matches("0X");
        if digits.is_empty() {
            return FailureReason::Unknown;
        }
        match u32::from_str_radix(digits, 16) {
            Ok(0xC000_006A) => FailureReason::BadPassword,
            Ok(0xC000_0064) => FailureReason::NoSuchUser,
            Ok(0xC000_0234) => FailureReason::Locked,
            Ok(0xC000_0072 | 0xC000_0193) => FailureReason::Disabled,
            Ok(0xC000_0071 | 0xC000_0224) => FailureReason::PasswordExpired,
            Ok(0xC000_006F | 0xC000_0070 | 0xC000_015B) => FailureReason::Restricted,
            _ => FailureReason::Other,
        }
    }

    /// From a reason in words (OCSF `status_detail`, our JSON form): the
    /// names [`FailureReason::name`] gives, or the NTSTATUS code.
    pub fn from_name(name: &str) -> FailureReason {
        let lower = name.trim().to_ascii_lowercase();
        match lower.as_str() {
            "" | "unknown" => FailureReason::Unknown,
            "bad_password" => FailureReason::BadPassword,
            "no_such_user" => FailureReason::NoSuchUser,
            "locked" => FailureReason::Locked,
            "disabled" => FailureReason::Disabled,
            "password_expired" => FailureReason::PasswordExpired,
            "restricted" => FailureReason::Restricted,
            s if s.starts_with("0xc") => FailureReason::from_ntstatus(s),
            _ => FailureReason::Other,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            FailureReason::Unknown => "unknown",
            FailureReason::BadPassword => "bad_password",
            FailureReason::NoSuchUser => "no_such_user",
            FailureReason::Locked => "locked",
            FailureReason::Disabled => "disabled",
            FailureReason::PasswordExpired => "password_expired",
            FailureReason::Restricted => "restricted",
            FailureReason::Other => "other",
        }
    }
}

/// The fields a record may add, with names still as the input wrote them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordDetail<'a> {
    /// The computer the logon came from (`src_computer`, `source.address`,
    /// `WorkstationName`).
    pub source_computer: Option<&'a [u8]>,
    /// The account that asked, when it is not the one logged on to (LANL's
    /// `src_user`, Windows' `SubjectUserName` of event 4648).
    pub source_user: Option<&'a [u8]>,
    pub logon_type: LogonType,
    pub auth_package: AuthPackage,
    pub outcome: Outcome,
    pub failure_reason: FailureReason,
}

impl RecordDetail<'_> {
    /// What `event_id` derivation hashes for it: the same as for its
    /// interned [`Detail`].
    pub fn feed_id(&self, feed: &mut dyn FnMut(&[u8])) {
        if self.is_empty() {
            return;
        }
        let codes = [
            self.logon_type.0,
            self.auth_package as u8,
            self.outcome as u8,
            self.failure_reason as u8,
        ];
        feed_id(self.source_computer, self.source_user, codes, feed);
    }

    /// See [`Detail::coded_fields`].
    pub fn coded_fields(&self) -> [(&'static str, Option<&'static str>); 4] {
        coded_fields(
            self.logon_type,
            self.auth_package,
            self.outcome,
            self.failure_reason,
        )
    }

    /// Whether the record said anything beyond who, where and when.
    pub fn is_empty(&self) -> bool {
        self.source_computer.is_none()
            && self.source_user.is_none()
            && self.logon_type == LogonType::UNKNOWN
            && self.auth_package == AuthPackage::Unknown
            && self.outcome == Outcome::Unknown
            && self.failure_reason == FailureReason::Unknown
    }
}

/// [`RecordDetail`] with its names interned: part of the engine's event.
/// 12 bytes; all zero (and `None`) for a record that says nothing more.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Detail {
    /// Interned among the computers.
    pub source_computer: Option<NameId>,
    /// Interned among the users.
    pub source_user: Option<NameId>,
    pub logon_type: LogonType,
    pub auth_package: AuthPackage,
    pub outcome: Outcome,
    pub failure_reason: FailureReason,
}

impl Detail {
    pub fn is_empty(&self) -> bool {
        *self == Detail::default()
    }

    pub fn is_failure(&self) -> bool {
        self.outcome == Outcome::Failure
    }

    /// The order of two details of events at the same time, user and
    /// computer: by name, not id (ids depend on arrival order).
    pub fn cmp_by_names(
        &self,
        other: &Detail,
        users: &Interner,
        computers: &Interner,
    ) -> std::cmp::Ordering {
        let names = |a: Option<NameId>, b: Option<NameId>, interner: &Interner| match (a, b) {
            (Some(a), Some(b)) => interner.cmp_names(a, b),
            (a, b) => a.is_some().cmp(&b.is_some()),
        };
        names(self.source_computer, other.source_computer, computers)
            .then_with(|| names(self.source_user, other.source_user, users))
            .then_with(|| self.logon_type.cmp(&other.logon_type))
            .then_with(|| self.auth_package.cmp(&other.auth_package))
            .then_with(|| self.outcome.cmp(&other.outcome))
            .then_with(|| self.failure_reason.cmp(&other.failure_reason))
    }

    /// What `event_id` derivation hashes after `time|user|computer` for a
    /// detailed record: `|source computer|source user|logon type|package|
    /// outcome|reason` (nothing for one without detail, so that a LANL
    /// record's id is unchanged).
    pub fn feed_id(&self, users: &Interner, computers: &Interner, feed: &mut dyn FnMut(&[u8])) {
        self.feed_id_named(|u| users.name(u), |c| computers.name(c), feed);
    }

    /// [`Detail::feed_id`] with the names looked up by `user` and
    /// `computer` (a table writer's own copy of the names).
    pub fn feed_id_named<'n>(
        &self,
        user: impl Fn(NameId) -> &'n str,
        computer: impl Fn(NameId) -> &'n str,
        feed: &mut dyn FnMut(&[u8]),
    ) {
        if self.is_empty() {
            return;
        }
        feed_id(
            self.source_computer.map(|c| computer(c).as_bytes()),
            self.source_user.map(|u| user(u).as_bytes()),
            self.codes(),
            feed,
        );
    }

    /// Logon type, package, outcome and reason as the JSON form and the
    /// tables name the field and the value (`None` where not said).
    pub fn coded_fields(&self) -> [(&'static str, Option<&'static str>); 4] {
        coded_fields(
            self.logon_type,
            self.auth_package,
            self.outcome,
            self.failure_reason,
        )
    }

    /// Logon type, package, outcome and reason as numbers.
    fn codes(&self) -> [u8; 4] {
        [
            self.logon_type.0,
            self.auth_package as u8,
            self.outcome as u8,
            self.failure_reason as u8,
        ]
    }
}

fn coded_fields(
    logon_type: LogonType,
    auth_package: AuthPackage,
    outcome: Outcome,
    failure_reason: FailureReason,
) -> [(&'static str, Option<&'static str>); 4] {
    [
        (
            "logon_type",
            logon_type.is_known().then(|| logon_type.name()),
        ),
        (
            "auth_package",
            (auth_package != AuthPackage::Unknown).then(|| auth_package.name()),
        ),
        (
            "outcome",
            (outcome != Outcome::Unknown).then(|| outcome.name()),
        ),
        (
            "failure_reason",
            (failure_reason != FailureReason::Unknown).then(|| failure_reason.name()),
        ),
    ]
}

/// `|source computer|source user|logon type|package|outcome|reason`.
fn feed_id(
    source_computer: Option<&[u8]>,
    source_user: Option<&[u8]>,
    codes: [u8; 4],
    feed: &mut dyn FnMut(&[u8]),
) {
    feed(b"|");
    feed(source_computer.unwrap_or_default());
    feed(b"|");
    feed(source_user.unwrap_or_default());
    let mut buf = itoa::Buffer::new();
    for code in codes {
        feed(b"|");
        feed(buf.format(code).as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logon_types_by_name_and_number() {
        assert_eq!(LogonType::from_name("Network"), Some(LogonType::NETWORK));
        assert_eq!(
            LogonType::from_name("RemoteInteractive"),
            Some(LogonType::REMOTE_INTERACTIVE)
        );
        assert_eq!(
            LogonType::from_name("remote_interactive"),
            Some(LogonType::REMOTE_INTERACTIVE)
        );
        assert_eq!(LogonType::from_name("?"), Some(LogonType::UNKNOWN));
        assert_eq!(
            LogonType::from_name("10"),
            Some(LogonType::REMOTE_INTERACTIVE)
        );
        assert_eq!(LogonType::from_name("Teleport"), None);
        assert_eq!(LogonType::from_number(6), LogonType::OTHER);
        assert_eq!(LogonType::REMOTE_INTERACTIVE.name(), "remote_interactive");
    }

    #[test]
    fn packages_outcomes_and_reasons() {
        assert_eq!(
            AuthPackage::from_name("MICROSOFT_AUTHENTICATION_PACKAGE_V1_0"),
            AuthPackage::Ntlm
        );
        assert_eq!(AuthPackage::from_name("Negotiate"), AuthPackage::Negotiate);
        assert_eq!(AuthPackage::from_name("?"), AuthPackage::Unknown);
        assert_eq!(AuthPackage::from_name("Digest"), AuthPackage::Other);
        assert_eq!(Outcome::from_name("Fail"), Outcome::Failure);
        assert_eq!(Outcome::from_name("Success"), Outcome::Success);
        assert_eq!(Outcome::from_name("maybe"), Outcome::Unknown);
        assert_eq!(
            FailureReason::from_ntstatus("0xC000006A"),
            FailureReason::BadPassword
        );
        assert_eq!(
            FailureReason::from_ntstatus("0xc0000064"),
            FailureReason::NoSuchUser
        );
        assert_eq!(
            FailureReason::from_ntstatus("0xC0000001"),
            FailureReason::Other
        );
        assert_eq!(FailureReason::from_name("locked"), FailureReason::Locked);
        use FailureReason::*;
        for reason in [
            Unknown,
            BadPassword,
            NoSuchUser,
            Locked,
            Disabled,
            PasswordExpired,
        ] {
            assert_eq!(FailureReason::from_name(reason.name()), reason);
        }
        assert_eq!(FailureReason::from_name(Restricted.name()), Restricted);
        assert_eq!(FailureReason::from_name(Other.name()), Other);
        for package in [
            AuthPackage::Unknown,
            AuthPackage::Ntlm,
            AuthPackage::Kerberos,
            AuthPackage::Negotiate,
            AuthPackage::Other,
        ] {
            assert_eq!(AuthPackage::from_name(package.name()), package);
        }
    }

    #[test]
    fn an_empty_detail_adds_nothing_to_the_id() {
        let (users, computers) = (Interner::default(), Interner::default());
        let fed = |detail: Detail| {
            let mut text = Vec::new();
            detail.feed_id(&users, &computers, &mut |b| text.extend_from_slice(b));
            String::from_utf8(text).unwrap()
        };
        assert_eq!(fed(Detail::default()), "");
        let failed = Detail {
            outcome: Outcome::Failure,
            ..Detail::default()
        };
        assert_eq!(fed(failed), "|||0|0|2|0");
    }
}
