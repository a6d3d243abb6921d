"""Examples in the OpenAPI schema: one order's way from sign-in to rating, as the apps see it.

Keyed by operation id (core.openapi.OPERATIONS); core/tests/test_api_schema.py checks each
example against the schema of the body it illustrates, so they cannot drift from the API.
"""

from drf_spectacular.utils import OpenApiExample

CUSTOMER = {"id": "0b6e3c1a-8f2d-4c55-9a61-3d7e2f4b9c10", "phone": "+919812345678"}
ORDER_ID = "6f1c2a9e-3b7d-4e1a-9c55-1d2e3f4a5b6c"
QUOTE_ID = "c3a8d1f0-7e21-4b9a-8d36-5f0e9b2c4a71"
OFFER_ID = "9d2f6b3e-1c4a-4e8f-b7d5-2a6c8e0f1b34"
PICKUP = {"lat": 12.9716, "lng": 77.5946, "address": "12 MG Road, Bengaluru"}
DROP = {"lat": 12.9784, "lng": 77.6408, "address": "48 100 Feet Road, Indiranagar"}
BREAKDOWN = [
    {"code": "base_fare", "label": "Base fare", "amount_paise": 3000},
    {"code": "distance", "label": "Distance 5.2 km", "amount_paise": 5200},
]
RIDER = {
    "name": "Ravi Kumar",
    "phone": "+91******7890",
    "vehicle_type": "scooter",
    "vehicle_number": "KA01AB1234",
}
ORDER = {
    "id": ORDER_ID,
    "status": "searching_rider",
    "payment_status": "none",
    "payment_method": "cod",
    "amount_paise": 8200,
    "currency": "INR",
    "pickup": PICKUP,
    "drop": DROP,
    "package": {"description": "Documents", "weight_grams": 500},
    "distance_m": 5200,
    "breakdown": BREAKDOWN,
    "notes": "Ring the bell twice",
    "cancelled_late": False,
    "rider": None,
    "delivery_code": "4821",
    "created_at": "2026-12-07T10:15:02+05:30",
    "updated_at": "2026-12-07T10:15:02+05:30",
}
TRACKING = {
    "order_id": ORDER_ID,
    "status": "picked_up",
    "seq": 5,
    "rider": {"lat": 12.9741, "lng": 77.6102, "updated_at": "2026-12-07T10:31:40+05:30"},
    "eta_seconds": 420,
    "pickup": PICKUP,
    "drop": DROP,
    "cash_to_collect_paise": 8200,
    "delivery_code_tries_left": 5,
}
OFFER = {
    "id": OFFER_ID,
    "order_id": ORDER_ID,
    "status": "pending",
    "pickup": PICKUP,
    "drop": DROP,
    "distance_m": 5200,
    "pay_paise": 4000,
    "cash_to_collect_paise": 8200,
    "expires_at": "2026-12-07T10:15:47+05:30",
}


def _request(value: dict, name: str = "Example") -> OpenApiExample:
    return OpenApiExample(name, value=value, request_only=True)


def _response(value: dict, status: int = 200, name: str = "Example") -> OpenApiExample:
    return OpenApiExample(name, value=value, response_only=True, status_codes=[str(status)])


def _refusal(status: int, code: str, message: str, fields=None) -> OpenApiExample:
    error = {"code": code, "message": message} | ({"fields": fields} if fields else {})
    return _response({"error": error}, status, name=code)


EXAMPLES: dict[str, list[OpenApiExample]] = {
    "auth_otp_request": [
        _request({"phone": CUSTOMER["phone"]}),
        _response({"expires_in": 300, "resend_after": 60}, 202),
        _refusal(
            429, "otp_cooldown", "A code was sent moments ago; wait before asking for another."
        ),
    ],
    "auth_otp_verify": [
        _request({"phone": CUSTOMER["phone"], "otp": "123456", "role": "customer"}),
        _response(
            {
                "access": "eyJhbGciOiJIUzI1NiJ9.<access>.<signature>",
                "refresh": "eyJhbGciOiJIUzI1NiJ9.<refresh>.<signature>",
                "user": CUSTOMER | {"name": "", "roles": ["customer"]},
            }
        ),
        _refusal(
            400, "otp_invalid", "That code is not right. Check the SMS or ask for a new code."
        ),
    ],
    "orders_quote": [
        _request(
            {
                "pickup": PICKUP,
                "drop": DROP,
                "package": {"description": "Documents", "weight_grams": 500},
            }
        ),
        _response(
            {
                "id": QUOTE_ID,
                "distance_m": 5200,
                "currency": "INR",
                "total_paise": 8200,
                "breakdown": BREAKDOWN,
                "expires_at": "2026-12-07T10:25:00+05:30",
            },
            201,
        ),
        _refusal(400, "outside_service_area", "We do not deliver there yet."),
    ],
    "orders_create": [
        _request({"quote_id": QUOTE_ID, "payment_method": "cod", "notes": "Ring the bell twice"}),
        _response(ORDER, 201),
        _refusal(
            400,
            "quote_expired",
            "This quote has expired; ask for a new one.",
            {"quote_id": ["This quote has expired."]},
        ),
    ],
    "orders_get": [
        _response(ORDER | {"status": "rider_assigned", "rider": RIDER}),
    ],
    "riders_go_online": [
        _response(
            {
                "name": RIDER["name"],
                "vehicle_type": "scooter",
                "vehicle_number": "KA01AB1234",
                "status": "online",
                "approved": True,
            }
        ),
        _refusal(
            403,
            "rider_not_approved",
            "Your rider profile is waiting for approval; you can go online once it is approved.",
        ),
    ],
    "riders_location": [
        _request(
            {
                "lat": 12.9721,
                "lng": 77.5952,
                "recorded_at": "2026-12-07T10:15:30+05:30",
                "accuracy_m": 8.5,
                "heading": 90,
                "speed_mps": 6.2,
            }
        ),
        _response({"recorded_at": "2026-12-07T10:15:30+05:30", "latest": True}, 202),
    ],
    "riders_offers_list": [_response(OFFER)],  # (drf-spectacular shows it in a list)
    "riders_offers_accept": [
        _response(OFFER | {"status": "accepted"}),
        _refusal(409, "offer_not_available", "This offer is no longer available."),
    ],
    "delivery_get": [_response(TRACKING)],
    "delivery_picked_up": [_response(TRACKING)],
    "delivery_deliver": [
        _request({"delivery_code": "4821"}),
        _response(TRACKING | {"status": "delivered", "seq": 7, "rider": None, "eta_seconds": None}),
        _refusal(
            400,
            "delivery_code_invalid",
            "That is not the customer's delivery code.",
            {"delivery_code": ["Wrong code; 4 tries left."]},
        ),
    ],
    "riders_earnings": [
        _response(
            {
                "from": "2026-12-01",
                "to": "2026-12-07",
                "total_paise": 4000,
                "cash_collected_paise": 8200,
                "count": 1,
                "next": None,
                "previous": None,
                "results": [
                    {
                        "order_id": ORDER_ID,
                        "amount_paise": 4000,
                        "cash_collected_paise": 8200,
                        "created_at": "2026-12-07T10:42:11+05:30",
                    }
                ],
            }
        ),
    ],
    "orders_rate": [
        _request({"stars": 5, "comment": "Quick and careful."}),
        _response(
            {
                "stars": 5,
                "comment": "Quick and careful.",
                "created_at": "2026-12-07T10:50:00+05:30",
            },
            201,
        ),
    ],
}
