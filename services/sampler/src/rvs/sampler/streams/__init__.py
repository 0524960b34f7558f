"""Live streams (RTSP, RTMP, HLS, SRT) as a source: each sampled into segments of bounded length."""
