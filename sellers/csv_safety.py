"""CSV that spreadsheet programs open as text: every cell that could start a formula is defused.

Seller names are typed by staff and sellers, so every CSV spconnect writes (exports, campaign
reports) goes through these writers.
"""

from __future__ import annotations

import csv

# Spreadsheet programs run a cell starting with one of these as a formula.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value) -> str:
    """The cell's text, with a leading quote when a spreadsheet would read it as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


class SafeCsvWriter:
    """csv.writer that neutralises formula injection in every cell."""

    def __init__(self, stream):
        self._writer = csv.writer(stream)

    def writerow(self, row) -> None:
        self._writer.writerow([csv_cell(v) for v in row])


class SafeDictWriter(csv.DictWriter):
    """csv.DictWriter that neutralises formula injection in every cell."""

    def writerow(self, rowdict):
        return super().writerow({k: csv_cell(v) for k, v in rowdict.items()})
