"""What runs at the hub: inbox, apply, golden records, quarantine, conflicts, audit, reports."""
