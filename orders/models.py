"""Orders and where they may be delivered: service areas, tariffs, quotes, orders, their audit
log and ratings. Money is integer paise; status changes go through orders/state.py only."""

from django.conf import settings
from django.contrib.gis.db import models as gis_models
from django.db import models
from django.db.models import Q

from core.models import PublicModel, TimestampedModel


class ServiceArea(TimestampedModel):
    """A zone ops serve; pickups and drops must fall inside an active one."""

    name = models.CharField(max_length=100, unique=True)
    area = gis_models.MultiPolygonField(srid=4326)
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class Tariff(TimestampedModel):
    """The prices of one service area; an area without one is priced from the PRICING_* settings.

    Edited by the finance group in the admin. A quote copies the result, so a change applies
    to quotes made after it, never to orders already booked.
    """

    service_area = models.OneToOneField(
        ServiceArea, on_delete=models.CASCADE, related_name="tariff"
    )
    base_fare_paise = models.PositiveIntegerField()
    per_km_paise = models.PositiveIntegerField()
    minimum_fare_paise = models.PositiveIntegerField(
        default=0, help_text="A quote below this is topped up to it."
    )
    free_weight_grams = models.PositiveIntegerField(help_text="Weight included in the fare.")
    per_extra_kg_paise = models.PositiveIntegerField(
        help_text="Charged per started kilogram above the included weight."
    )

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(base_fare_paise__gte=0)
                & Q(per_km_paise__gte=0)
                & Q(minimum_fare_paise__gte=0)
                & Q(free_weight_grams__gte=0)
                & Q(per_extra_kg_paise__gte=0),
                name="tariff_amounts_not_negative",
            )
        ]

    def __str__(self):
        return f"Tariff of {self.service_area}"


class PaymentMethod(models.TextChoices):
    COD = "cod", "Cash on delivery"
    RAZORPAY = "razorpay", "Razorpay"


class Quote(PublicModel):
    """A price the server computed for one trip; an order can only be booked from one of these."""

    customer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="quotes"
    )
    service_area = models.ForeignKey(ServiceArea, on_delete=models.PROTECT, related_name="+")
    pickup_location = gis_models.PointField(geography=True, srid=4326)
    pickup_address = models.CharField(max_length=300)
    drop_location = gis_models.PointField(geography=True, srid=4326)
    drop_address = models.CharField(max_length=300)
    package_description = models.CharField(max_length=200)
    package_weight_grams = models.PositiveIntegerField()
    distance_m = models.PositiveIntegerField(help_text="Straight-line geodesic distance.")
    currency = models.CharField(max_length=3, default="INR")
    total_paise = models.PositiveIntegerField()
    breakdown = models.JSONField(help_text='[{"code", "label", "amount_paise"}], sums to total.')
    expires_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(package_weight_grams__gt=0), name="quote_weight_positive"
            ),
            models.CheckConstraint(
                condition=Q(total_paise__gte=0), name="quote_total_not_negative"
            ),
        ]

    def __str__(self):
        return f"Quote {self.id} ({self.total_paise} paise)"


class OrderStatus(models.TextChoices):
    CREATED = "created", "Created"
    PAYMENT_PENDING = "payment_pending", "Payment pending"
    SEARCHING_RIDER = "searching_rider", "Searching for a rider"
    RIDER_ASSIGNED = "rider_assigned", "Rider assigned"
    AT_PICKUP = "at_pickup", "Rider at pickup"
    PICKED_UP = "picked_up", "Picked up"
    AT_DROPOFF = "at_dropoff", "Rider at drop"
    DELIVERED = "delivered", "Delivered"
    CANCELLED = "cancelled", "Cancelled"
    FAILED = "failed", "Failed"


class PaymentStatus(models.TextChoices):
    NONE = "none", "None (cash on delivery)"
    PENDING = "pending", "Pending"
    PAID = "paid", "Paid"
    FAILED = "failed", "Failed (may be retried)"
    REFUND_PENDING = "refund_pending", "Refund pending"
    REFUNDED = "refunded", "Refunded"


TERMINAL_STATUSES = frozenset({OrderStatus.DELIVERED, OrderStatus.CANCELLED, OrderStatus.FAILED})
# The order is in a rider's hands: assigned, at the pickup, picked up, or at the drop.
CARRYING_STATUSES = [
    OrderStatus.RIDER_ASSIGNED,
    OrderStatus.AT_PICKUP,
    OrderStatus.PICKED_UP,
    OrderStatus.AT_DROPOFF,
]


class Order(PublicModel):
    """A booked delivery. Its amount is the quote's; its status moves only by orders/state.py.

    The delivery code is kept twice on purpose: `delivery_code` in plain, so the customer's app
    can show it again (read only through the customer's own selector and blanked when the order
    ends), and `delivery_code_hmac`, which is what the rider-side check compares against.
    """

    customer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="orders"
    )
    quote = models.OneToOneField(Quote, on_delete=models.PROTECT, related_name="order")
    rider = models.ForeignKey(
        "riders.Rider", on_delete=models.PROTECT, null=True, blank=True, related_name="orders"
    )
    amount_paise = models.PositiveIntegerField()
    currency = models.CharField(max_length=3, default="INR")
    payment_method = models.CharField(max_length=16, choices=PaymentMethod.choices)
    status = models.CharField(
        max_length=20, choices=OrderStatus.choices, default=OrderStatus.CREATED, db_index=True
    )
    payment_status = models.CharField(
        max_length=20, choices=PaymentStatus.choices, default=PaymentStatus.NONE
    )
    notes = models.CharField(max_length=500, blank=True)
    # db_default too: the previous release, still running during a deploy, inserts without it.
    cancelled_late = models.BooleanField(
        default=False,
        db_default=False,
        help_text="Cancelled by the customer once the rider was at the pickup: a fee may apply.",
    )
    delivery_code = models.CharField(max_length=4, blank=True)
    delivery_code_hmac = models.CharField(max_length=64)
    delivery_code_attempts = models.PositiveSmallIntegerField(
        default=0, help_text="Wrong delivery codes entered; DELIVERY_CODE_MAX_ATTEMPTS locks it."
    )
    # The number of the last event sent on /ws/delivery/<id>/ (status or location): apps that
    # see a gap re-read the tracking snapshot, which carries the current value.
    tracking_seq = models.PositiveIntegerField(default=0)
    idempotency_key = models.CharField(max_length=100, blank=True)
    request_fingerprint = models.CharField(
        max_length=64, blank=True, help_text="SHA-256 of the create request, for key reuse checks."
    )

    class Meta:
        ordering = ["-created_at"]
        permissions = [
            ("cancel_any_order", "Can cancel any customer's order"),
            ("refund_order", "Can refund an order's payment"),
            ("assign_rider", "Can assign and unassign an order's rider by hand"),
        ]
        indexes = [models.Index(fields=["customer", "-created_at"], name="order_customer_newest")]
        constraints = [
            models.UniqueConstraint(
                fields=["customer", "idempotency_key"],
                condition=~Q(idempotency_key=""),
                name="order_one_per_idempotency_key",
            ),
            models.CheckConstraint(
                condition=Q(amount_paise__gte=0), name="order_amount_not_negative"
            ),
            # Cash is collected by the rider, outside this system: no payment status to track.
            models.CheckConstraint(
                condition=~Q(payment_method="cod") | Q(payment_status="none"),
                name="order_cod_has_no_payment_status",
            ),
            models.CheckConstraint(
                condition=Q(rider__isnull=False)
                | Q(status__in=["created", "payment_pending", "searching_rider", "cancelled"]),
                name="order_rider_set_once_assigned",
            ),
        ]

    def __str__(self):
        return f"Order {self.id} ({self.status})"


class ActorKind(models.TextChoices):
    CUSTOMER = "customer", "Customer"
    RIDER = "rider", "Rider"
    STAFF = "staff", "Staff"
    SYSTEM = "system", "System"


class OrderEvent(TimestampedModel):
    """One status change of an order: the audit log. Written only by orders.state."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="events")
    action = models.CharField(max_length=32)
    from_status = models.CharField(max_length=20, choices=OrderStatus.choices, blank=True)
    to_status = models.CharField(max_length=20, choices=OrderStatus.choices)
    actor_kind = models.CharField(max_length=16, choices=ActorKind.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    reason = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(actor_kind="system") | Q(actor__isnull=False),
                name="order_event_person_is_named",
            )
        ]

    def __str__(self):
        return f"{self.from_status or '-'} -> {self.to_status} ({self.action})"


class Rating(TimestampedModel):
    """The customer's stars for a delivered order; one per order."""

    order = models.OneToOneField(Order, on_delete=models.CASCADE, related_name="rating")
    stars = models.PositiveSmallIntegerField()
    comment = models.CharField(max_length=1000, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(stars__gte=1) & Q(stars__lte=5), name="rating_stars_1_to_5"
            )
        ]

    def __str__(self):
        return f"{self.stars} stars for {self.order_id}"
