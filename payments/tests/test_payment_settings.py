"""Production refuses half-configured Razorpay keys; /api/config/ reports payments honestly."""

import pytest

from core.tests.production_env import production_env, refusal_problems, start_django


@pytest.mark.slow
@pytest.mark.parametrize(
    "changes",
    [
        {"RAZORPAY_KEY_ID": "rzp_test_x", "RAZORPAY_WEBHOOK_SECRET": "w"},
        {"RAZORPAY_KEY_ID": "rzp_test_x", "RAZORPAY_KEY_SECRET": "s"},
    ],
    ids=["no-key-secret", "no-webhook-secret"],
)
def test_production_refuses_a_key_id_without_its_secrets(changes):
    result = start_django(production_env(**changes))

    assert result.returncode != 0
    assert any("RAZORPAY_KEY_ID" in problem for problem in refusal_problems(result.stderr))


@pytest.mark.django_db
@pytest.mark.checklist("P7.15", "P9.2")
def test_config_reports_payments_on_with_the_public_key_only(api_client, settings):
    settings.RAZORPAY_KEY_ID = "rzp_test_public"
    settings.RAZORPAY_KEY_SECRET = "very-secret"
    settings.PAYMENTS_ENABLED = True

    body = api_client.get("/api/config/").json()

    assert (body["payments_enabled"], body["razorpay_key_id"]) == (True, "rzp_test_public")
    assert "very-secret" not in str(body)
