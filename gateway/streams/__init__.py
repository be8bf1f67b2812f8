"""Ingest (RTSP → access units), the per-camera-stream hub, and transcoding."""
