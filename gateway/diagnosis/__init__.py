"""Video-quality diagnosis (视频质量诊断) on the frames the motion worker already decodes."""
