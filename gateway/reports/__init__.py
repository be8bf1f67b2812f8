"""Daily inspection (设备巡检): online rate, recording completeness, diagnosis states."""
