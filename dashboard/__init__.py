"""Central dashboard: subscribes to the fleet's MQTT topics, stores every result once and
serves the staff web page and REST API (``sarco-dashboard``; see docs/dashboard.md)."""
