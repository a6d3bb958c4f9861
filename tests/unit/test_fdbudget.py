"""The forwards' descriptor budget: the soft limit raised as far as needed, else the cap lowered."""

from __future__ import annotations

import resource

from spacetail.forwards.fdbudget import FD_RESERVE, FDS_PER_CONNECTION, Budget, budget
from spacetail.state.report import _describe_forward
from spacetail.state.status import Forward

NEED_ONE = FD_RESERVE + 256 * FDS_PER_CONNECTION


def limits(soft: int, hard: int) -> tuple[list[tuple[int, int]], dict[str, object]]:
    calls: list[tuple[int, int]] = []
    return calls, {"get": lambda: (soft, hard), "set_limit": calls.append}


def test_a_low_soft_limit_is_raised_as_far_as_the_forwards_need() -> None:
    calls, io = limits(1024, 1 << 20)
    assert budget(1, 256, **io) == Budget(256, NEED_ONE, raised_from=1024)  # type: ignore[arg-type]
    assert calls == [(NEED_ONE, 1 << 20)]
    calls, io = limits(1024, resource.RLIM_INFINITY)
    assert budget(2, 256, **io).fd_limit == FD_RESERVE + 2 * 256 * FDS_PER_CONNECTION  # type: ignore[arg-type]


def test_a_hard_limit_too_low_lowers_the_cap_to_fit() -> None:
    calls, io = limits(1024, 1024)
    got = budget(1, 256, **io)  # type: ignore[arg-type]
    assert calls == []
    assert got == Budget((1024 - FD_RESERVE) // FDS_PER_CONNECTION, 1024)
    assert got.max_open * FDS_PER_CONNECTION + FD_RESERVE <= 1024
    calls, io = limits(512, 2048)  # raised to the hard limit, and still short for three
    got = budget(3, 256, **io)  # type: ignore[arg-type]
    assert got.raised_from == 512 and got.fd_limit == 2048
    assert 3 * got.max_open * FDS_PER_CONNECTION + FD_RESERVE <= 2048


def test_enough_already_is_left_alone_and_a_refusal_keeps_what_is() -> None:
    calls, io = limits(65536, 65536)
    assert budget(1, 256, **io) == Budget(256, 65536)  # type: ignore[arg-type]
    assert calls == []

    def refuse(_limits: tuple[int, int]) -> None:
        raise ValueError("not allowed")

    got = budget(1, 256, get=lambda: (100, 4096), set_limit=refuse)
    assert got == Budget(6, 100)
    assert budget(1, 256, get=lambda: (10, 10), set_limit=refuse).max_open == 1


def test_the_status_line_says_which() -> None:
    base = {"listen": "127.0.0.1:5432", "target": "db:5432", "open": 0, "total": 0,
            "bytes_sent": 0, "bytes_received": 0}  # fmt: skip
    raised = _describe_forward(Forward.from_json({**base, **Budget(256, 1600, 1024).as_dict()}))
    assert raised.endswith("; 256 open at most (descriptor limit raised from 1024 to 1600)")
    lowered = _describe_forward(
        Forward.from_json({**base, "refused": 3, **Budget(160, 1024).as_dict()})
    )
    assert ", 3 refused; 160 open at most: the descriptor limit is 1024" in lowered
    paused = _describe_forward(
        Forward.from_json({**base, "accept_paused": True, **Budget(256, 9999).as_dict()})
    )
    assert "not accepting for a moment: out of file descriptors" in paused
