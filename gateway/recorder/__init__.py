"""Recording without transcoding: fMP4 segments, index, gaps, retention, playback.

``service.Recorder`` is the part (``gw.recorder``); ``worker.CameraRecorder`` records
one camera; ``writer`` remuxes access units, ``recovery`` repairs after a crash,
``retention`` evicts, ``playback`` cuts clips; the index lives in
``gateway.store.recordings``.
"""
