-- The DuckDB peer of `authpulse run`: the same per-event features from the
-- same LANL `time,user,computer` CSV, written as Parquet. scripts/bench-peer.sh
-- runs it beside `authpulse run` (docs/benchmarks.md). The script replaces
-- {input} and {output}; DuckDB uses every core.
--
-- As AuthPulse counts them (docs/tables.md, auth_events_curated): exact
-- repeats (same second, user and computer) are one logon; a window is the
-- hour (or day) up to the event, the event included; a computer's users are
-- the distinct users that logged on to it up to the event.
CREATE TEMP TABLE logons AS
    SELECT DISTINCT time, user_id, computer_id
    FROM read_csv('{input}', header = false,
                  columns = {'time': 'BIGINT', 'user_id': 'VARCHAR', 'computer_id': 'VARCHAR'});

COPY (
    WITH firsts AS (
        SELECT time, user_id, computer_id,
               row_number() OVER (PARTITION BY user_id, computer_id ORDER BY time) = 1 AS new_device
        FROM logons
    )
    SELECT time, user_id, computer_id, new_device,
           count(*) OVER hour AS user_logins_1h,
           count(*) OVER day AS user_logins_24h,
           count(DISTINCT computer_id) OVER hour AS user_distinct_computers_1h,
           count(DISTINCT computer_id) OVER day AS user_distinct_computers_24h,
           sum(new_device::INTEGER) OVER (PARTITION BY computer_id ORDER BY time
                                          ROWS UNBOUNDED PRECEDING) AS host_users_ever
    FROM firsts
    WINDOW hour AS (PARTITION BY user_id ORDER BY time RANGE BETWEEN 3599 PRECEDING AND CURRENT ROW),
           day AS (PARTITION BY user_id ORDER BY time RANGE BETWEEN 86399 PRECEDING AND CURRENT ROW)
) TO '{output}' (FORMAT parquet, COMPRESSION zstd);
