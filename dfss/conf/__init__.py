"""Hydra configuration tree of DFSS, installed as the package ``dfss.conf``."""
