"""What runs at a city: capture, push, snapshot, the CRM schema."""
