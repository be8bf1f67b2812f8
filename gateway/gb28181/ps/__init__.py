"""GB/T 28181 media: MPEG-2 program stream over RTP (mux, RTP transports, the backend)."""
