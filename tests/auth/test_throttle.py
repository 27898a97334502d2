"""Login throttling that an outsider cannot turn against a user (issue 12, part 4).

Through the service with committed sessions, as the login route uses it (a failed attempt is committed),
so simultaneous attempts really race in PostgreSQL; the HTTP side (addresses from X-Forwarded-For only
behind a configured proxy) is in test_proxy_and_cookies.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import Counter

import pytest

from app.auth import service
from app.auth.service import Throttle, throttle_wait
from app.config import Settings
from app.db import session_factory
from app.errors import AppError

PW = "correct-horse-1"


def attempt(settings: Settings, username: str, password: str, address: str) -> int:
    """One login as the route makes it: 303 on success, else the error's status (401 wrong, 429 throttled)."""
    session = session_factory()()
    try:
        service.login(session, settings, username, password, address)
        session.commit()
        return 303
    except AppError as exc:
        session.commit()  # the route keeps the failure, as here
        return exc.status_code
    finally:
        session.close()


def settings(**values: float) -> Settings:
    return Settings(**values)  # type: ignore[arg-type]


NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def ago(seconds: float) -> dt.datetime:
    return NOW - dt.timedelta(seconds=seconds)


def test_the_hard_block_is_per_username_and_address_and_the_delays_grow_per_username():
    s = settings(
        login_max_failures=5, login_window_seconds=900, login_delay_seconds=1, login_max_delay_seconds=60
    )
    none = Throttle(0, None)
    # Five from this address: this address waits out the window after the last failure.
    assert throttle_wait(Throttle(5, ago(100)), Throttle(5, ago(100)), none, NOW, s) == 800
    # Four from here and any number elsewhere: only the username's delay, 1 s after the fifth failure ...
    assert throttle_wait(Throttle(4, ago(0.25)), Throttle(5, ago(0.25)), none, NOW, s) == 0.75
    assert throttle_wait(Throttle(0, None), Throttle(5, ago(1)), none, NOW, s) == 0
    # ... doubling with each failure, never beyond the cap: nobody elsewhere can lock the user out.
    assert throttle_wait(none, Throttle(6, ago(0)), none, NOW, s) == 2
    assert throttle_wait(none, Throttle(8, ago(0)), none, NOW, s) == 8
    assert throttle_wait(none, Throttle(10_000, ago(0)), none, NOW, s) == 60
    # The address for any username (spraying) gets the same delays.
    assert throttle_wait(none, none, Throttle(7, ago(1)), NOW, s) == 3
    # Failures older than the window no longer count.
    assert throttle_wait(Throttle(50, ago(901)), Throttle(50, ago(901)), Throttle(50, ago(901)), NOW, s) == 0


def test_an_outsider_cannot_lock_a_user_out_and_stays_blocked_at_their_own_address(make_user):
    name, pw = make_user("ann", password=PW)
    fast = settings(login_delay_seconds=0.02, login_max_delay_seconds=0.05)

    def wrong(address: str) -> int:
        time.sleep(0.06)  # past the username's (capped) delay
        return attempt(fast, name, "wrong-guess", address)

    # Fifteen wrong passwords from outside, five of them from one address (the old lock-out took five).
    assert [wrong("203.0.113.1") for _ in range(5)] == [401] * 5
    assert [wrong(f"203.0.113.{i}") for i in range(2, 12)] == [401] * 10
    time.sleep(0.06)
    # That address is blocked for this username, the right password included ...
    assert attempt(fast, name, pw, "203.0.113.1") == 429
    # ... the user, from their own address, is not.
    assert attempt(fast, name, pw, "198.51.100.7") == 303


@pytest.mark.parametrize("same_address", [True, False])
def test_simultaneous_wrong_passwords_get_no_more_password_checks_than_the_limit(make_user, same_address):
    name, _ = make_user("ann", password=PW)
    slow = settings(login_max_failures=5, login_delay_seconds=300, login_max_delay_seconds=300)
    barrier = threading.Barrier(15)
    results: list[int] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        barrier.wait()
        code = attempt(slow, name, "wrong-guess", "192.0.2.1" if same_address else f"192.0.2.{i + 1}")
        with lock:
            results.append(code)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(15)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    # A 401 is a password checked (and wrong); a 429 was refused before any check.
    assert Counter(results) == {401: 5, 429: 10}


def test_a_success_clears_only_that_users_failures(make_user):
    ann, ann_pw = make_user("ann", password=PW)
    bob, bob_pw = make_user("bob", password=PW + "b")
    fast = settings(login_delay_seconds=0.01, login_max_delay_seconds=0.01)
    here = "198.51.100.20"
    for _ in range(3):
        assert attempt(fast, bob, "wrong-guess", here) == 401
    for _ in range(2):
        assert attempt(fast, ann, "wrong-guess", here) == 401
    time.sleep(0.02)
    assert attempt(fast, ann, ann_pw, here) == 303
    # Ann's success did not wipe Bob's three failures from this address: two more and he is blocked here.
    for _ in range(2):
        time.sleep(0.02)
        assert attempt(fast, bob, "wrong-guess", here) == 401
    time.sleep(0.02)
    assert attempt(fast, bob, bob_pw, here) == 429
    # Ann's own count started again from zero: four failures leave her free to log in.
    for _ in range(4):
        time.sleep(0.02)
        assert attempt(fast, ann, "wrong-guess", here) == 401
    time.sleep(0.02)
    assert attempt(fast, ann, ann_pw, here) == 303
