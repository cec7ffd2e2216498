"""Optical flow: file formats and warping.

Orientation (docs/benchmarks.md, Optical flow), used everywhere in dastc: the flow of frame t is stored on
frame t's pixel grid and points into the previous frame, so ``prev_warped(x) = prev(x + flow(x))``. Channel 0
is x (columns), channel 1 is y (rows), in pixels at the flow's own resolution.
"""
