"""`manage.py backup` (docs/deploy.md#backups), run as the schedules run it, and restored.

A database with orders, quotes, payments, earnings and riders' positions (PostGIS geometry and
geography columns) is dumped by the command in a fresh process under production settings,
connecting as a read-only role whose password must never show; the dump is restored as the
docs say (createdb, pg_restore into it, `migrate --check`), and every table's row count, every
sequence and the rows of the tables that hold money and places must come back identical. The
S3 path runs against a local S3 server over real HTTP (moto's), never AWS. Failures (the
database down, a target that cannot be written, a bucket that is not there) exit 1 with the
reason and leave no dump behind.
"""

import secrets
import subprocess
import sys
from pathlib import Path

import boto3
import psycopg
import pytest
import yaml
from django.db import connections
from django.utils import timezone
from moto.server import ThreadedMotoServer
from psycopg import sql

from accounts.tests.factories import UserFactory
from core.tests.production_env import production_env
from devstack.commands import run_manage
from devstack.env import PROJECT_DIR, database_url
from devstack.ports import LOCALHOST, free_port
from orders.models import Order, OrderStatus, PaymentMethod, PaymentStatus, Quote
from orders.tests.factories import OrderFactory, RiderFactory, ServiceAreaFactory
from payments.models import Payment
from riders.models import Earning, Rider, RiderLocation
from riders.tests.factories import located

pytestmark = pytest.mark.slow

# The tables compared row by row after the restore: money and places.
COMPARED = (Order, Quote, Payment, Earning, Rider, RiderLocation)
OLD_DUMP = "{database}-20200101T000000Z.dump"
# moto's server takes any credentials; these only have to be present.
S3_CREDENTIALS = {"aws_access_key_id": "backup-test", "aws_secret_access_key": "backup-test"}


def _server_connection(dbname: str = "postgres") -> psycopg.Connection:
    db = connections["default"].settings_dict
    return psycopg.connect(
        host=db["HOST"] or LOCALHOST,
        port=db["PORT"] or 5432,
        user=db["USER"],
        password=db["PASSWORD"] or None,
        dbname=dbname,
        autocommit=True,
    )


@pytest.fixture
def business_data(transactional_db):
    """Committed rows a backup must carry: delivered, paid, cancelled and live orders."""
    area = ServiceAreaFactory()
    riders = [located(RiderFactory(), lat=12.97 + i / 100, lng=77.59 + i / 100) for i in range(3)]
    for index, rider in enumerate(riders):
        delivered = OrderFactory(
            quote__service_area=area, rider=rider, status=OrderStatus.DELIVERED
        )
        Earning.objects.create(
            rider=rider, order=delivered, amount_paise=4000 + index,
            cash_collected_paise=delivered.amount_paise,
        )  # fmt: skip
        RiderLocation.objects.create(
            rider=rider, point=rider.last_location, recorded_at=timezone.now(),
            accuracy_m=5.5,
        )  # fmt: skip
        paid = OrderFactory(
            quote__service_area=area, payment_method=PaymentMethod.RAZORPAY,
            payment_status=PaymentStatus.PAID,
        )  # fmt: skip
        Payment.objects.create(
            order=paid, razorpay_order_id=f"order_backup{index}",
            razorpay_payment_id=f"pay_backup{index}", amount_paise=paid.amount_paise,
            currency="INR", status=Payment.Status.CAPTURED, captured_at=timezone.now(),
            captured_by="webhook",
        )  # fmt: skip
    OrderFactory(quote__service_area=area, status=OrderStatus.CANCELLED, cancelled_late=True)
    OrderFactory(quote__service_area=area, customer=UserFactory())
    for model in COMPARED:
        assert model.objects.exists(), model


@pytest.fixture
def reader(business_data):
    """A read-only login with a random password, as a backup role should be; yields its
    DATABASE_URL and password, and drops it afterwards."""
    name = f"backup_reader_{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(24)
    with _server_connection() as connection:
        connection.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE pg_read_all_data").format(
                sql.Identifier(name), sql.Literal(password)
            )
        )
    settings_dict = {**connections["default"].settings_dict, "USER": name, "PASSWORD": password}
    yield database_url(settings_dict), password
    with _server_connection() as connection:
        connection.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


@pytest.fixture
def fresh_database():
    """A uniquely named empty database for the restore, dropped afterwards."""
    name = f"restore_{secrets.token_hex(4)}"
    yield name
    with _server_connection() as connection:
        drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        connection.execute(drop)


@pytest.fixture
def s3_server():
    """A local S3 over HTTP on loopback (moto's server); yields its endpoint URL."""
    server = ThreadedMotoServer(ip_address=LOCALHOST, port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def _backup(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return run_manage("backup", *args, env=env, timeout=120)


def _restore(dump: Path, database: str) -> None:
    """docs/deploy.md#backups, steps 2 and 3: a fresh database, pg_restore into it."""
    db = connections["default"].settings_dict
    pg_env = {
        "PGHOST": db["HOST"] or LOCALHOST,
        "PGPORT": str(db["PORT"] or 5432),
        "PGUSER": db["USER"],
        "PGPASSWORD": db["PASSWORD"] or "",
        "PATH": "/usr/bin:/bin",
    }
    subprocess.run(["createdb", database], env=pg_env, check=True, timeout=60)
    restored = subprocess.run(
        ["pg_restore", "--no-owner", "--no-acl", "--exit-on-error", "-d", database, str(dump)],
        env=pg_env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert restored.returncode == 0, restored.stderr


def _snapshot(dbname: str) -> dict:
    """Every table's row count, every sequence's position, and the compared tables' rows
    (geometry as EWKT, so a moved point shows)."""
    snapshot: dict = {"counts": {}, "sequences": {}, "rows": {}}
    with _server_connection(dbname) as connection:
        tables = connection.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
        ).fetchall()
        for (table,) in tables:
            query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
            snapshot["counts"][table] = connection.execute(query).fetchone()[0]
        for name, last_value in connection.execute(
            "SELECT sequencename, last_value FROM pg_sequences WHERE schemaname = 'public'"
        ):
            snapshot["sequences"][name] = last_value
        for model in COMPARED:
            columns = []
            for field in model._meta.concrete_fields:
                column = sql.Identifier(field.column)
                if field.get_internal_type() in ("PointField", "MultiPolygonField"):
                    columns.append(sql.SQL("ST_AsEWKT({})").format(column))
                else:
                    columns.append(column)
            query = sql.SQL("SELECT {} FROM {} ORDER BY {}").format(
                sql.SQL(", ").join(columns),
                sql.Identifier(model._meta.db_table),
                sql.Identifier(model._meta.pk.column),
            )
            snapshot["rows"][model._meta.db_table] = connection.execute(query).fetchall()
    return snapshot


def _assert_restored_as_taken(source: str, restored: str) -> None:
    taken, back = _snapshot(source), _snapshot(restored)
    assert back["counts"] == taken["counts"]
    assert back["sequences"] == taken["sequences"]
    for table, rows in taken["rows"].items():
        assert rows, f"{table} is empty: the comparison would prove nothing"
        assert back["rows"][table] == rows, table
    # and the restored database is this release's schema: no migration left to apply
    check = run_manage(
        "migrate", "--check", "--noinput",
        env=production_env(DATABASE_URL=_url_of(restored)), timeout=120,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr


def _url_of(dbname: str) -> str:
    return database_url({**connections["default"].settings_dict, "NAME": dbname})


def _source() -> str:
    return connections["default"].settings_dict["NAME"]


@pytest.mark.checklist("P4.11", "P12.2")
def test_a_backup_to_a_directory_restores_to_the_same_rows(reader, fresh_database, tmp_path):
    # given a directory holding an old dump of this database, another database's, and a file
    # that is not a dump
    url, password = reader
    dumps = tmp_path / "dumps"
    dumps.mkdir()
    old = dumps / OLD_DUMP.format(database=_source())
    others = [dumps / "other-20200101T000000Z.dump", dumps / "README"]
    for path in (old, *others):
        path.write_text("not a real dump")

    # when the command runs as the schedules run it, in production, as the read-only role
    result = _backup(
        "--to", str(dumps), "--keep", "5", "--keep-days", "30",
        env=production_env(DATABASE_URL=url),
    )  # fmt: skip

    # then it says where the dump went, never the password
    assert result.returncode == 0, result.stdout + result.stderr
    assert password not in result.stdout + result.stderr
    (dump,) = dumps.glob(f"{_source()}-2*.dump")
    assert f"wrote {dump} (" in result.stdout
    # and the old dump (past --keep-days) is gone, the files not its own are kept
    assert not old.exists() and all(path.exists() for path in others)
    assert "removed 1 older dump(s)" in result.stdout
    # and the dump restores into a fresh database to the same rows, on the current schema
    _restore(dump, fresh_database)
    _assert_restored_as_taken(_source(), fresh_database)


@pytest.mark.checklist("P4.11", "P12.2")
def test_a_backup_to_an_s3_bucket_restores_and_keeps_the_newest(
    business_data, s3_server, fresh_database, tmp_path
):
    # given a bucket on a local S3 server holding two older dumps and someone else's object
    client = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1", **S3_CREDENTIALS)
    client.create_bucket(Bucket="delivery-backups")
    older = [f"nightly/{_source()}-2020010{day}T000000Z.dump" for day in (1, 2)]
    elsewhere = f"elsewhere/{_source()}-20200101T000000Z.dump"
    for key in (*older, "nightly/notes.txt", elsewhere):
        client.put_object(Bucket="delivery-backups", Key=key, Body=b"not a real dump")

    # when the command runs with the bucket as BACKUP_TARGET, keeping two
    env = production_env(
        BACKUP_TARGET="s3://delivery-backups/nightly/",
        BACKUP_S3_ENDPOINT_URL=s3_server,
        BACKUP_KEEP_COUNT="2",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ACCESS_KEY_ID=S3_CREDENTIALS["aws_access_key_id"],
        AWS_SECRET_ACCESS_KEY=S3_CREDENTIALS["aws_secret_access_key"],
    )
    result = _backup(env=env)

    # then the new dump and the newest old one are there, the oldest gone, the rest untouched
    assert result.returncode == 0, result.stdout + result.stderr
    keys = {item["Key"] for item in client.list_objects_v2(Bucket="delivery-backups")["Contents"]}
    (new_key,) = keys - {*older, "nightly/notes.txt", elsewhere}
    assert keys == {new_key, older[1], "nightly/notes.txt", elsewhere}
    assert new_key.startswith(f"nightly/{_source()}-2")
    assert f"wrote s3://delivery-backups/{new_key} (" in result.stdout
    # and what was uploaded restores to the same rows
    downloaded = tmp_path / "downloaded.dump"
    client.download_file("delivery-backups", new_key, str(downloaded))
    _restore(downloaded, fresh_database)
    _assert_restored_as_taken(_source(), fresh_database)


@pytest.mark.checklist("P12.2")
def test_the_schedules_command_run_by_the_image_entrypoint_writes_a_dump(business_data, tmp_path):
    # given the command the backup schedules run (test_deploy_configs: the same on every
    # platform), taken from the Kubernetes CronJob
    cronjob = yaml.safe_load((PROJECT_DIR / "deploy" / "k8s" / "backup-cronjob.yaml").read_text())
    (container,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]

    # when the image's entrypoint runs it, as the container would, BACKUP_TARGET a directory
    env = production_env(
        BACKUP_TARGET=str(tmp_path), APP_VENV=str(Path(sys.executable).parent.parent),
        ALLOW_ROOT="1",  # the container is not root; this test may be
    )  # fmt: skip
    result = subprocess.run(
        [PROJECT_DIR / "entrypoint.sh", *container["args"]], cwd=PROJECT_DIR, env=env,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip

    # then it exits 0 having written one dump of this database there
    assert result.returncode == 0, result.stdout + result.stderr
    (dump,) = tmp_path.glob(f"{_source()}-2*.dump")
    assert f"[backup] wrote {dump} (" in result.stdout


@pytest.mark.checklist("P4.11", "P12.2")
def test_a_backup_that_cannot_be_taken_or_kept_fails_with_the_reason(
    transactional_db, s3_server, tmp_path
):
    dumps = tmp_path / "dumps"
    env = production_env()

    # the database down (nothing listens on that port): pg_dump's reason, exit 1, no dump
    down = production_env(
        DATABASE_URL=database_url(connections["default"].settings_dict, port=free_port())
    )
    result = _backup("--to", str(dumps), env=down)
    assert result.returncode == 1
    assert "pg_dump failed" in result.stderr and "Connection refused" in result.stderr
    assert list(dumps.iterdir()) == [], "a failed dump left a file behind"

    # a directory that cannot be made (a file is in the way)
    (tmp_path / "a-file").write_text("")
    result = _backup("--to", str(tmp_path / "a-file" / "dumps"), env=env)
    assert result.returncode == 1
    assert "cannot create the directory" in result.stderr

    # a target that is neither a directory nor S3, and no target at all
    result = _backup("--to", "ftp://backups.example.com/", env=env)
    assert result.returncode == 1 and "not ftp:" in result.stderr
    result = _backup(env=env)
    assert result.returncode == 1 and "no backup target" in result.stderr

    # a bucket that is not there (checked before the dump is taken)
    result = _backup(
        "--to", "s3://no-such-bucket/nightly/",
        env=production_env(
            BACKUP_S3_ENDPOINT_URL=s3_server, AWS_DEFAULT_REGION="us-east-1",
            AWS_ACCESS_KEY_ID=S3_CREDENTIALS["aws_access_key_id"],
            AWS_SECRET_ACCESS_KEY=S3_CREDENTIALS["aws_secret_access_key"],
        ),
    )  # fmt: skip
    assert result.returncode == 1
    assert "checking the bucket of s3://no-such-bucket/nightly/ failed" in result.stderr
    assert "Traceback" not in result.stderr
