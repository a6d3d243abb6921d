"""rider_location_ping(): a rider's fix stored in one round trip (riders.services).

Before it, a ping cost three statements in two transactions from Python; docs/performance.md
has what the one call bought. The rules are the same:
- the account must be an active rider with a profile (no row comes back otherwise, and the
  caller finds out why);
- the fix must lie within max_speed * seconds + jitter of the rider's latest one;
- only a newer fix moves riders_rider.last_location; every fix joins the trail once
  (a resent one is ignored);
- a newer fix of a rider carrying an order takes the order's next tracking seq.
Locks follow the project's order, Order before Rider: the order's row is locked (by its UPDATE)
before the rider's. The speed rule is checked on the rider's row as read, then again under its
lock; when a racing fix got there first and this one fails the check after all, the order's
seq is handed back (its row is still locked, so nobody took the next one) and nothing is
stored.
"""

from django.db import migrations

CREATE = """
CREATE FUNCTION rider_location_ping(
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

DROP = """
DROP FUNCTION rider_location_ping(
    uuid, double precision, double precision, timestamptz, timestamptz, double precision,
    double precision, text[], double precision, double precision, double precision
);
"""


class Migration(migrations.Migration):
    dependencies = [
        ("riders", "0003_earnings"),
        ("orders", "0005_ops_assign_riders_and_see_earnings"),
    ]

    operations = [migrations.RunSQL(CREATE, DROP)]
