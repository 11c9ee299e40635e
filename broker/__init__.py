"""EAEU single-window gateway: validate, verify, route, store, deliver, countersign, receipt."""

__version__ = "0.1.0"
