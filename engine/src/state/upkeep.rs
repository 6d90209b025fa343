//! Keeping the windows current as event time moves on: a user's last hour
//! and day of logons (and what leaving them does to the distinct and new
//! computers counted), a computer's users new to it in the last hour and
//! day, and when each next needs looking at, so that an event touches a
//! window's memory only when something is due to leave it.

use super::window::WindowEntry;
use super::{DAY, Device, HOUR, HostState, UserState};

/// Slides the user's windows to end at `now`: entries at or before `now - 1h`
/// leave the hour, entries at or before `now - 24h` leave the day.
#[inline]
pub(super) fn expire(user: &mut UserState, devices: &[Device], now: i64) {
    if now < user.due {
        return;
    }
    while let Some(entry) = user.window.get(user.hour_start)
        && entry.time <= now - HOUR
    {
        leave(entry, devices, &mut user.distinct_1h, &mut user.new_1h);
        user.hour_start += 1;
    }
    while let Some(entry) = user.window.front()
        && entry.time <= now - DAY
    {
        leave(entry, devices, &mut user.distinct_24h, &mut user.new_24h);
        user.window.pop_front();
        user.hour_start -= 1;
    }
    user.window.release_spare();
    user.due = due(
        user.window.get(user.hour_start).map(|e| e.time),
        user.window.front().map(|e| e.time),
    );
}

/// Lets the oldest entry of a full window leave before its time, as if it had
/// expired: the counts stay those of the entries still in the window. If it
/// was its computer's latest occurrence, the next one enters the windows
/// again.
#[cold]
pub(super) fn trim_oldest(user: &mut UserState, devices: &mut [Device]) {
    let Some(entry) = user.window.pop_front() else {
        return;
    };
    if user.hour_start == 0 {
        leave(entry, devices, &mut user.distinct_1h, &mut user.new_1h);
    } else {
        user.hour_start -= 1;
    }
    leave(entry, devices, &mut user.distinct_24h, &mut user.new_24h);
    let device = &mut devices[entry.device as usize];
    if device.last_seq == entry.seq {
        device.last_seen = i64::MIN;
    }
    user.due = due(
        user.window.get(user.hour_start).map(|e| e.time),
        user.window.front().map(|e| e.time),
    );
}

/// When the next entry leaves: the oldest of the last hour an hour after
/// it, the oldest of the last day a day after it.
#[inline]
pub(super) fn due(oldest_of_hour: Option<i64>, oldest_of_day: Option<i64>) -> i64 {
    oldest_of_hour
        .map_or(i64::MAX, |t| t + HOUR)
        .min(oldest_of_day.map_or(i64::MAX, |t| t + DAY))
}

/// Slides the computer's windows to end at `now`: first uses leave its hour
/// and its day.
#[inline]
pub(super) fn expire_host(host: &mut HostState, now: i64) {
    if now < host.due {
        return;
    }
    while let Some(&first) = host.firsts.get(host.firsts_hour_start)
        && first <= now - HOUR
    {
        host.firsts_hour_start += 1;
    }
    while let Some(&first) = host.firsts.front()
        && first <= now - DAY
    {
        host.firsts.pop_front();
        host.firsts_hour_start -= 1;
    }
    host.due = due(
        host.firsts.get(host.firsts_hour_start).copied(),
        host.firsts.front().copied(),
    );
}

/// Accounts for `entry` leaving a window: the pair leaves the window's distinct
/// computers if this was its latest occurrence, and its new computers if this
/// was its first occurrence ever.
#[inline]
pub(super) fn leave(entry: WindowEntry, devices: &[Device], distinct: &mut u32, new: &mut u32) {
    let device = &devices[entry.device as usize];
    if device.last_seq == entry.seq {
        *distinct -= 1;
    }
    if device.first_seq == entry.seq {
        *new -= 1;
    }
}
