"""The one user-facing error type: raised deep, shown once by the CLI, never as a traceback."""

from __future__ import annotations

# Exit codes (pipx keeps them named in one place too).
EXIT_OK = 0
EXIT_FAILED = 1  # an action failed: helm, kubectl, training, the server
EXIT_USAGE = 2  # the user's input is wrong: a bad spec, a missing file, bad arguments


class MlctlError(Exception):
    """A failure the user can act on: a message, an optional hint, an exit code."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message

    def prefixed(self, prefix: str) -> MlctlError:
        """This error with `prefix: ` before its message: a copy of the same class (so its exit code
        and type survive), whose cause is this error (shown with `mlctl -v`)."""
        new = type(self).__new__(type(self))  # no __init__: subclasses take other arguments
        new.__dict__.update(self.__dict__)
        new.message = f"{prefix}: {self.message}"
        new.args = (new.message,)
        new.__cause__ = self
        return new


class UsageError(MlctlError):
    """The user's input is wrong (exit 2)."""

    exit_code = EXIT_USAGE


class SpecError(UsageError):
    """A spec file or model contract is unreadable or invalid: one line per problem, each naming
    file:line:col."""

    def __init__(self, path: str, problems: list[str], what: str = "spec") -> None:
        self.path = path
        self.problems = problems
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        super().__init__(f"{path}: invalid {what} ({count})\n" + "\n".join(problems))


class SmokeTestFailed(MlctlError):
    """The deployed model answered an example wrongly, from other weights, or not at all."""
