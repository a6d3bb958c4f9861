"""The status contract without processes: the typed records, their JSON both ways, and the schema
that documents every key."""

from __future__ import annotations

import json

import pytest

from spacetail.config.scope import Scope
from spacetail.state.identity import ProcessIdentity
from spacetail.state.kinds import FailureClass
from spacetail.state.phases import Phase
from spacetail.state.status import SCHEMA, Forward, LastStop, Node, Problem, Proxies, Status
from tests.status_contract import SCHEMA as SCHEMA_FILE
from tests.status_contract import state_of, validate


def connected() -> Status:
    return Status(
        running=True,
        state_dir="/w/.spacetail",
        version="0.1.0",
        phase=Phase.RUNNING,
        connected=True,
        node=Node(backend_state="Running", tailscale_ips=("100.64.0.7",), hostname="ci"),
        proxies=Proxies(http="http://127.0.0.1:8080", socks5="socks5://127.0.0.1:1080"),
        manager_pid=42,
        manager=ProcessIdentity(42, 7, "boot", "pid:[1]", "host/mnt:[2]"),
        forwards=(Forward(listen="127.0.0.1:5432", target="db:5432", open=1, total=3),),
    )


def test_every_key_is_in_the_schema_and_the_schema_has_no_other() -> None:
    schema = json.loads(SCHEMA_FILE.read_text())
    keys = set(Status().to_json())
    assert set(schema["properties"]) == keys
    assert set(schema["required"]) == keys  # every key, always: null when unknown
    assert schema["properties"]["schema"]["const"] == SCHEMA
    phases = set(schema["properties"]["phase"]["enum"]) - {None}
    assert phases == {p.value for p in Phase}
    forward_keys = set(schema["properties"]["forwards"]["items"]["properties"])
    assert forward_keys == set(Forward(listen="a", target="b").to_json())
    last = schema["$defs"]["last_stop"]["oneOf"][1]["properties"]
    assert set(last) == set(LastStop(at="t", reason="r").to_json())
    kinds = set(schema["$defs"]["kind"]["enum"]) - {None}
    assert kinds == {k.value for k in FailureClass}


@pytest.mark.parametrize(
    ("status", "state"),
    [
        (connected(), "connected"),
        (connected().replace(connected=False, phase=Phase.LOGIN), "logging in"),
        (connected().replace(connected=False, phase=Phase.FAILED,
                             login=Problem(reason="r", advice="a", exit_code=1)), "failed"),
        (Status(state_dir="/w"), "stopped"),
        (Status(state_dir="/w", last_stop=LastStop(at="t", reason="r", failure=True)), "stopped"),
        (Status(state_dir="/w", stale="files of manager pid 9 (pid 9 has exited)"), "stale"),
        (connected().replace(foreign=True, problem="another container"), "foreign"),
    ],
)  # fmt: skip
def test_each_state_validates_and_reads_back(status: Status, state: str) -> None:
    data = validate(json.loads(json.dumps(status.to_json())))
    assert state_of(data) == state
    assert Status.from_json(data) == status


def test_the_keys_scripts_read_stay_flat_and_named_as_before() -> None:
    data = connected().replace(login=Problem(reason="why", advice="do")).to_json()
    assert data["backend_state"] == "Running" and data["tailscale_ips"] == ["100.64.0.7"]
    assert data["reason"] == "why" and data["advice"] == "do" and data["phase"] == "running"
    assert data["proxies"] == {"http": "http://127.0.0.1:8080", "socks5": "socks5://127.0.0.1:1080"}
    failed = Status(last_stop=LastStop(at="t", reason="r", failure=True)).to_json()
    assert failed["last_failure"]["reason"] == "r" and failed["last_stop"] is None
    assert Status.from_json(failed).last_stop is not None


def test_scope_and_tags_say_what_the_node_joined_with() -> None:
    from spacetail.state.report import describe

    joined = connected().replace(scope=Scope.READ, tags=("tag:ci-read",))
    data = validate(json.loads(json.dumps(joined.to_json())))
    assert data["scope"] == "read" and data["tags"] == ["tag:ci-read"]
    assert Status.from_json(data) == joined
    assert "  joined with scope read (Spacelift token), tags tag:ci-read" in describe(joined)
    plain = connected().replace(tags=("tag:ci",))
    assert plain.to_json()["scope"] is None
    assert "  joined with tags tag:ci" in describe(plain)
    assert not [line for line in describe(connected()) if "joined" in line]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"scope": "admin"}, "'admin' is not a Scope"),
        ({"restarts": True}, "Status.restarts: expected int"),
        ({"running": 1}, "Status.running: expected bool"),
        ({"tailscale_ips": "100.1.1.1"}, "Node.tailscale_ips: expected a list"),
        ({"phase": "dancing"}, "'dancing' is not a Phase"),
        ({"proxies": {"http": "x"}}, "Proxies: socks5 is missing"),
        ({"forwards": [{"listen": 1, "target": "x"}]}, "Forward.listen: expected str"),
        ({"schema": 0}, "unknown schema 0"),
    ],
)
def test_a_reply_that_is_not_a_status_is_refused_whole(
    change: dict[str, object], message: str
) -> None:
    data = {**connected().to_json(), **change}
    with pytest.raises(ValueError, match=message):
        Status.from_json(data)


def test_a_newer_or_older_reply_is_read_for_what_it_shares() -> None:
    data = connected().to_json()
    data["a_later_field"] = {"anything": 1}  # a newer manager: ignored
    del data["uptime"]  # an older one: the default
    read = Status.from_json(data)
    assert read.uptime is None and read.node.tailscale_ips == ("100.64.0.7",)


def test_records_are_keyword_only_immutable_and_compare_by_value() -> None:
    with pytest.raises(TypeError):
        Node("Running")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="has no field 'nope'"):
        Node(nope=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="needs 'listen'"):
        Forward(target="x")  # type: ignore[call-arg]
    node = Node(backend_state="Running")
    with pytest.raises(AttributeError, match="immutable"):
        node.backend_state = "Stopped"  # type: ignore[misc]
    assert node == Node(backend_state="Running") and hash(node) == hash(node.replace())
    assert node != Node(backend_state="Stopped") and node != Problem()


def test_a_kind_this_spacetail_does_not_know_is_still_read() -> None:
    """A newer manager may name a kind of its own: the status is read, the kind unknown here."""
    from spacetail.state.kinds import FailureClass, kind_of

    status = Status.from_json({**Status().to_json(), "reason": "r", "kind": "from-the-future"})
    assert status.login.kind == "from-the-future" and kind_of(status.login.kind) is None
    assert kind_of("key-rejected") is FailureClass.KEY_REJECTED and kind_of(None) is None
