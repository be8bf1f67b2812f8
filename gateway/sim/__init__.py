"""A simulated ONVIF camera (WS-Discovery + SOAP + RTSP) for the demo and the tests.

``gateway sim`` (:mod:`gateway.sim.runner`) runs many of them in one process, each
on its own loopback address. :mod:`gateway.sim.camera` holds the shared model.
"""
