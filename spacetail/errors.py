"""The two kinds of failure spacetail reports, and the exit code each one maps to."""


class SpacetailError(Exception):
    """A failure with a message meant for a person; the CLI prints it and exits."""

    exit_code = 1


class ConfigError(SpacetailError):
    """Bad usage or configuration: one line naming the setting and the fix; nothing started."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        # One line, whatever a setting's value holds: a newline in a path must not forge a
        # second line of output.
        super().__init__("".join(c if c.isprintable() else repr(c)[1:-1] for c in message))


class OperationFailed(SpacetailError):
    """The operation was attempted and failed; everything it started has been stopped."""

    exit_code = 1
