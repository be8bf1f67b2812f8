"""Evidence export (录像导出): cameras × a time span → a signed ZIP of MP4 clips."""
