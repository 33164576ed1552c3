"""Local audio: the clip cache's layout and records, audio file headers, ffmpeg, finding a clip's audio."""
