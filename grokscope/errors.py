"""The one exception type for user mistakes: the CLI prints its message on one line and exits non-zero."""


class GrokscopeError(Exception):
    """A problem the user can fix (bad config, missing or corrupt run file, ...)."""
