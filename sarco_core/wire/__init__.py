"""The MQTT wire: what devices and the dashboard send each other (:mod:`sarco_core.wire.schema`)
and how they reach the broker (:mod:`sarco_core.wire.broker`)."""
