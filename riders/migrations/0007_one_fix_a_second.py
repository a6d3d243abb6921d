"""rider_location_ping() refuses a fix less than a second (of recorded time) from another
fix of the rider's trail: outcome 'too_frequent', nothing stored, nobody told. The rest is 0004's.

One probe of the trail's unique (rider_id, recorded_at) index. Both transports (the HTTP ping
and the rider socket) and every web process go through this function, so the limit holds for
a rider whatever it connects through. reverse_sql puts 0004's function back.
"""

from importlib import import_module

from django.db import migrations

_0004 = import_module("riders.migrations.0004_rider_location_ping_function")
REVERSE = _0004.CREATE.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)

CREATE = """
CREATE OR REPLACE FUNCTION rider_location_ping(
    p_user uuid, p_lat double precision, p_lng double precision, p_at timestamptz,
    p_now timestamptz, p_max_speed_mps double precision, p_jitter_m double precision,
    p_carrying text[], p_accuracy_m double precision, p_heading double precision,
    p_speed_mps double precision
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
    -- At most one fix per second of recorded time: fixes microseconds apart would each pass
    -- the speed rule, be kept for days and be relayed to every watcher. A resent fix (the same
    -- instant) is not refused here: the trail ignores it.
    IF EXISTS (
        SELECT 1 FROM riders_riderlocation AS fix
         WHERE fix.rider_id = v_rider
           AND fix.recorded_at > p_at - interval '1 second'
           AND fix.recorded_at < p_at + interval '1 second'
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
"""


class Migration(migrations.Migration):
    dependencies = [
        ("riders", "0006_rider_location_pings_function"),
    ]

    operations = [migrations.RunSQL(CREATE, REVERSE)]
