"""`python manage.py simulate`: a city of riders and customers on a running server's real API.

The logic lives in the `simulator` package; docs/simulator.md describes it.
"""

import argparse
import asyncio
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from simulator.customers import CUSTOMER_PHONE_PREFIX
from simulator.riders import RIDER_PHONE_PREFIX, rider_settings_check
from simulator.run import Config, Simulation, SimulationError

DEFAULT_TOKEN_FILE = ".local/simulator-tokens.json"  # noqa: S105 - a path, not a secret


def _range(text: str) -> tuple[float, float]:
    """ "15-30" -> (15.0, 30.0); "20" -> (20.0, 20.0)."""
    low, _, high = text.partition("-")
    try:
        values = (float(low), float(high or low))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN-MAX, e.g. 15-30 (got {text!r})") from None
    return values


class Command(BaseCommand):
    help = (
        "Drive a running server's real HTTP and WebSocket API as riders and customers would, so "
        "the ops map comes alive (and as a load generator). Riders sign in by phone OTP (codes "
        "read from the dummy SMS outbox in the shared database, so SMS_PROVIDER must be dummy), "
        "are APPROVED DIRECTLY by the simulator (a demo tool; as `rider_approve` does), go "
        "online, keep /ws/rider/ open, send a fix every few seconds while riding street-like "
        "routes at two-wheeler speeds, accept most offers after a short pause and take every "
        "delivery step, delivering with the code the customer passes on. Customers book "
        "cash-on-delivery trips inside a service area (Poisson arrivals) and watch them on "
        "/ws/delivery/<id>/. Phone numbers: riders "
        f"{RIDER_PHONE_PREFIX}0000 to {RIDER_PHONE_PREFIX}9999, customers "
        f"{CUSTOMER_PHONE_PREFIX}0000 to {CUSTOMER_PHONE_PREFIX}9999, so "
        "repeated runs reuse the same users; their refresh tokens are kept in "
        f"{DEFAULT_TOKEN_FILE}, so only a first run needs OTP codes (the server's per-IP OTP "
        "throttle, 1000/hour on a development server and 30/hour elsewhere by default, paces "
        "it; see --mint-when-throttled). Stops after "
        "--minutes or on Ctrl-C: customers cancel what was not picked up, riders fail what they "
        "carry and go offline, sockets close, and a summary is printed (Ctrl-C twice stops at "
        "once). Not for production."
    )

    def add_arguments(self, parser):
        add = parser.add_argument
        add("--riders", type=int, default=200, help="Riders (default 200).")
        add(
            "--orders-per-minute",
            type=float,
            default=30.0,
            help="Mean bookings per minute, Poisson arrivals (default 30; 0: none).",
        )
        add("--minutes", type=float, help="Stop after this long (default: until Ctrl-C).")
        add("--url", default="http://127.0.0.1:5000", help="The server (default %(default)s).")
        add("--seed", type=int, help="Seed for a repeatable city (default: random, printed).")
        add("--customers", type=int, default=100, help="Customer accounts booking (default 100).")
        add("--area", help="Service area name from /api/config/ (default: the first).")
        add(
            "--radius-km",
            type=float,
            default=5.0,
            help="The city: a disc of this radius at the area's middle (default 5).",
        )
        add("--trip-km", type=_range, default=(1.0, 4.0), help="Pickup to drop (default 1-4).")
        add(
            "--speed-kmh",
            type=_range,
            default=(15.0, 30.0),
            help="Riders' speeds (default 15-30; under the server's RIDER_MAX_SPEED_KMH).",
        )
        add("--ping-seconds", type=float, default=4.0, help="Seconds between fixes (default 4).")
        add(
            "--dwell-seconds",
            type=_range,
            default=(20.0, 60.0),
            help="Time at the pickup and at the door (default 20-60).",
        )
        add(
            "--accept-delay-seconds",
            type=_range,
            default=(1.0, 6.0),
            help="How long a rider looks at an offer (default 1-6).",
        )
        add("--decline-rate", type=float, default=0.1, help="Offers declined (default 0.1).")
        add(
            "--cancel-share",
            type=float,
            default=0.0,
            help="Bookings the customer cancels 5-60 s later, unless picked up (default 0).",
        )
        add(
            "--http-share",
            type=float,
            default=0.2,
            help="Riders sending fixes over HTTP instead of the socket (default 0.2).",
        )
        add(
            "--token-file",
            default=DEFAULT_TOKEN_FILE,
            help="Refresh tokens kept between runs, relative to the project (default "
            "%(default)s; '' keeps none).",
        )
        add(
            "--mint-when-throttled",
            action="store_true",
            help="When the server's OTP throttle refuses a sign-in, issue that user's tokens "
            "straight from the database instead of waiting (needs the server's "
            "DJANGO_SECRET_KEY, as `make run` shares it).",
        )
        add(
            "--report-seconds",
            type=float,
            default=15.0,
            help="A progress line this often (default 15).",
        )

    def handle(self, *args, **options):
        if settings.IS_PRODUCTION:
            raise CommandError("Refusing to simulate with DJANGO_ENV=production.")
        if settings.SMS_PROVIDER != "dummy":
            raise CommandError(
                f"SMS_PROVIDER is {settings.SMS_PROVIDER!r}: the simulator signs in by reading "
                "login codes from the dummy SMS outbox, so it needs SMS_PROVIDER=dummy (and the "
                "server running with it)."
            )
        token_file = options["token_file"]
        config = Config(
            url=options["url"],
            riders=options["riders"],
            orders_per_minute=options["orders_per_minute"],
            minutes=options["minutes"],
            seed=options["seed"],
            customers=options["customers"],
            area=options["area"],
            radius_km=options["radius_km"],
            trip_km=options["trip_km"],
            speed_kmh=options["speed_kmh"],
            ping_seconds=options["ping_seconds"],
            dwell_seconds=options["dwell_seconds"],
            accept_delay_seconds=options["accept_delay_seconds"],
            decline_rate=options["decline_rate"],
            cancel_share=options["cancel_share"],
            http_share=options["http_share"],
            token_file=Path(settings.BASE_DIR, token_file) if token_file else None,
            mint_when_throttled=options["mint_when_throttled"],
            report_seconds=options["report_seconds"],
        )
        problems = config.problems()
        speed_problem = rider_settings_check(config.speed_kmh[1])
        if speed_problem:
            problems.append(speed_problem)
        if problems:
            raise CommandError("; ".join(problems) + ".")

        def say(line: str) -> None:
            self.stdout.write(line)
            self.stdout.flush()

        simulation = Simulation(config, say=say)
        try:
            asyncio.run(simulation.run())
        except SimulationError as error:
            raise CommandError(str(error)) from None
        except (KeyboardInterrupt, asyncio.CancelledError):
            pass  # stopped at once (a second Ctrl-C); the summary still says what happened
        say(simulation.summary())
