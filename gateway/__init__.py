"""Edge video gateway: ONVIF discovery, RTSP ingest, WebRTC relay, motion detection,
recording and the three-level (city / town / village) cascade."""

__version__ = "0.1.0"
