"""Fixes of one rider must lie RIDER_MIN_FIX_SECONDS apart in recorded time (default 1 s):
rider_location_ping() and rider_location_pings() take the interval as their last argument and
answer 'too_frequent' for a fix closer than that to another fix of the trail (nothing stored,
nobody told). A resent fix, the same instant, is still ignored by the trail, not refused.

One probe of the trail's unique (rider_id, recorded_at) index. Both transports (the HTTP ping
and the rider socket) and every web process go through these functions, so the limit holds
whatever a rider connects through. The rest is 0004's and 0006's; reversing puts them back.
"""

from importlib import import_module

from django.db import migrations

_0004 = import_module("riders.migrations.0004_rider_location_ping_function")
_0006 = import_module("riders.migrations.0006_rider_location_pings_function")

FORWARD = """
DROP FUNCTION rider_location_pings(
    uuid[], double precision[], double precision[], timestamptz[], timestamptz[],
    double precision[], double precision[], double precision[], double precision,
    double precision, text[]
);

DROP FUNCTION rider_location_ping(
    uuid, double precision, double precision, timestamptz, timestamptz, double precision,
    double precision, text[], double precision, double precision, double precision
);

CREATE FUNCTION rider_location_ping(
    p_user uuid, p_lat double precision, p_lng double precision, p_at timestamptz,
    p_now timestamptz, p_max_speed_mps double precision, p_jitter_m double precision,
    p_carrying text[], p_accuracy_m double precision, p_heading double precision,
    p_speed_mps double precision, p_min_interval double precision
) RETURNS TABLE (rider_id uuid, outcome text, order_id uuid, seq integer)
LANGUAGE plpgsql AS $$
DECLARE
    v_point geography := ST_SetSRID(ST_MakePoint(p_lng, p_lat), 4326)::geography;
    v_rider uuid;
    v_status text;
    v_last geography;
    v_last_at timestamptz;
    v_latest boolean;
    v_order uuid;
    v_seq integer;
BEGIN
    SELECT rider.id, rider.status, rider.last_location, rider.last_location_at
      INTO v_rider, v_status, v_last, v_last_at
      FROM riders_rider AS rider JOIN accounts_user AS account ON account.id = rider.user_id
     WHERE rider.user_id = p_user AND account.is_rider AND account.is_active;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF v_last IS NOT NULL AND NOT ST_DWithin(
        v_last, v_point, p_max_speed_mps * abs(extract(epoch FROM p_at - v_last_at)) + p_jitter_m
    ) THEN
        RETURN QUERY SELECT v_rider, 'too_fast'::text, NULL::uuid, NULL::integer;
        RETURN;
    END IF;
    -- Fixes of one rider lie p_min_interval seconds apart in recorded time: fixes microseconds
    -- apart would each pass the speed rule, be kept for days and be relayed to every watcher.
    -- A resent fix (the same instant) is not refused here: the trail ignores it.
    IF EXISTS (
        SELECT 1 FROM riders_riderlocation AS fix
         WHERE fix.rider_id = v_rider
           AND fix.recorded_at > p_at - make_interval(secs => p_min_interval)
           AND fix.recorded_at < p_at + make_interval(secs => p_min_interval)
           AND fix.recorded_at <> p_at
    ) THEN
        RETURN QUERY SELECT v_rider, 'too_frequent'::text, NULL::uuid, NULL::integer;
        RETURN;
    END IF;

    IF (v_last_at IS NULL OR v_last_at < p_at) AND v_status = 'on_delivery' THEN
        UPDATE orders_order AS o SET tracking_seq = o.tracking_seq + 1
         WHERE o.rider_id = v_rider AND o.status = ANY(p_carrying)
        RETURNING o.id, o.tracking_seq INTO v_order, v_seq;
    END IF;

    UPDATE riders_rider AS rider
       SET last_location = CASE
               WHEN rider.last_location_at IS NULL OR rider.last_location_at < p_at
               THEN v_point ELSE rider.last_location END,
           last_location_at = GREATEST(rider.last_location_at, p_at),
           updated_at = p_now
     WHERE rider.id = v_rider
       AND (rider.last_location IS NULL OR ST_DWithin(
            rider.last_location, v_point,
            p_max_speed_mps * abs(extract(epoch FROM p_at - rider.last_location_at)) + p_jitter_m))
    RETURNING rider.last_location_at = p_at INTO v_latest;
    IF NOT FOUND THEN  -- a racing fix moved the rider out of reach of this one
        IF v_order IS NOT NULL THEN
            UPDATE orders_order SET tracking_seq = tracking_seq - 1 WHERE id = v_order;
        END IF;
        RETURN QUERY SELECT v_rider, 'too_fast'::text, NULL::uuid, NULL::integer;
        RETURN;
    END IF;
    IF v_order IS NOT NULL AND NOT v_latest THEN  -- a racing newer fix won: no seq for this one
        UPDATE orders_order SET tracking_seq = tracking_seq - 1 WHERE id = v_order;
        v_order := NULL;
        v_seq := NULL;
    END IF;

    INSERT INTO riders_riderlocation
        (rider_id, point, recorded_at, accuracy_m, heading, speed_mps, created_at)
    VALUES (v_rider, v_point, p_at, p_accuracy_m, p_heading, p_speed_mps, p_now)
    ON CONFLICT ON CONSTRAINT rider_location_one_per_instant DO NOTHING;

    RETURN QUERY SELECT v_rider, CASE WHEN v_latest THEN 'latest' ELSE 'older' END,
        v_order, v_seq;
END;
$$;

CREATE FUNCTION rider_location_pings(
    p_users uuid[], p_lats double precision[], p_lngs double precision[], p_ats timestamptz[],
    p_nows timestamptz[], p_accuracies double precision[], p_headings double precision[],
    p_speeds double precision[], p_max_speed_mps double precision, p_jitter_m double precision,
    p_carrying text[], p_min_interval double precision
) RETURNS TABLE (idx integer, rider_id uuid, outcome text, order_id uuid, seq integer)
LANGUAGE plpgsql SET lock_timeout = '2s' AS $$
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_users, 1), 0) LOOP
        RETURN QUERY SELECT i, ping.rider_id, ping.outcome, ping.order_id, ping.seq
          FROM rider_location_ping(
              p_users[i], p_lats[i], p_lngs[i], p_ats[i], p_nows[i], p_max_speed_mps,
              p_jitter_m, p_carrying, p_accuracies[i], p_headings[i], p_speeds[i],
              p_min_interval
          ) AS ping;
    END LOOP;
END;
$$;
"""

BACKWARD = """
DROP FUNCTION rider_location_pings(
    uuid[], double precision[], double precision[], timestamptz[], timestamptz[],
    double precision[], double precision[], double precision[], double precision,
    double precision, text[], double precision
);

DROP FUNCTION rider_location_ping(
    uuid, double precision, double precision, timestamptz, timestamptz, double precision,
    double precision, text[], double precision, double precision, double precision,
    double precision
);
""" + _0004.CREATE + _0006.CREATE


class Migration(migrations.Migration):
    dependencies = [
        ("riders", "0006_rider_location_pings_function"),
    ]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
