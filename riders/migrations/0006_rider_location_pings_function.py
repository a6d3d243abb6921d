"""rider_location_pings(): several riders' fixes stored in one statement and one transaction.

Each fix goes through rider_location_ping() (0004), in the order given, with the same rules;
row `idx` (1-based) answers fix `idx`, and a fix whose account is not an active rider with a
profile has no row, as with the single call. One statement and one commit for a batch cost
PostgreSQL about a third of the CPU per fix that one call per fix does (docs/performance.md).
The caller (riders.services) sorts a batch by user, so that two batches lock riders and their
orders in the same order. A batch waits at most LOCK_TIMEOUT for a row another transaction
holds: the caller then stores its fixes one at a time (each again with that limit), so one
rider's locked row holds up the others' fixes seconds, not until the lock goes.
"""

from django.db import migrations

LOCK_TIMEOUT = "2s"

CREATE = f"""
CREATE FUNCTION rider_location_pings(
    p_users uuid[], p_lats double precision[], p_lngs double precision[], p_ats timestamptz[],
    p_nows timestamptz[], p_accuracies double precision[], p_headings double precision[],
    p_speeds double precision[], p_max_speed_mps double precision, p_jitter_m double precision,
    p_carrying text[]
) RETURNS TABLE (idx integer, rider_id uuid, outcome text, order_id uuid, seq integer)
LANGUAGE plpgsql SET lock_timeout = '{LOCK_TIMEOUT}' AS $$
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_users, 1), 0) LOOP
        RETURN QUERY SELECT i, ping.rider_id, ping.outcome, ping.order_id, ping.seq
          FROM rider_location_ping(
              p_users[i], p_lats[i], p_lngs[i], p_ats[i], p_nows[i], p_max_speed_mps,
              p_jitter_m, p_carrying, p_accuracies[i], p_headings[i], p_speeds[i]
          ) AS ping;
    END LOOP;
END;
$$;
"""

DROP = """
DROP FUNCTION rider_location_pings(
    uuid[], double precision[], double precision[], timestamptz[], timestamptz[],
    double precision[], double precision[], double precision[], double precision,
    double precision, text[]
);
"""


class Migration(migrations.Migration):
    dependencies = [
        ("riders", "0005_trail_indexes_only_by_rider_and_time"),
    ]

    operations = [migrations.RunSQL(CREATE, DROP)]
