"""syncd: province/city data synchronization for a bank's CRM."""

__version__ = "0.1.0"
