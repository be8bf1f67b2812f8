"""Motion detection: the numpy frame-differencing detector and the event logic around it.

``detector`` turns luma planes into per-frame results, ``events`` turns results into
events, ``worker`` feeds one camera's hub through a decoder into both, and
``service`` is the gateway part (``gw.motion``) running one worker per camera.
"""
