import pytest


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
