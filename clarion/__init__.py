"""Clarion: marketing automation you own, from CRM extract to approved campaign content."""

from __future__ import annotations

import os

__version__ = "0.1.0"

# Telemetry and hub look-ups call out to the internet, which fails or hangs here and on many customer
# machines. Turn them off before any of those libraries is imported; a user may still opt back in by
# setting the variable themselves.
_OFFLINE_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "RUNTIME__DLTHUB_TELEMETRY": "false",
    "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
}
for _key, _value in _OFFLINE_DEFAULTS.items():
    os.environ.setdefault(_key, _value)
