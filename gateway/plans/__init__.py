"""Plans (预案): one click, or a linkage rule, puts cameras on the wall, moves PTZ to presets,
records, shows a message and notifies."""
