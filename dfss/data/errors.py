"""Exceptions raised by the data layer. Every message names the file, image id or annotation id."""

from dfss.errors import UserError


class DataError(UserError):
    """Bad input data: malformed json, unreadable image, inconsistent annotations."""


class ClassTableError(DataError):
    """The json's categories cannot give a usable class table (missing supercategory, unknown name...)."""
