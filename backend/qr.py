"""The e-licence's QR code (decision 0038): one symbol for the app's PNG/SVG and the printed form's stub box.

Level Q (25 % of the symbol may be lost: a phone photo of paper, a crease, glare), the smallest version that
holds the verify URL (6–7 for ~80 characters), never a Micro QR (phones' cameras do not read them).
"""

from __future__ import annotations

from typing import Final

import segno

QR_ERROR: Final = "q"
# The quiet zone: the standard's four modules of white on every side.
QUIET_ZONE: Final = 4


def qr_code(url: str) -> segno.QRCode:
    """The QR code of a verify URL: level Q, the smallest version that holds it, never a Micro QR."""
    return segno.make(url, error=QR_ERROR, micro=False, boost_error=False)


def dark_runs(url: str) -> tuple[int, list[tuple[int, int, int]]]:
    """The symbol of ``url`` with its quiet zone as (modules a side, [(row, first column, length) of each run of
    dark modules]): what a vector drawing needs, row 0 at the top."""
    rows = [list(row) for row in qr_code(url).matrix_iter(border=QUIET_ZONE)]
    runs: list[tuple[int, int, int]] = []
    for r, row in enumerate(rows):
        c = 0
        while c < len(row):
            if row[c]:
                start = c
                while c < len(row) and row[c]:
                    c += 1
                runs.append((r, start, c - start))
            else:
                c += 1
    return len(rows), runs


__all__ = ["QR_ERROR", "QUIET_ZONE", "dark_runs", "qr_code"]
