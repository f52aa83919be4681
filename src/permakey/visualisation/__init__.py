"""Pictures of keypoints: the paper's figures, GIFs and the self-contained HTML report.

- `colours`: the one palette (keypoint k has the same colour in every picture).
- `draw`: keypoints, Gaussian windows and error-map heat maps on upscaled frames (numpy, Pillow).
- `figures`: Figure 2, 3 and 4 style grids and the episode animation, from arrays.
- `show`: trained models on a dataset split turned into those figures (`permakey show`).
- `report`: `write_report`, one HTML file with embedded images, tables, configs and timings.
"""
