"""spacetail as a Spacelift plugin: a tailnet inside every phase of the runs of the stacks it is
attached to, as the non-root Spacelift user, with nothing left running.

The manifest carries spacetail itself: a built spacetail.pyz, as a base64 text mounted file (a
plugin's mounted files are text). Build the pyz, then generate the manifest from it (`tox -e pyz`
does both, into dist/):

    python tools/build_pyz.py --out dist
    SPACETAIL_PYZ=dist/spacetail.pyz spaceforge generate plugin/plugin.py -o dist/plugin.yaml

The release publishes that plugin.yaml beside the spacetail.pyz it embeds; the manifest is not
kept in the repository, since it changes with every change of spacetail.

Everything the plugin does is in its context's raw hook lines, which run in the phase's own
shell so that the proxy variables `spacetail up --env` exports reach terraform; it has no hook
methods (those would run as separate scripts). The hook lines are read from
terraform/hooks.json, the one source the Terraform module uses too: the first unpacks the
mounted pyz to /mnt/workspace/spacetail/spacetail.pyz, the next checks its sha256 against the
one computed here, and only then does the image's python3 run it (tailscale is installed when
the image lacks it). No package registry is asked at run time.

Its context carries no label: which stacks get it is chosen where the plugin is installed (the
label Spacelift asks for then), so two installs (two tailnets) never attach to the same stacks
unless told to. The class docstring is the usage text Spacelift shows (Markdown).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import ClassVar

from spaceforge import Context, MountedFile, Parameter, SpaceforgePlugin, Variable

# Only read while generating the manifest, from the repository.
_REPO = Path(__file__).resolve().parent.parent
_HOOKS = json.loads((_REPO / "terraform" / "hooks.json").read_text("utf-8"))
PHASES = tuple(_HOOKS["phases"])
# Where the manifest mounts the pyz's base64 text; the first hook line decodes it.
PYZ_TEXT = "/mnt/workspace/plugins/spacetail/spacetail.pyz.b64"


def _pyz() -> bytes:
    path = Path(os.environ.get("SPACETAIL_PYZ") or _REPO / "dist" / "spacetail.pyz")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SystemExit(
            f"plugin.py: no spacetail.pyz to embed ({exc}): build it first "
            "(python tools/build_pyz.py --out dist, or tox -e pyz), or set SPACETAIL_PYZ"
        ) from None


PYZ = _pyz()
PYZ_SHA256 = hashlib.sha256(PYZ).hexdigest()
BEFORE = [
    *_HOOKS["pyz_unpack"],
    *(line.replace("@SPACETAIL_PYZ_SHA256@", PYZ_SHA256) for line in _HOOKS["pyz_before"]),
]
AFTER = list(_HOOKS["pyz_after"])


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
    ("client_id_read", "TS_CLIENT_ID_READ", "Workload identity client id, read scope",
     "Least privilege per phase: the federated identity that Spacelift tokens of scope read "
     "(proposed runs, plans awaiting approval) are exchanged with. Set with the write one.",
     False),
    ("client_id_write", "TS_CLIENT_ID_WRITE", "Workload identity client id, write scope",
     "The federated identity for tokens of scope write (approved applies, tasks, destroy).",
     False),
    ("id_token", "TS_ID_TOKEN", "Workload identity ID token",
     "An ID token for workload identity; leave empty to use Spacelift's OIDC token.", True),
    ("tags", "SPACETAIL_TAGS", "Tags",
     "Comma-separated tags the node advertises, e.g. tag:ci (required with OAuth and "
     "workload identity).", False),
    ("tags_read", "SPACETAIL_TAGS_READ", "Tags, read scope",
     "Comma-separated tags of read-scope phases, e.g. tag:ci-read.", False),
    ("tags_write", "SPACETAIL_TAGS_WRITE", "Tags, write scope",
     "Comma-separated tags of write-scope phases, e.g. tag:ci-write.", False),
    ("hostname", "TS_HOSTNAME", "Hostname",
     "The node's name, a DNS label; empty: spacelift-<stack>-<run id>.", False),
    ("forwards", "SPACETAIL_FORWARDS", "Forwards",
     "Local ports forwarded to tailnet hosts: [ADDR:]LPORT=HOST:PORT, comma or space "
     "separated, for clients that ignore proxy variables (psql, mysql, ssh).", False),
    ("extra_args", "TS_EXTRA_ARGS", "Extra tailscale up arguments",
     "More `tailscale up` flags, e.g. --exit-node=... (never a secret).", False),
)  # fmt: skip


class SpacetailPlugin(SpaceforgePlugin):  # type: ignore[misc]  # untyped base class
    """
    Puts a Tailscale tailnet inside every phase of a run: `spacetail up` starts tailscale
    (userspace networking, proxies on 127.0.0.1) before the phase and exports the proxy
    variables into its shell, so terraform reaches tailnet hosts; `spacetail down` logs the
    node out and stops everything after it. Runs as the Spacelift user, on the stock runner
    image or the spacetail runner image.

    ## Usage

    1. Fill in **one** way of authenticating: an auth key (reusable, ephemeral, tagged); an
       OAuth client secret with **Tags**; or a workload identity client id with **Tags**
       (Spacelift's own OIDC token is presented, no secret is stored).
    2. Choose the stacks at install: the label you give the plugin attaches its context to
       the stacks that carry it. Nothing else is attached.
    3. Run: each phase joins as `spacelift-<stack>-<run id>` and leaves when it ends. A
       mistake (no credential, OAuth without tags) fails the phase before terraform runs,
       with one line that names the setting.

    Least privilege per phase: instead of one client id and **Tags**, give the read-scope and
    write-scope client ids and tags (federated identities trusting scope read and scope
    write): a plan awaiting approval then joins with the read tags only, and only the
    approved apply with the write tags. Tailscale enforces it; no secret is stored.

    Optional: **Forwards** (local ports for psql, mysql, ssh), **Hostname**, **Extra tailscale
    up arguments** (never a secret).

    spacetail comes with the plugin: its manifest carries spacetail.pyz, which each phase
    unpacks to `/mnt/workspace/spacetail/spacetail.pyz`, checks against the sha256 the
    manifest was made with (a mismatch stops the phase before anything runs) and runs with
    the image's `python3`. Nothing is downloaded from a package registry.
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
            description="spacetail.pyz, its hooks for every phase and the plugin's settings",
            mounted_files=[
                MountedFile(
                    path=PYZ_TEXT,
                    content=base64.encodebytes(PYZ).decode("ascii"),
                    sensitive=False,
                )
            ],
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
