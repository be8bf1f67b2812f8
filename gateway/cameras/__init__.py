"""The ONVIF world: WS-Discovery, the ONVIF client and the camera registry."""
