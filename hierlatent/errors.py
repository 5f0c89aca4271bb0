"""The small typed error hierarchy: user mistakes become one clear line and a non-zero exit, not a traceback.

Every error raised for bad *input* (a config value, a file, a flag) derives from ``HierlatentError`` and
names the offending field, flag, file or grammar line in its message. ``hierlatent.cli.main`` catches
``HierlatentError`` and prints ``error: <message>`` to stderr with exit status 2.
"""


class HierlatentError(Exception):
    """Base of all user-facing errors: the message is shown as is, without a traceback."""


class ConfigError(HierlatentError, ValueError):
    """A configuration value is invalid; the message starts with the flag or field name."""


class GrammarError(ConfigError):
    """A grammar file cannot be used; the message names the file and line."""


class CorpusError(HierlatentError):
    """A corpus cannot be generated, written or read (cache not writable, disk full, corrupt shard)."""


class CheckpointError(HierlatentError):
    """A checkpoint is missing, corrupt or belongs to another model."""


class ProbeError(ConfigError):
    """A probe cannot run with the given arguments or on the given model."""
