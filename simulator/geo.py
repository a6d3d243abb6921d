"""Places, the activity zone, street-like routes and riders moving along them.

No map data: a route is a Manhattan-style walk on a city grid (blocks of 120-260 m, the grid
turned by the city's own angle), each corner nudged a few metres so the streets are not ruler
straight. Distances use the equirectangular approximation, good to well under a metre at city
scale. Points are (lat, lng) tuples.
"""

import math
import random
from dataclasses import dataclass, field
from itertools import pairwise

METRES_PER_DEGREE = 111_320.0

Point = tuple[float, float]  # (lat, lng)


def metres_between(a: Point, b: Point) -> float:
    north = (b[0] - a[0]) * METRES_PER_DEGREE
    east = (b[1] - a[1]) * METRES_PER_DEGREE * math.cos(math.radians((a[0] + b[0]) / 2))
    return math.hypot(north, east)


def displacement(a: Point, b: Point) -> tuple[float, float]:
    """(east, north) metres from a to b."""
    north = (b[0] - a[0]) * METRES_PER_DEGREE
    east = (b[1] - a[1]) * METRES_PER_DEGREE * math.cos(math.radians(a[0]))
    return east, north


def offset(point: Point, east: float, north: float) -> Point:
    lat = point[0] + north / METRES_PER_DEGREE
    lng = point[1] + east / (METRES_PER_DEGREE * math.cos(math.radians(point[0])))
    return (lat, lng)


def bearing(a: Point, b: Point) -> float:
    """Compass heading from a to b in degrees, 0 (north) up to but not including 360."""
    east, north = displacement(a, b)
    return math.degrees(math.atan2(east, north)) % 360.0


@dataclass(frozen=True)
class Zone:
    """Where the simulated city lives: a disc inside a service area's bounding box.

    bbox is (min_lng, min_lat, max_lng, max_lat), as /api/config/ gives it.
    """

    centre: Point
    radius_m: float
    bbox: tuple[float, float, float, float]

    @classmethod
    def inside_bbox(cls, bbox, radius_m: float) -> "Zone":
        """The disc at the middle of bbox, no wider than 45% of the box's narrower side."""
        min_lng, min_lat, max_lng, max_lat = bbox
        centre = ((min_lat + max_lat) / 2, (min_lng + max_lng) / 2)
        width = metres_between((centre[0], min_lng), (centre[0], max_lng))
        height = metres_between((min_lat, centre[1]), (max_lat, centre[1]))
        return cls(centre, min(radius_m, 0.45 * min(width, height)), tuple(bbox))

    def contains(self, point: Point) -> bool:
        min_lng, min_lat, max_lng, max_lat = self.bbox
        return (
            min_lat <= point[0] <= max_lat
            and min_lng <= point[1] <= max_lng
            and metres_between(self.centre, point) <= self.radius_m
        )

    def random_point(self, rng: random.Random) -> Point:
        """Uniform over the disc."""
        metres = self.radius_m * math.sqrt(rng.random())
        angle = rng.uniform(0, 2 * math.pi)
        return offset(self.centre, metres * math.sin(angle), metres * math.cos(angle))

    def random_point_near(
        self, rng: random.Random, origin: Point, min_m: float, max_m: float
    ) -> Point:
        """A point min_m..max_m from origin inside the zone (the zone's own random point when
        none is found, e.g. near its edge with a long distance asked for)."""
        for _ in range(50):
            metres = rng.uniform(min_m, max_m)
            angle = rng.uniform(0, 2 * math.pi)
            point = offset(origin, metres * math.sin(angle), metres * math.cos(angle))
            if self.contains(point):
                return point
        return self.random_point(rng)

    def random_trip(self, rng: random.Random, min_m: float, max_m: float) -> tuple[Point, Point]:
        """A pickup and a drop inside the zone, min_m..max_m apart in a straight line (as
        nearly as the zone allows)."""
        pickup = self.random_point(rng)
        return pickup, self.random_point_near(rng, pickup, min_m, max_m)


def street_route(
    start: Point,
    end: Point,
    rng: random.Random,
    *,
    grid_angle_deg: float = 0.0,
    block_m: tuple[float, float] = (120.0, 260.0),
    wobble_m: float = 8.0,
) -> list[Point]:
    """Corners of a Manhattan-style path from start to end on a grid turned by grid_angle_deg.

    Runs of one to four blocks alternate between the grid's two directions, so the path has
    several turns instead of one L; its length is the Manhattan distance (at most about 1.41
    times the straight line). Inner corners move up to wobble_m; the last point is end exactly.
    """
    east, north = displacement(start, end)
    angle = math.radians(grid_angle_deg)
    cos_a, sin_a = math.cos(angle), math.sin(angle)
    # The trip in the grid's own axes: u along the "avenues", v along the "streets".
    remaining = {"u": east * cos_a + north * sin_a, "v": -east * sin_a + north * cos_a}
    legs: list[tuple[str, float]] = []
    axis = rng.choice(("u", "v"))
    while abs(remaining["u"]) > 1.0 or abs(remaining["v"]) > 1.0:
        left = remaining[axis]
        if abs(left) > 1.0:
            length = min(abs(left), rng.randint(1, 4) * rng.uniform(*block_m))
            if abs(left) - length < block_m[0]:
                length = abs(left)  # less than a block would be left: ride it all
            step = math.copysign(length, left)
            legs.append((axis, step))
            remaining[axis] -= step
        axis = "v" if axis == "u" else "u"
    points = [start]
    u = v = 0.0
    for axis, step in legs:
        if axis == "u":
            u += step
        else:
            v += step
        corner_east = u * cos_a - v * sin_a + rng.uniform(-wobble_m, wobble_m)
        corner_north = u * sin_a + v * cos_a + rng.uniform(-wobble_m, wobble_m)
        points.append(offset(start, corner_east, corner_north))
    if len(points) == 1:
        points.append(end)
    points[-1] = end
    return points


@dataclass
class Route:
    """A polyline being ridden: `advance` moves along it and returns where the rider is."""

    points: list[Point]
    position: Point = field(init=False)
    _next: int = field(init=False, default=1)

    def __post_init__(self) -> None:
        if not self.points:
            raise ValueError("a route needs at least one point")
        self.position = self.points[0]  # a one-point route is done from the start

    @property
    def done(self) -> bool:
        return self._next >= len(self.points)

    @property
    def end(self) -> Point:
        return self.points[-1]

    @property
    def length_m(self) -> float:
        return sum(metres_between(a, b) for a, b in pairwise(self.points))

    @property
    def left_m(self) -> float:
        if self.done:
            return 0.0
        rest = self.points[self._next :]
        return metres_between(self.position, rest[0]) + sum(
            metres_between(a, b) for a, b in pairwise(rest)
        )

    def advance(self, metres: float) -> Point:
        """Rides `metres` along the route (stopping at its end); returns the new position."""
        while metres > 0 and not self.done:
            corner = self.points[self._next]
            gap = metres_between(self.position, corner)
            if gap <= metres:
                self.position = corner
                self._next += 1
                metres -= gap
            else:
                share = metres / gap
                self.position = (
                    self.position[0] + (corner[0] - self.position[0]) * share,
                    self.position[1] + (corner[1] - self.position[1]) * share,
                )
                metres = 0
        return self.position


@dataclass(frozen=True)
class Riding:
    """How one rider rides: a cruising speed inside min..max km/h, varied a little every tick,
    and a stop now and then (a signal, traffic) when stop_chance comes up."""

    cruise_kmh: float
    min_kmh: float
    max_kmh: float
    stop_chance: float = 0.08

    @classmethod
    def pick(cls, rng: random.Random, min_kmh: float, max_kmh: float) -> "Riding":
        return cls(rng.uniform(min_kmh, max_kmh), min_kmh, max_kmh)

    def tick_speed_mps(self, rng: random.Random) -> float:
        if rng.random() < self.stop_chance:
            return 0.0
        kmh = min(self.max_kmh, max(self.min_kmh, self.cruise_kmh * rng.uniform(0.85, 1.15)))
        return kmh / 3.6


def gps_noise(point: Point, rng: random.Random, metres: float) -> Point:
    """The fix a phone reports: the true position give or take up to `metres`."""
    if metres <= 0:
        return point
    distance = metres * math.sqrt(rng.random())
    angle = rng.uniform(0, 2 * math.pi)
    return offset(point, distance * math.sin(angle), distance * math.cos(angle))


def fix_is_plausible(
    previous: Point, current: Point, seconds: float, *, max_speed_kmh: float, jitter_m: float
) -> bool:
    """The server's speed rule (riders.services.rider_location_record): a fix may lie at most
    max_speed_kmh times the time since the previous fix, plus jitter_m, from it."""
    return metres_between(previous, current) <= max_speed_kmh / 3.6 * abs(seconds) + jitter_m
