"""Recording without transcoding: fMP4 segments, index, gaps, retention, playback.

``service.Recorder`` is the part (``gw.recorder``); ``worker.CameraRecorder`` records
one camera, with ``clock`` (media time to wall clock), ``gaps`` (holes between runs),
``diskguard`` (a full disk) and ``faults`` (its errors) beside it; ``triggers`` holds
event windows and the pre-roll ring; ``writer`` remuxes access units, ``recovery``
repairs after a crash, ``retention`` evicts, ``playback`` cuts clips; the index lives
in ``gateway.store.recordings``.
"""
