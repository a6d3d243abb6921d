"""The trail keeps only the indexes it is read by: every ping inserts a row into it.

Drops the spatial index on riders_riderlocation.point (the trail is never searched by place)
and the btree on rider_id (the unique (rider_id, recorded_at) index serves every read by
rider). CONCURRENTLY, outside a transaction: pings keep arriving while it runs. Django's own
AlterField would also drop and re-add the foreign key, checking every row of the trail.
"""

import django.contrib.gis.db.models.fields
import django.db.models.deletion
from django.db import migrations, models

POINT_INDEX = "riders_riderlocation_point_68508974_id"
RIDER_INDEX = "riders_riderlocation_rider_id_ee62efc9"


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("riders", "0004_rider_location_ping_function"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="riderlocation",
                    name="point",
                    field=django.contrib.gis.db.models.fields.PointField(
                        geography=True, spatial_index=False, srid=4326
                    ),
                ),
                migrations.AlterField(
                    model_name="riderlocation",
                    name="rider",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="locations",
                        to="riders.rider",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    f"DROP INDEX CONCURRENTLY IF EXISTS {POINT_INDEX}",
                    f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {POINT_INDEX}"
                    " ON riders_riderlocation USING gist (point)",
                ),
                migrations.RunSQL(
                    f"DROP INDEX CONCURRENTLY IF EXISTS {RIDER_INDEX}",
                    f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {RIDER_INDEX}"
                    " ON riders_riderlocation (rider_id)",
                ),
            ],
        ),
    ]
