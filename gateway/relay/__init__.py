"""WebRTC relay: WHEP sessions that pass H.264 through from the hubs, or carry a
transcoded variant when the source cannot go to a browser as it is."""
