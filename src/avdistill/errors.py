"""One exception type for every problem a user can fix: bad files, bad options."""


class AVDistillError(Exception):
    """A user-facing error. The message names the file or option and says what is wrong."""


class DataError(AVDistillError):
    """An input file is unreadable, malformed, or holds values that cannot be used."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class ConfigError(AVDistillError):
    """An option has an impossible value."""
