"""/ops/: the console page. Who gets it, and what it loads (no inline script, no CDN)."""

import re

import pytest
from django.test import Client

from ops.tests.support import (
    CONSOLE_URL,
    browser,
    customer,
    dispatcher,
    finance,
    staff_without_group,
    support,
)

pytestmark = pytest.mark.django_db


def test_anonymous_visitors_are_sent_to_the_admin_sign_in_and_back():
    response = Client().get(CONSOLE_URL)

    assert response.status_code == 302
    assert response["Location"] == "/admin/login/?next=/ops/"


@pytest.mark.parametrize("who", [customer, staff_without_group, finance])
def test_signed_in_people_without_the_consoles_permissions_get_403(who):
    response = browser(who()).get(CONSOLE_URL)

    assert response.status_code == 403
    assert b"dispatcher or support" in response.content


@pytest.mark.parametrize("who", [dispatcher, support])
def test_ops_who_see_every_order_and_rider_get_the_page(who):
    response = browser(who()).get(CONSOLE_URL)

    assert response.status_code == 200
    page = response.content.decode()
    assert 'data-snapshot-url="/ops/api/snapshot/"' in page
    assert 'data-socket-path="/ws/ops/"' in page
    assert 'data-tile-url="https://tile.openstreetmap.org/{z}/{x}/{y}.png"' in page
    assert response["Cache-Control"] == "no-store"


def test_the_page_loads_only_this_servers_scripts_and_allows_tiles_as_images(settings):
    settings.MAP_TILE_URL = "https://{s}.tiles.example.com/{z}/{x}/{y}.png"

    response = browser(dispatcher()).get(CONSOLE_URL)

    page = response.content.decode()
    scripts = re.findall(r"<script[^>]*>", page)
    assert scripts == ['<script src="/static/ops/console.js" defer>']
    assert "</script>" in page and not re.search(r"<script[^>]*>[^<]+</script>", page)
    links = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert links and all(link.startswith("/") and not link.startswith("//") for link in links)
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert "img-src 'self' data: https://*.tiles.example.com" in policy


def test_the_bundle_leaflet_and_its_images_are_served_by_the_app():
    client = browser(dispatcher())

    script = client.get("/static/ops/console.js")
    style = client.get("/static/ops/console.css")

    assert script.status_code == 200 and b"Leaflet 1.9.4" in b"".join(script.streaming_content)
    css = b"".join(style.streaming_content).decode()
    assert ".leaflet-container" in css
    for image in re.findall(r"url\(\.?/?(images/[^)]+\.png)\)", css):
        assert client.get(f"/static/ops/{image}").status_code == 200, image


def test_without_a_tile_url_the_page_asks_for_no_tiles(settings):
    settings.MAP_TILE_URL = ""

    response = browser(dispatcher()).get(CONSOLE_URL)

    assert 'data-tile-url=""' in response.content.decode()
    assert "img-src 'self' data:;" in response["Content-Security-Policy"]
