"""The admin pages' shared fixture: a client logged in as an admin."""

from __future__ import annotations

import pytest

from app.orm import Role
from tests.conftest import login


@pytest.fixture
def admin(app_client, make_user):
    name, pw = make_user("root", Role.admin)
    login(app_client, name, pw)
    return app_client
