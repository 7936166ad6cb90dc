"""County prescription pre-review engine (县域集中审方)."""

__version__ = "0.1.0"
