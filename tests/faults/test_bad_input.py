"""Input no host or port can be: one line naming the input and the fix, exit 2, never a traceback;
with a manager Running (the fake tailnet), so nothing but the input can be blamed."""

from __future__ import annotations

import pytest

from tests.faultkit import stopped_after, up_ok
from tests.helpers import Userland, st

ARABIC_12 = "\u0661\u0662"  # "١٢": str.isdigit() and int() take it as 12
NOT_UTF8 = "\udcff"  # the byte 0xff on the command line (what $'\xff' passes)

CASES = [
    # (arguments, what the line must name)
    (["nc", "h" * 300, "22"], ["nc HOST", "300 characters", "at most 253"]),
    (["nc", NOT_UTF8, "22"], ["nc HOST", r"'\xff' is not valid UTF-8"]),
    (["nc", "db." + "x" * 64, "22"], ["nc HOST", "1-63 characters"]),
    (["nc", "db\nFORGED", "22"], ["nc HOST", r"'db\nFORGED'"]),
    (["resolve", NOT_UTF8], ["resolve NAME", r"'\xff' is not valid UTF-8"]),
    (["resolve", "r" * 300], ["resolve NAME", "300 characters"]),
    (["nc", "x", ARABIC_12], ["nc PORT", f"'{ARABIC_12}' is not a port; use 1-65535"]),
    (["doctor", "--target", f"x:{ARABIC_12}"], ["--target", "is not a port"]),
    (["up", "--no-watch", "--forward", f"5432=x:{ARABIC_12}"], ["--forward", "target port"]),
]


@pytest.mark.parametrize(("args", "named"), CASES, ids=lambda v: repr(v)[:40])
def test_a_host_or_port_that_cannot_be_is_one_line_and_exit_2(
    userland: Userland, fake_env: dict[str, str], args: list[str], named: list[str]
) -> None:
    with stopped_after(userland, fake_env):
        up_ok(userland, fake_env)
        result = st(userland, fake_env, *args, timeout=30)
        assert "Traceback" not in result.stderr, result.stderr
        assert result.returncode == 2, result.stderr
        assert result.stdout == ""
        assert result.stderr.count("\n") == 1, result.stderr
        assert result.stderr.startswith("spacetail: error: ")
        for fragment in named:
            assert fragment in result.stderr
