"""MQTT: the payload schema (shared with the dashboard), the on-disk outbox and the device's
connection."""
