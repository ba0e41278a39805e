"""Layout props that pages share, named for the part of a page they lay out (passed as ``**TOOLBAR`` and so on)."""

from __future__ import annotations

from typing import Final

# A full-width row of controls over a list or a log: search, filters, a spinner at the right.
TOOLBAR: Final = {"width": "100%", "align": "center", "spacing": "3"}

# A few small things side by side on one line (a label and its control, an icon and its text), centred.
ROW: Final = {"spacing": "2", "align": "center"}

# A callout as wide as its column, in the small size: a notice over a list, a log or a preview.
BANNER: Final = {"size": "1", "width": "100%"}
