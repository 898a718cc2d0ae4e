"""The reference "hold your own key" service (``coffre keyserver``), standalone from the store."""
