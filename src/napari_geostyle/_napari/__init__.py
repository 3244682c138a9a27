"""napari glue: controllers that read layers, run core generators in napari thread workers and
keep layers in sync. No Qt widgets here (those are in ``_widgets``) and no numerics (those are in
``core``); both the widgets and ``viewer_api`` call these modules' public functions.

- ``layer_data``: reading Image layers as 2D images for the core, resolving layer choices,
  placing and naming result layers, provenance.
- ``live_warp``: the live landmark warp (a warped layer and two paired Points layers).
  Its parts: ``paired_points`` (the Points layers), ``warp_renderer`` (the warped layer),
  ``warp_exports`` (files, sessions, other layers), ``warp_handover`` (retiring its layers or
  handing them to the next warp), ``warp_frame`` (where layers sit).
- ``runs``: texture and two-stage runs shown live in layers; the geometric stage's generator.
- ``stack_run``: the same runs over every frame of a stack or time series.
"""
