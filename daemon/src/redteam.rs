//! LANL's red-team file as ground truth: `time,user@domain,source,destination`
//! lines (e.g. `150885,U620@DOM1,C17693,C1003`), each a logon the red team
//! made. `eval --input auth.txt --truth redteam.txt` matches alerts against
//! them as campaigns: an account's labelled logons, split where it rests a
//! day or more. Its computers are the destinations, its sources the
//! computers it came from that it never logged on to in the file.

use std::collections::BTreeMap;

use authpulse_generator::{Campaign, Kind};

/// A quiet this long ends one campaign of an account and starts the next.
pub const CAMPAIGN_GAP_S: u32 = 86_400;

#[derive(Debug, thiserror::Error)]
pub enum RedTeamError {
    #[error("line {line}: expected `time,user@domain,source,destination`, found {found} field(s)")]
    FieldCount { line: usize, found: usize },
    #[error("line {line}: `{time}` is not a time in seconds")]
    BadTime { line: usize, time: String },
    #[error("line {line}: an empty {field}")]
    Empty { line: usize, field: &'static str },
}

struct Logon<'a> {
    time: u32,
    source: &'a str,
    destination: &'a str,
}

/// The campaigns of the red-team lines `(line number, text)`, in order of
/// their start.
pub fn campaigns(lines: &[(usize, String)]) -> Result<Vec<Campaign>, RedTeamError> {
    let mut by_user: BTreeMap<&str, Vec<Logon<'_>>> = BTreeMap::new();
    for (line, text) in lines {
        let line = *line;
        let fields: Vec<&str> = text.trim().split(',').map(str::trim).collect();
        let [time, user, source, destination] = fields[..] else {
            return Err(RedTeamError::FieldCount {
                line,
                found: fields.len(),
            });
        };
        let time: u32 = time.parse().map_err(|_| RedTeamError::BadTime {
            line,
            time: time.chars().take(32).collect(),
        })?;
        for (field, value) in [
            ("user", user),
            ("source", source),
            ("destination", destination),
        ] {
            if value.is_empty() {
                return Err(RedTeamError::Empty { line, field });
            }
        }
        by_user.entry(user).or_default().push(Logon {
            time,
            source,
            destination,
        });
    }
    let mut campaigns = Vec::new();
    for (user, mut logons) in by_user {
        logons.sort_by_key(|l| l.time);
        let mut start = 0;
        for i in 1..=logons.len() {
            let ends = i == logons.len() || logons[i].time - logons[i - 1].time >= CAMPAIGN_GAP_S;
            if ends {
                campaigns.push(campaign(user, &logons[start..i]));
                start = i;
            }
        }
    }
    campaigns.sort_by_key(|c| (c.start, c.users[0].clone()));
    for (i, c) in campaigns.iter_mut().enumerate() {
        c.id = i as u32 + 1;
    }
    Ok(campaigns)
}

fn campaign(user: &str, logons: &[Logon<'_>]) -> Campaign {
    let mut computers: Vec<String> = logons.iter().map(|l| l.destination.to_string()).collect();
    computers.sort();
    computers.dedup();
    let mut sources: Vec<String> = logons
        .iter()
        .map(|l| l.source.to_string())
        .filter(|s| computers.binary_search(s).is_err())
        .collect();
    sources.sort();
    sources.dedup();
    let (start, end) = (logons[0].time, logons[logons.len() - 1].time);
    Campaign {
        id: 0,
        kind: Kind::RedTeam,
        benign: false,
        users: vec![user.to_string()],
        description: format!(
            "red team: {user}, {} computer(s) from {} source(s), {} logons",
            computers.len(),
            sources.len(),
            logons.len()
        ),
        computers,
        target: None,
        sources,
        start,
        end,
        events: logons.len() as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<(usize, String)> {
        text.lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.to_string()))
            .collect()
    }

    #[test]
    fn an_accounts_logons_split_where_it_rests_a_day() {
        let found = campaigns(&lines(
            "150885,U620@DOM1,C17693,C1003\n\
             151036,U748@DOM1,C17693,C305\n\
             151648,U748@DOM1,C17693,C728\n\
             151993,U6115@DOM1,C17693,C1173\n\
             153792,U636@DOM1,C17693,C294\n\
             155219,U748@DOM1,C728,C5693\n\
             400000,U748@DOM1,C17693,C9\n",
        ))
        .unwrap();
        assert_eq!(found.len(), 5);
        let u748: Vec<&Campaign> = found.iter().filter(|c| c.users[0] == "U748@DOM1").collect();
        assert_eq!(u748.len(), 2, "a quiet of days ends a campaign");
        assert_eq!(u748[0].computers, ["C305", "C5693", "C728"]);
        assert_eq!(
            u748[0].sources,
            ["C17693"],
            "C728 was reached before it was a source"
        );
        assert_eq!(
            (u748[0].start, u748[0].end, u748[0].events),
            (151036, 155219, 3)
        );
        assert_eq!(found[0].users, ["U620@DOM1"]);
        assert!(found.iter().all(|c| c.kind == Kind::RedTeam && !c.benign));
        assert_eq!(
            found.iter().map(|c| c.id).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5]
        );
    }

    #[test]
    fn a_malformed_line_is_named() {
        let err = campaigns(&lines("1,U1@DOM1,C1,C2\n2,U1@DOM1,C1\n")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 2: expected `time,user@domain,source,destination`, found 3 field(s)"
        );
        let err = campaigns(&lines("soon,U1@DOM1,C1,C2\n")).unwrap_err();
        assert_eq!(err.to_string(), "line 1: `soon` is not a time in seconds");
    }
}
