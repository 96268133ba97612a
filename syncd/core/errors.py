"""The one exception tree of syncd: input errors exit 2, everything else exits 1."""

from __future__ import annotations


class SyncdError(Exception):
    """Root of every error syncd raises on purpose."""

    exit_code = 1


class InputError(SyncdError):
    """Bad input from the user: config, policy, arguments. Exit code 2."""

    exit_code = 2


class ConfigError(InputError):
    """A node config file (or its environment overrides) is invalid."""

    def __init__(self, source: str, key: str, reason: str) -> None:
        self.source = source
        self.key = key
        self.reason = reason
        super().__init__(f"{source}: {key}: {reason}")


class PolicyError(InputError):
    """A sync policy file is invalid."""

    def __init__(self, source: str, key: str, reason: str) -> None:
        self.source = source
        self.key = key
        self.reason = reason
        super().__init__(f"{source}: {key}: {reason}")


class UsageError(InputError):
    """A command was called with arguments that cannot work."""


class SchemaMismatch(InputError):
    """The live database does not match the policy (`schema check`)."""


class DatabaseError(SyncdError):
    """A database operation failed for a reason retrying will not fix."""


class TransientError(DatabaseError):
    """A database failure worth retrying: connection lost, timeout, deadlock, serialization."""


class BatchRefused(SyncdError):
    """The hub refused a batch (unknown node, checksum clash, wrong identity)."""


class NodeLocked(SyncdError):
    """Another daemon already holds this node's lock."""
