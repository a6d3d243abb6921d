import pytest


@pytest.mark.checklist("P6.8", "P6.9", "P6.11", "P8.6", "P9.1", "P11.10", "P11.16")
@pytest.mark.django_db
def test_health_is_ok_with_database_and_redis_up(api_client):
    # when
    response = api_client.get("/health/")

    # then
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["cache"] == "ok"
    assert response["Cache-Control"] == "no-store"
