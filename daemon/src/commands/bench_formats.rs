//! `authpulse bench --format`: the generated LANL lines written again in
//! another input format, as large as the real thing (an OCSF Authentication
//! event as Security Lake stores it, a Winlogbeat 4624 document), then
//! parsed alone and run through the whole pipeline. The conversion is not
//! timed.

use std::time::Instant;

use authpulse_engine::event::TimeBase;
use authpulse_engine::input::{self, Format};
use memchr::memchr_iter;

/// `data` (LANL `time,user,computer` lines) as lines of `format`. Every
/// tenth event is a failure from another computer, so the richer fields
/// are exercised too.
pub fn convert(data: &[u8], format: Format, base: TimeBase) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() * 12);
    let mut start = 0;
    for (n, end) in memchr_iter(b'\n', data).enumerate() {
        let line = &data[start..end];
        start = end + 1;
        let Ok(text) = std::str::from_utf8(line) else {
            continue;
        };
        let mut fields = text.split(',');
        let (Some(time), Some(user), Some(computer)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let Ok(lanl) = time.parse::<i64>() else {
            continue;
        };
        let unix = base.to_unix(lanl);
        let failed = n % 10 == 9;
        let source = if failed { "C17693" } else { computer };
        let rendered = match format {
            Format::Csv | Format::Auto => format!("{lanl},{user},{computer}"),
            Format::LanlAuth => format!(
                "{lanl},{user}@DOM1,{user}@DOM1,{source},{computer},Kerberos,Network,LogOn,{}",
                if failed { "Fail" } else { "Success" }
            ),
            Format::Json => format!(
                r#"{{"event_time":"{}","user_id":"{user}","computer_id":"{computer}","src_computer_id":"{source}","logon_type":"network","auth_package":"kerberos","outcome":"{}"}}"#,
                authpulse_engine::event::format_time(unix),
                if failed { "failure" } else { "success" }
            ),
            Format::Ocsf => format!(
                r#"{{"class_uid":3002,"class_name":"Authentication","category_uid":3,"category_name":"Identity & Access Management","activity_id":1,"activity_name":"Logon","type_uid":300201,"type_name":"Authentication: Logon","severity_id":1,"severity":"Informational","time":{ms},"status_id":{status},"status":"{status_name}","logon_type_id":3,"logon_type":"Network","auth_protocol_id":2,"auth_protocol":"Kerberos","is_remote":true,"user":{{"name":"{user}","domain":"DOM1","uid":"S-1-5-21-3623811015-3361044348-30300820-{n}","type_id":1,"type":"User"}},"src_endpoint":{{"hostname":"{source}","ip":"10.20.30.40"}},"dst_endpoint":{{"hostname":"{computer}","ip":"10.20.40.50"}},"metadata":{{"uid":"{n:08x}-6c1e-4b7a-9a55-1e2f3a4b5c6d","version":"1.1.0","product":{{"name":"Security Lake","vendor_name":"AWS","version":"1.0"}},"log_name":"Security"}},"cloud":{{"provider":"AWS","region":"us-east-1","account":{{"uid":"123456789012"}}}}}}"#,
                ms = unix * 1000,
                status = if failed { 2 } else { 1 },
                status_name = if failed { "Failure" } else { "Success" },
            ),
            Format::Ecs => format!(
                r#"{{"@timestamp":"{}","ecs":{{"version":"8.11.0"}},"agent":{{"type":"winlogbeat","version":"8.11.0","name":"{computer}"}},"event":{{"kind":"event","category":["authentication"],"type":["start"],"action":"logged-in","code":"{}","outcome":"{}","provider":"Microsoft-Windows-Security-Auditing","module":"security"}},"user":{{"name":"{user}","domain":"DOM1","id":"S-1-5-21-3623811015-3361044348-30300820-1013"}},"host":{{"name":"{computer}","hostname":"{computer}","os":{{"family":"windows","platform":"windows"}}}},"source":{{"ip":"10.20.30.40","domain":"{source}"}},"winlog":{{"channel":"Security","event_id":"4624","record_id":"{n}","computer_name":"{computer}","logon":{{"type":"Network","id":"0x3e7a1"}},"event_data":{{"TargetUserName":"{user}","TargetDomainName":"DOM1","LogonType":"3","WorkstationName":"{source}","IpAddress":"10.20.30.40","AuthenticationPackageName":"Kerberos","LogonProcessName":"Kerberos"}}}}}}"#,
                authpulse_engine::event::format_time(unix),
                if failed { 4625 } else { 4624 },
                if failed { "failure" } else { "success" },
            ),
        };
        out.extend_from_slice(rendered.as_bytes());
        out.push(b'\n');
    }
    out
}

/// Lines of `data` parsed as `format` alone (no state, no rules): how many,
/// how many were valid, and the seconds it took.
pub fn parse_only(data: &[u8], format: Format, base: TimeBase) -> (u64, u64, f64) {
    let mut scratch = Vec::new();
    let (mut lines, mut valid) = (0u64, 0u64);
    let started = Instant::now();
    let mut start = 0;
    for end in memchr_iter(b'\n', data) {
        let line = &data[start..end];
        start = end + 1;
        lines += 1;
        let (_, parsed) = input::parse_line(Some(format), line, base, &mut scratch);
        valid += u64::from(parsed.is_ok());
    }
    (lines, valid, started.elapsed().as_secs_f64())
}
