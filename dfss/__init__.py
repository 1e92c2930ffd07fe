"""DFSS: Distil FCOS for Security Scanning."""

__version__ = "0.1.0"
