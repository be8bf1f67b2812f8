"""The codec layer: what every part knows about H.264/H.265 bitstreams, in one place.

Bottom of the house: nothing here imports from the rest of ``gateway``. Streams,
recorder, relay, GB/T 28181 and the simulator build on it.

* :mod:`~gateway.media.annexb`: Annex B start codes, NAL unit splitting, AVCC (length
  prefixed) conversion;
* :mod:`~gateway.media.h264`, :mod:`~gateway.media.h265`: NAL unit types, parameter set
  fields, ``avcC``/``hvcC`` records;
* :mod:`~gateway.media.nal`: the same questions asked for either codec by name;
* :mod:`~gateway.media.params`: parameter sets from extradata, put back before keyframes;
* :mod:`~gateway.media.access_unit`, :mod:`~gateway.media.assembler`,
  :mod:`~gateway.media.reorder`: access units, how packets become them, and what their
  timestamps say about B-frames;
* :mod:`~gateway.media.avcodec`: typed PyAV codec contexts.
"""
