"""Accuracy assessment and area estimation by the book (``python -m core.assess sample|estimate``)."""
