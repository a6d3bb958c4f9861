"""spacetail as a Spacelift plugin: a tailnet inside every phase of the runs of the stacks
labelled `tailscale`, as the non-root Spacelift user, with nothing left running.

Regenerate the manifest after a change (the tests check it is current):

    spaceforge generate plugin/plugin.py -o plugin/plugin.yaml

Everything the plugin does is in its context's raw hook lines, which run in the phase's own
shell so that the proxy variables `spacetail up --env` exports reach terraform; it has no hook
methods (those would run as separate scripts). The hook lines are read from
terraform/hooks.json, the one source that the README and the Terraform module use too. They
install spacetail (into a virtualenv in the workspace) and tailscale when the runner image
lacks them, so the plugin works on Spacelift's stock image and on the spacetail runner image.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

from spaceforge import Context, Parameter, SpaceforgePlugin, Variable

# Only read while generating the manifest, from the repository.
_HOOKS = json.loads(
    (Path(__file__).resolve().parent.parent / "terraform" / "hooks.json").read_text("utf-8")
)
BEFORE = [*_HOOKS["install"], *_HOOKS["up"]]
AFTER = list(_HOOKS["down"])
PHASES = tuple(_HOOKS["phases"])


def _param(pid: str, name: str, description: str, *, sensitive: bool = False) -> Parameter:
    # Fixed ids keep the generated manifest the same from one generation to the next.
    # Every parameter is optional and empty by default: an empty variable is unset for
    # spacetail, which names what is missing when no credential is set.
    return Parameter(
        id=pid,
        name=name,
        description=description,
        type="string",
        sensitive=sensitive,
        required=False,
        default="",
    )


# (parameter id, variable, name, description, secret)
SETTINGS = (
    ("auth_key", "TS_AUTHKEY", "Tailscale auth key",
     "An auth key (tskey-auth-...), reusable and ephemeral for CI. Set one way of "
     "authenticating: this, the OAuth client secret, or the workload identity client id.",
     True),
    ("oauth_client_secret", "TS_CLIENT_SECRET", "OAuth client secret",
     "A Tailscale OAuth client secret (tskey-client-...); needs tags.", True),
    ("client_id", "TS_CLIENT_ID", "Workload identity client id",
     "Workload identity federation: the federated identity's client id; needs tags. The ID "
     "token is Spacelift's own OIDC token unless the ID token parameter is set.", False),
    ("id_token", "TS_ID_TOKEN", "Workload identity ID token",
     "An ID token for workload identity; leave empty to use Spacelift's OIDC token.", True),
    ("audience", "TS_AUDIENCE", "Workload identity audience",
     "The audience the federated identity expects, if any.", False),
    ("tags", "SPACETAIL_TAGS", "Tags",
     "Comma-separated tags the node advertises, e.g. tag:ci (required with OAuth and "
     "workload identity).", False),
    ("hostname", "TS_HOSTNAME", "Hostname",
     "The node's name, a DNS label; empty: spacelift-<stack>-<run id>.", False),
    ("forwards", "SPACETAIL_FORWARDS", "Forwards",
     "Local ports forwarded to tailnet hosts: [ADDR:]LPORT=HOST:PORT, comma or space "
     "separated, for clients that ignore proxy variables (psql, mysql, ssh).", False),
    ("extra_args", "TS_EXTRA_ARGS", "Extra tailscale up arguments",
     "More `tailscale up` flags, e.g. --exit-node=... (never a secret).", False),
    ("pip_spec", "SPACETAIL_PIP_SPEC", "spacetail pip spec",
     "What pip installs when the runner image has no spacetail; empty: spacetail from PyPI.",
     False),
)  # fmt: skip


class SpacetailPlugin(SpaceforgePlugin):  # type: ignore[misc]  # untyped base class
    """
    Put a Tailscale tailnet inside Spacelift runs: spacetail starts tailscale (userspace
    networking, proxies on loopback) before every phase of the stacks labelled `tailscale`,
    exports the proxy variables into the phase's shell, and stops it all after the phase.
    """

    __plugin_name__ = "spacetail"
    __version__ = "0.1.0"
    __author__ = "the spacetail authors"
    __labels__: ClassVar[list[str]] = ["tailscale", "networking"]

    __parameters__: ClassVar[list[Parameter]] = [
        _param(pid, name, description, sensitive=secret)
        for pid, _var, name, description, secret in SETTINGS
    ]

    __contexts__: ClassVar[list[Context]] = [
        Context(
            name_prefix="spacetail",
            description="spacetail's hooks for every phase and the plugin's settings",
            labels=["autoattach:tailscale"],
            env=[
                Variable(key=var, value_from_parameter=pid, sensitive=secret)
                for pid, var, _name, _description, secret in SETTINGS
            ],
            hooks={
                **{f"before_{phase}": list(BEFORE) for phase in PHASES},
                **{f"after_{phase}": list(AFTER) for phase in PHASES},
            },
        )
    ]
