"""One exception type for bad input: its message is one line that names the problem and the fix."""


class CramlensError(ValueError):
    """Bad input or an impossible setting; scripts print the message alone (no traceback) and exit 2."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


def check(condition: bool, message: str) -> None:
    """Raise CramlensError(message) unless condition holds."""
    if not condition:
        raise CramlensError(message)
