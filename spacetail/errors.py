"""The two kinds of failure spacetail reports, and the exit code each one maps to."""


class SpacetailError(Exception):
    """A failure with a message meant for a person; the CLI prints it and exits."""

    exit_code = 1


class ConfigError(SpacetailError):
    """Bad usage or configuration: one line naming the setting and the fix; nothing started."""

    exit_code = 2


class OperationFailed(SpacetailError):
    """The operation was attempted and failed; everything it started has been stopped."""

    exit_code = 1
